//! `socket_time bench`: connections per second against any time server.
//!
//! One connection is one whole exchange ([`socket_time::fetch_time`]: connect,
//! read to end of stream, check the line), so the figure includes the TCP
//! handshake and teardown, as a real client pays. The floor is a minimal
//! tokio server that writes one fixed line and closes, measured by the same
//! client with the same runner ([`plumbing::bench::closed_loop`]) in the
//! same run.

use std::fmt;
use std::net::SocketAddr;

use anyhow::Context;
use plumbing::bench::{Stats, closed_loop};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use socket_time::{fetch_time, serve};

/// What a bench says when it cannot start its servers.
const SETUP: &str = "the bench could not set up its servers";

/// What a bench run measured.
#[derive(Debug)]
pub struct Report {
    pub target: SocketAddr,
    pub measured: Stats,
    pub floor_addr: SocketAddr,
    pub floor: Stats,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "server {:<21} {}", self.target, self.measured.summary())?;
        writeln!(f, "floor  {:<21} {}", self.floor_addr, self.floor.summary())?;
        write!(
            f,
            "ratio server/floor: {:.2}",
            self.measured.per_second() / self.floor.per_second()
        )
    }
}

/// Measures the time server at `target` (any, e.g. the Python one; without
/// it, one started here) and the floor, `connections` connections each,
/// `concurrency` at a time. The first failed connection stops the bench.
pub async fn run(
    target: Option<SocketAddr>,
    connections: u64,
    concurrency: usize,
) -> anyhow::Result<Report> {
    let target = match target {
        Some(addr) => addr,
        None => {
            let listener = bind_loopback().await?;
            let addr = listener.local_addr().context(SETUP)?;
            tokio::spawn(serve(listener, false, std::future::pending()));
            addr
        }
    };
    let floor_listener = bind_loopback().await?;
    let floor_addr = floor_listener.local_addr().context(SETUP)?;
    tokio::spawn(serve_floor(floor_listener));
    Ok(Report {
        target,
        measured: load(target, connections, concurrency).await?,
        floor_addr,
        floor: load(floor_addr, connections, concurrency).await?,
    })
}

async fn bind_loopback() -> anyhow::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").await.context(SETUP)
}

/// Opens `connections` connections to `addr`, `concurrency` at a time, each
/// reading the whole reply and checking it is a `\r\n`-terminated line.
pub async fn load(addr: SocketAddr, connections: u64, concurrency: usize) -> anyhow::Result<Stats> {
    let addr = addr.to_string();
    Ok(closed_loop(connections, concurrency, move |_| {
        let addr = addr.clone();
        async move { fetch_time(&addr).await.map(drop) }
    })
    .await?)
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
