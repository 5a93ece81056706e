//! `rpc_chain bench`: whole trips round the ring per second, sequential and
//! concurrent. The floor is four raw round trips per chain (client to 1,
//! 1 to 2, 2 to 3, 3 back to 1, for three servers), from the ping-pong in
//! [`rpc_naming::bench`], measured in the same run.

use rpc_naming::bench::{Stats, closed_loop};

use crate::{ChainClient, Result, send};

/// `calls` trips round the ring from server `start`, `concurrency` at a time.
pub async fn chains(
    client: &ChainClient,
    start: u32,
    calls: u64,
    concurrency: usize,
) -> Result<Stats> {
    let client = client.clone();
    closed_loop(calls, concurrency, move |_| {
        let client = client.clone();
        async move {
            send(&client, start, vec!["hello".to_owned()])
                .await
                .map(drop)
        }
    })
    .await
}
