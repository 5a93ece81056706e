//! `rpc_welcome bench`: welcome calls per second, sequential and concurrent;
//! the raw ping-pong floor it is compared with is in [`rpc_naming::bench`].

use rpc_naming::bench::{Stats, closed_loop};

use crate::{Result, WelcomeClient, buy};

/// The title every bench call buys.
pub const TITLE: &str = "Sistem Terdistribusi";

/// `calls` welcome calls, `concurrency` at a time, over one connection
/// (tarpc multiplexes the calls in flight).
pub async fn calls(
    client: &WelcomeClient,
    name: &str,
    calls: u64,
    concurrency: usize,
) -> Result<Stats> {
    let (client, name) = (client.clone(), name.to_owned());
    closed_loop(calls, concurrency, move |_| {
        let (client, name) = (client.clone(), name.clone());
        async move { buy(&client, &name, TITLE).await.map(drop) }
    })
    .await
}
