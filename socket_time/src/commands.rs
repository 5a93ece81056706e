//! What each command of the `socket_time` binary does, and what it
//! prints: the chapter's server and client, and a demo of both in one
//! process. `main.rs` only reads the command line.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::{checkout_line, fetch_time, serve};

/// `client`: asks the server at `addr` for the time and prints the
/// chapter's line.
pub async fn client(addr: &str) -> anyhow::Result<()> {
    let time = fetch_time(addr).await?;
    println!("{}", checkout_line(&time));
    Ok(())
}

/// `demo`: a server and a client in one process.
pub async fn demo() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, true, async {
        let _ = stopped.await;
    }));
    let time = fetch_time(&addr.to_string()).await?;
    println!("{}", checkout_line(&time));
    let _ = stop.send(());
    server.await?;
    Ok(())
}

/// `server`: serves the time on `addr` until Ctrl-C or SIGTERM.
pub async fn server(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = plumbing::cli::listen(addr).await?;
    let stop = plumbing::shutdown::signal();
    tracing::info!("time server listening on {}", listener.local_addr()?);
    serve(listener, true, stop).await;
    Ok(())
}
