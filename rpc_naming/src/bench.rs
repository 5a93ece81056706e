//! `rpc_naming bench`: lookups per second, sequential and concurrent, over
//! tarpc and over Pyro4, against the floor the RPC benches share: a raw TCP
//! ping-pong of about one small RPC's size, measured in the same run. The
//! runner and its statistics are the workspace's one ([`plumbing::bench`]);
//! benches start their servers with [`plumbing::bench::spawn_server_thread`],
//! so they run as a separate process would.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use plumbing::bench::{ServerThread, Stats, closed_loop, histogram, spawn_server_thread};
use pyro4_wire::PyroUri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::{Error, Location, NameServerClient};

/// What an RPC bench measured: one call, sequential and with calls in
/// flight, over the server's own protocol and over Pyro4, beside the raw
/// ping-pong of the same run (the name server's and the welcome server's
/// benches report alike).
#[derive(Debug)]
pub struct Report {
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

impl fmt::Display for Report {
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

/// Measures `lookups` lookups through the name server at `ns` (Python's,
/// say), or without it through one started here on a thread of its own;
/// `concurrency` in flight in the concurrent run. The name looked up is
/// registered first and removed after.
pub async fn run(ns: Option<String>, lookups: u64, concurrency: usize) -> anyhow::Result<Report> {
    let (addr, _own) = match ns {
        Some(addr) => (addr, None),
        None => {
            let own = crate::server::spawn_thread()
                .context("the bench could not start its name server")?;
            (own.addr.to_string(), Some(own))
        }
    };
    let client = Arc::new(NameServerClient::connect(&addr).await?);
    let pyro = Arc::new(NameServerClient::connect_pyro4(&addr).await?);
    let name = format!("rpc_naming.bench.{}", std::process::id());
    let location = Location::Pyro(PyroUri {
        object: "bench".into(),
        host: "127.0.0.1".into(),
        port: 9,
    });
    client.register(&name, location.clone(), false).await?;
    let measured = async {
        let floor = Floor::start()
            .await
            .context("the bench could not start its echo server")?;
        // Warm-up, and a check that each face finds the name.
        lookups_of(&client, &name, &location, 1_000, 1).await?;
        lookups_of(&pyro, &name, &location, 1_000, 1).await?;
        let sequential = lookups_of(&client, &name, &location, lookups, 1).await?;
        let raw = floor
            .measure(lookups)
            .await
            .context("the raw ping-pong failed")?;
        let concurrent = lookups_of(&client, &name, &location, lookups, concurrency).await?;
        let pyro = lookups_of(&pyro, &name, &location, lookups, 1).await?;
        Ok(Report {
            call: "lookup",
            pyro_call: "lookup",
            protocol: if client.is_pyro() { "Pyro4" } else { "tarpc" },
            sequential,
            raw,
            concurrency,
            concurrent,
            pyro,
        })
    }
    .await;
    // The name goes whatever happened, so a Python name server is left as
    // it was found.
    client.remove(&name).await?;
    measured
}

/// `lookups` lookups of `name`, `concurrency` at a time, each checked.
async fn lookups_of(
    client: &Arc<NameServerClient>,
    name: &str,
    expected: &Location,
    lookups: u64,
    concurrency: usize,
) -> crate::Result<Stats> {
    let (client, name, expected) = (client.clone(), name.to_owned(), expected.clone());
    closed_loop(lookups, concurrency, move |_| {
        let (client, name, expected) = (client.clone(), name.clone(), expected.clone());
        async move { check(client.lookup(&name).await?, &expected) }
    })
    .await
}

fn check(found: Location, expected: &Location) -> crate::Result<()> {
    if &found == expected {
        Ok(())
    } else {
        Err(Error::Protocol {
            addr: "the name server".into(),
            reason: format!("the bench's name led to {found}, not {expected}"),
        })
    }
}

/// Bytes per ping-pong message: about what one small RPC puts on the wire.
pub const PING_SIZE: usize = 64;

/// The name server a bench measures through: the one at `ns`, or, without
/// it, one started in this process. Also says whether it was started here
/// (and so whether the bench must start the servers it measures).
pub async fn name_server(ns: Option<String>) -> anyhow::Result<(NameServerClient, bool)> {
    let own = ns.is_none();
    let addr = match ns {
        Some(ns) => ns,
        None => crate::server::spawn_local(crate::DEFAULT_MAX_NAMES).await?,
    };
    Ok((NameServerClient::connect(&addr).await?, own))
}

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
