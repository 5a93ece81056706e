//! `rpc_welcome bench`: welcome calls per second, sequential and concurrent,
//! against the raw TCP ping-pong floor ([`rpc_naming::bench`]) in the same
//! run; and the same server called over Pyro4 by this workspace's Pyro4
//! client, against tarpc. Python's own Pyro4 client against this server and
//! against Python's is measured by `rpc_welcome/bench/python_client.sh`.

use std::sync::Arc;

use anyhow::Context;
use plumbing::bench::{Stats, closed_loop, spawn_server_thread};
use rpc_naming::bench::{Floor, Report, name_server};

use crate::{Connection, Error, buy, connect, serve};

/// What a bench says when it cannot start its servers.
const SETUP: &str = "the bench could not set up its servers";

/// The title every bench call buys.
pub const TITLE: &str = "Sistem Terdistribusi";

/// Measures the server registered as `name` with the name server `ns`;
/// without `ns`, starts a name server here and a welcome server on a thread
/// of its own (as a separate process would be), registered through it.
pub async fn run(
    ns: Option<String>,
    name: &str,
    calls: u64,
    concurrency: usize,
) -> anyhow::Result<Report> {
    let (ns, own) = name_server(ns).await?;
    let _own_server = if own {
        let object = name.to_owned();
        let server = spawn_server_thread(move |listener, stopped| async move {
            serve(listener, &object, async {
                let _ = stopped.await;
            })
            .await
        })
        .context(SETUP)?;
        ns.register(name, server.addr, false).await?;
        Some(server)
    } else {
        None
    };
    let client = Arc::new(connect(&ns, name).await?);
    let location = ns.lookup(name).await?;
    let pyro = pyro4_wire::Proxy::connect(&location.pyro_uri(name))
        .await
        .map_err(|source| Error::Pyro {
            name: name.to_owned(),
            source,
        })?;
    let pyro = Arc::new(Connection::Pyro(tokio::sync::Mutex::new(pyro)));
    let floor = Floor::start().await.context(SETUP)?;
    welcome_calls(&client, name, 1_000, 1).await?; // warm-up
    welcome_calls(&pyro, name, 1_000, 1).await?;

    let sequential = welcome_calls(&client, name, calls, 1).await?;
    let raw = floor.measure(calls).await.context(SETUP)?;
    let concurrent = welcome_calls(&client, name, calls, concurrency).await?;
    let pyro = welcome_calls(&pyro, name, calls, 1).await?;
    Ok(Report {
        call: "welcome_message",
        pyro_call: "welcomeMessage",
        protocol: client.protocol(),
        sequential,
        raw,
        concurrency,
        concurrent,
        pyro,
    })
}

/// `calls` welcome calls, `concurrency` at a time, over one connection
/// (tarpc multiplexes the calls in flight; Pyro4 takes them in turn).
pub async fn welcome_calls(
    client: &Arc<Connection>,
    name: &str,
    calls: u64,
    concurrency: usize,
) -> anyhow::Result<Stats> {
    let (client, name) = (client.clone(), name.to_owned());
    Ok(closed_loop(calls, concurrency, move |_| {
        let (client, name) = (client.clone(), name.clone());
        async move { buy(&client, &name, TITLE).await.map(drop) }
    })
    .await?)
}
