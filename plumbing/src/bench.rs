//! The one bench runner: a closed loop of calls, with latency percentiles,
//! a way to run a server on a thread of its own, and the floor the RPC
//! benches share: a raw TCP ping-pong of about one small RPC's size
//! ([`Floor`]), with the report the name server's and the welcome server's
//! benches print ([`RpcReport`]).
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

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// What an RPC bench measured: one call, sequential and with calls in
/// flight, over the server's own protocol and over Pyro4, beside the raw
/// ping-pong of the same run (the name server's and the welcome server's
/// benches report alike).
#[derive(Debug)]
pub struct RpcReport {
    /// The call measured, as the server's protocol names it (`lookup`,
    /// `welcome_message`), and as Pyro4 does (`welcomeMessage`).
    pub call: &'static str,
    pub pyro_call: &'static str,
    /// What the server was reached over: tarpc for one of this workspace,
    /// Pyro4 for Python's.
    pub protocol: &'static str,
    pub sequential: Stats,
    pub raw: Stats,
    pub concurrency: usize,
    pub concurrent: Stats,
    /// The same server's Pyro4 face, sequential calls.
    pub pyro: Stats,
}

impl fmt::Display for RpcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (call, protocol) = (self.call, self.protocol);
        let line = |f: &mut fmt::Formatter<'_>, label: String, stats: &Stats, by: &str| {
            writeln!(f, "{label:<40}{}{by}", stats.summary())
        };
        let by = format!("  ({protocol})");
        line(f, format!("{call}, sequential:"), &self.sequential, &by)?;
        line(
            f,
            format!("raw TCP ping-pong, {PING_SIZE} bytes:"),
            &self.raw,
            "",
        )?;
        let concurrent = format!("{call}, concurrency {}:", self.concurrency);
        line(f, concurrent, &self.concurrent, &by)?;
        let pyro = format!("{} over Pyro4, sequential:", self.pyro_call);
        line(f, pyro, &self.pyro, "")?;
        writeln!(
            f,
            "ratio sequential/raw: {:.2}",
            self.sequential.per_second() / self.raw.per_second()
        )?;
        write!(
            f,
            "ratio Pyro4/{protocol}, sequential: {:.2}",
            self.pyro.per_second() / self.sequential.per_second()
        )
    }
}

/// Bytes per ping-pong message: about what one small RPC puts on the wire.
pub const PING_SIZE: usize = 64;

/// The floor: an echo server on a thread of its own, measured by a raw
/// ping-pong of [`PING_SIZE`] bytes.
#[derive(Debug)]
pub struct Floor {
    echo: ServerThread,
}

impl Floor {
    /// Starts the echo server and warms the path up (1,000 round trips).
    pub async fn start() -> std::io::Result<Self> {
        let floor = Floor {
            echo: spawn_server_thread(serve_echo)?,
        };
        ping_pong(floor.echo.addr, 1_000).await?;
        Ok(floor)
    }

    /// `calls` sequential round trips.
    pub async fn measure(&self, calls: u64) -> std::io::Result<Stats> {
        ping_pong(self.echo.addr, calls).await
    }
}

/// The floor's server: echoes fixed-size messages back.
async fn serve_echo(listener: TcpListener, stopped: oneshot::Receiver<()>) {
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
async fn ping_pong(addr: SocketAddr, calls: u64) -> std::io::Result<Stats> {
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
