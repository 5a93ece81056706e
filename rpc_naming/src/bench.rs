//! The floor the RPC benches are measured against: a raw TCP ping-pong of
//! about one small RPC's size. The runner and its statistics are the
//! workspace's one ([`plumbing::bench`]); benches start the echo server with
//! [`plumbing::bench::spawn_server_thread`], so it runs as a separate
//! process would.

use std::net::SocketAddr;
use std::time::Instant;

use plumbing::bench::{Stats, histogram};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Bytes per ping-pong message: about what one small RPC puts on the wire.
pub const PING_SIZE: usize = 64;

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
