//! The floor the RPC benches are measured against: a raw TCP ping-pong of
//! about one small RPC's size. The runner and its statistics are the
//! workspace's one ([`plumbing::bench`]); benches start the echo server with
//! [`plumbing::bench::spawn_server_thread`], so it runs as a separate
//! process would.

use std::net::SocketAddr;
use std::time::Instant;

use plumbing::bench::{ServerThread, Stats, histogram, spawn_server_thread};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::NameServerClient;

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
