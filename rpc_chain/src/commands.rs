//! What each command of the `rpc_chain` binary does, and what it prints:
//! one ring server, the client, and a demo of a whole ring in one process.
//! `main.rs` only reads the command line.

use std::net::SocketAddr;

use rpc_naming::{DEFAULT_MAX_NAMES, NameServerClient};
use rpc_transport::Listener;
use rpc_transport::tls::SslArgs;

use crate::{
    ChainServer, Placement, connect, python_list, send, serve, server_name, start_ring,
    starting_line,
};

/// `demo`: a name server, a ring of `servers` servers and the client in
/// one process.
pub async fn demo(servers: u32) -> anyhow::Result<()> {
    let ns = NameServerClient::connect(&rpc_naming::server::spawn_local(DEFAULT_MAX_NAMES).await?)
        .await?;
    let ring = start_ring(&ns, servers, true, Placement::Here).await?;
    let client = connect(&ns, 1).await?;
    let status = send(&client, 1, vec!["hello".to_owned()]).await?;
    println!("Status = {}", python_list(&status));
    for server in ring {
        server.stop().await?;
    }
    Ok(())
}

/// `server`: server `id` of a ring, passing messages on to `next`, on
/// `addr`, registered with the name server at `ns`, until Ctrl-C or
/// SIGTERM.
pub async fn server(
    ns: &str,
    ssl: &SslArgs,
    id: u32,
    next: u32,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let tls = ssl.server()?;
    let listener = plumbing::cli::listen(addr).await?;
    let bound = listener.local_addr()?;
    let listener = Listener::new(listener, tls);
    // Its link to the next hop goes through this client: TLS too.
    let ns = NameServerClient::connect_with(ns, ssl.client()?).await?;
    let stop = plumbing::shutdown::signal();
    let lease = ns.claim(&server_name(id), bound).await?;
    println!("{}", starting_line(id));
    serve(listener, ChainServer::new(id, next, ns, true), stop).await;
    rpc_naming::release_on_exit(lease).await;
    Ok(())
}

/// `client`: sends `words` round the ring from server `start` and prints
/// the status, as `client_chain.py`. Every call of the trip carries
/// `correlation_id` (else a new one), as Pyro4's
/// `current_context.correlation_id` does.
pub async fn client(
    ns: &str,
    ssl: &SslArgs,
    start: u32,
    words: Vec<String>,
    correlation_id: Option<uuid::Uuid>,
) -> anyhow::Result<()> {
    let id = correlation_id.unwrap_or_else(uuid::Uuid::new_v4);
    tracing::debug!(correlation_id = %id, "sending round the ring");
    let trip = async {
        let ns = NameServerClient::connect_with(ns, ssl.client()?).await?;
        let client = connect(&ns, start).await?;
        anyhow::Ok(send(&client, start, words).await?)
    };
    let status = pyro4_wire::correlation::scope(Some(id.as_u128()), trip).await?;
    println!("Status = {}", python_list(&status));
    Ok(())
}
