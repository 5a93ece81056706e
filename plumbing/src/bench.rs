//! The one bench runner: a closed loop of calls, with latency percentiles,
//! and a way to run a server on a thread of its own.
//!
//! Every crate's `bench` subcommand measures its protocol and a floor (raw
//! TCP, raw AMQP) with the same runner, so the two figures it prints are
//! comparable.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use plumbing::bench::closed_loop;
//! let stats = closed_loop(100, 4, |_| async { Ok::<(), std::io::Error>(()) })
//!     .await
//!     .unwrap();
//! assert_eq!(stats.calls, 100);
//! println!("{}", stats.summary());
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// What one run measured.
#[derive(Debug)]
pub struct Stats {
    pub calls: u64,
    pub elapsed: Duration,
    /// Latency per call, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// One line: rate, then p50 and p99 latency.
    pub fn summary(&self) -> String {
        format!(
            "{:>9.0}/s  p50 {:>6} us  p99 {:>6} us  ({} in {:.2} s)",
            self.per_second(),
            self.latency_us.value_at_quantile(0.5),
            self.latency_us.value_at_quantile(0.99),
            self.calls,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A latency histogram in microseconds, 1 us to 10 min.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Makes `calls` calls of `one`, `concurrency` at a time (a closed loop: each
/// of the `concurrency` workers starts its next call when its last returns),
/// and measures them. `one` gets the call's number within its worker. The
/// first error stops the run and is returned.
pub async fn closed_loop<F, Fut, E>(calls: u64, concurrency: usize, one: F) -> Result<Stats, E>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
{
    let concurrency = concurrency.max(1) as u64;
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let one = one.clone();
            // Spread the remainder so exactly `calls` calls are made.
            let share = calls / concurrency + u64::from(worker < calls % concurrency);
            tokio::spawn(async move {
                let mut latency_us = histogram();
                for i in 0..share {
                    let began = Instant::now();
                    one(i).await?;
                    let _ = latency_us.record(began.elapsed().as_micros() as u64);
                }
                Ok::<_, E>(latency_us)
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

/// Keeps a server thread running; dropping it stops the server.
#[derive(Debug)]
pub struct ServerThread {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Runs `serve(listener, stopped)` on its own OS thread with its own
/// one-thread runtime, on an ephemeral loopback port, as a separate process
/// would: the bench's client and the server never share a scheduler.
pub fn spawn_server_thread<Fut>(
    serve: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
) -> std::io::Result<ServerThread>
where
    Fut: Future<Output = ()>,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop, stopped) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            match TcpListener::from_std(std_listener) {
                Ok(listener) => serve(listener, stopped).await,
                Err(err) => tracing::error!(%err, "bench server could not start"),
            }
        });
    });
    Ok(ServerThread { addr, _stop: stop })
}
