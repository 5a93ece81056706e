//! `rpc_welcome bench`: welcome calls per second, sequential and concurrent;
//! the raw ping-pong floor it is compared with is in [`rpc_naming::bench`].

use std::time::Instant;

use rpc_naming::bench::{Stats, histogram};

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
    let concurrency = concurrency.max(1) as u64;
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let client = client.clone();
            let name = name.to_owned();
            // Spread the remainder so exactly `calls` calls are made.
            let share = calls / concurrency + u64::from(worker < calls % concurrency);
            tokio::spawn(async move {
                let mut latency_us = histogram();
                for _ in 0..share {
                    let began = Instant::now();
                    buy(&client, &name, TITLE).await?;
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
