//! `rpc_chain bench`: whole trips round the ring per second, sequential and
//! concurrent. The floor is four raw round trips per chain (client to 1,
//! 1 to 2, 2 to 3, 3 back to 1, for three servers), from the ping-pong in
//! [`rpc_naming::bench`], measured in the same run.

use std::time::Instant;

use rpc_naming::bench::{Stats, histogram};

use crate::{ChainClient, Result, send};

/// `calls` trips round the ring from server `start`, `concurrency` at a time.
pub async fn chains(
    client: &ChainClient,
    start: u32,
    calls: u64,
    concurrency: usize,
) -> Result<Stats> {
    let concurrency = concurrency.max(1) as u64;
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let client = client.clone();
            let share = calls / concurrency + u64::from(worker < calls % concurrency);
            tokio::spawn(async move {
                let mut latency_us = histogram();
                for _ in 0..share {
                    let began = Instant::now();
                    send(&client, start, vec!["hello".to_owned()]).await?;
                    let _ = latency_us.record(began.elapsed().as_micros() as u64);
                }
                Ok::<_, crate::Error>(latency_us)
            })
        })
        .collect();
    let mut latency_us = histogram();
    for worker in workers {
        let hist = worker.await.expect("bench worker panicked")?;
        latency_us.add(&hist).expect("histograms share bounds");
    }
    Ok(Stats {
        calls,
        elapsed: started.elapsed(),
        latency_us,
    })
}
