//! What the RPC benches share: the raw TCP ping-pong they are measured
//! against, latency statistics, and a way to run a server on a thread of its
//! own.
//!
//! The servers a bench starts itself (the service under test, the ping-pong
//! echo) each run on their own OS thread with their own single-threaded
//! runtime, as a separate process would, so client and server never share a
//! scheduler.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Bytes per ping-pong message: about what one small RPC puts on the wire.
pub const PING_SIZE: usize = 64;

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

    pub fn summary(&self) -> String {
        format!(
            "{:>9.0}/s  p50 {:>5} us  p99 {:>5} us  ({} in {:.2} s)",
            self.per_second(),
            self.latency_us.value_at_quantile(0.5),
            self.latency_us.value_at_quantile(0.99),
            self.calls,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A latency histogram in microseconds, 1 us to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Keeps a server thread running; dropping it stops the server.
pub struct ServerThread {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Runs `serve(listener, shutdown)` on its own thread and runtime, on an
/// ephemeral loopback port.
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

/// The floor's server: echoes fixed-size messages back.
pub async fn serve_echo(listener: TcpListener, stopped: oneshot::Receiver<()>) {
    let accept = async {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; PING_SIZE];
                while socket.read_exact(&mut buf).await.is_ok() {
                    if socket.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    };
    tokio::select! {
        () = accept => {}
        _ = stopped => {}
    }
}

/// The floor: `calls` sequential round trips of [`PING_SIZE`] bytes.
pub async fn ping_pong(addr: SocketAddr, calls: u64) -> std::io::Result<Stats> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let mut buf = [7u8; PING_SIZE];
    let mut latency_us = histogram();
    let started = Instant::now();
    for _ in 0..calls {
        let began = Instant::now();
        socket.write_all(&buf).await?;
        socket.read_exact(&mut buf).await?;
        let _ = latency_us.record(began.elapsed().as_micros() as u64);
    }
    Ok(Stats {
        calls,
        elapsed: started.elapsed(),
        latency_us,
    })
}

/// Makes `calls` calls of `one`, `concurrency` at a time (a closed loop: each
/// of the `concurrency` workers starts its next call when the last returns),
/// and measures them. `one` gets the call's number within its worker.
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
