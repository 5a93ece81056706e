//! `socket_time bench`: connections per second against any time server.
//!
//! One connection is one whole exchange (connect, read to end of stream), so
//! the figure includes the TCP handshake and teardown, as a real client pays.
//! The floor is a minimal tokio server that writes one fixed line and closes,
//! measured by the same client in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What one load run measured.
#[derive(Debug)]
pub struct Report {
    pub connections: u64,
    pub failures: u64,
    pub elapsed: Duration,
    /// Latency of whole exchanges, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        (self.connections - self.failures) as f64 / self.elapsed.as_secs_f64()
    }

    /// One line: rate, then p50 / p99 / max latency.
    pub fn summary(&self) -> String {
        format!(
            "{:>9.0} conn/s  p50 {:>5} us  p99 {:>6} us  max {:>6} us  ({} ok, {} failed, {:.2} s)",
            self.per_second(),
            self.latency_us.value_at_quantile(0.50),
            self.latency_us.value_at_quantile(0.99),
            self.latency_us.max(),
            self.connections - self.failures,
            self.failures,
            self.elapsed.as_secs_f64(),
        )
    }
}

/// Opens `connections` connections to `addr`, `concurrency` at a time, each
/// reading the whole reply and checking it is a `\r\n`-terminated line.
pub async fn load(addr: SocketAddr, connections: u64, concurrency: usize) -> Report {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut hist = new_histogram();
                let mut failures = 0u64;
                let mut first_error = None;
                while next.fetch_add(1, Ordering::Relaxed) < connections {
                    let began = Instant::now();
                    match crate::fetch_time(&addr.to_string()).await {
                        Ok(_) => {
                            let _ = hist.record(began.elapsed().as_micros() as u64);
                        }
                        Err(err) => {
                            failures += 1;
                            first_error.get_or_insert(err);
                        }
                    }
                }
                (hist, failures, first_error)
            })
        })
        .collect();
    let mut latency_us = new_histogram();
    let mut failures = 0;
    for worker in workers {
        let (hist, failed, first_error) = worker.await.expect("bench worker panicked");
        latency_us.add(&hist).expect("histograms share bounds");
        failures += failed;
        if let Some(err) = first_error {
            tracing::warn!(%err, "bench connection failed");
        }
    }
    Report {
        connections,
        failures,
        elapsed: started.elapsed(),
        latency_us,
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The floor: accept, write a fixed line, close. No clock, no printing.
pub async fn serve_floor(listener: TcpListener) {
    const LINE: &[u8] = b"Tue Nov 24 06:29:34 2026\r\n";
    while let Ok((mut socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = socket.write_all(LINE).await;
            let _ = socket.shutdown().await;
        });
    }
}
