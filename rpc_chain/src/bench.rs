//! `rpc_chain bench`: whole trips round the ring per second, sequential and
//! concurrent. The floor is one raw round trip per call of a chain (client
//! to 1, 1 to 2, 2 to 3, 3 back to 1, for three servers), from the
//! ping-pong in [`rpc_naming::bench`], measured in the same run. The same
//! ring is also entered over Pyro4 (the client's call to the first server;
//! the hops stay on tarpc), against entering it over tarpc.

use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use plumbing::bench::{ServerThread, Stats, closed_loop, spawn_server_thread};
use rpc_naming::NameServerClient;
use rpc_naming::bench::{Floor, PING_SIZE, name_server};

use crate::{ChainServer, Connection, Error, connect, send, serve, server_name};

/// What a bench says when it cannot start its servers.
const SETUP: &str = "the bench could not set up its servers";

/// What a bench run measured.
#[derive(Debug)]
pub struct Report {
    /// Calls per chain: one per server, and the one that closes the ring.
    pub hops: u64,
    /// What the first server was reached over: tarpc for a server of this
    /// workspace, Pyro4 for a Python one (with `--ns`).
    pub protocol: &'static str,
    pub sequential: Stats,
    pub concurrency: usize,
    pub concurrent: Stats,
    pub raw: Stats,
    /// Sequential chains entered over Pyro4.
    pub pyro: Stats,
}

impl Report {
    /// Chains per second the raw round trips allow.
    pub fn floor(&self) -> f64 {
        self.raw.per_second() / self.hops as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hops = self.hops;
        writeln!(f, "ring of {} servers: {hops} calls per chain", hops - 1)?;
        writeln!(
            f,
            "chains, sequential:             {}  ({})",
            self.sequential.summary(),
            self.protocol
        )?;
        writeln!(
            f,
            "chains, concurrency {:<3}         {}  ({})",
            self.concurrency,
            self.concurrent.summary(),
            self.protocol
        )?;
        writeln!(
            f,
            "chains entered over Pyro4, seq.: {}",
            self.pyro.summary()
        )?;
        writeln!(
            f,
            "raw TCP ping-pong, {PING_SIZE} bytes:    {}",
            self.raw.summary()
        )?;
        writeln!(
            f,
            "floor: {:.0} chains/s ({hops} raw round trips each)",
            self.floor()
        )?;
        writeln!(
            f,
            "ratio sequential/floor: {:.2}",
            self.sequential.per_second() / self.floor()
        )?;
        write!(
            f,
            "ratio Pyro4/{} entry, sequential: {:.2}",
            self.protocol,
            self.pyro.per_second() / self.sequential.per_second()
        )
    }
}

/// Measures the ring registered with the name server `ns`, starting at
/// server `start`; without `ns`, starts a name server here and a ring of
/// `servers` servers, each on its own thread and runtime as separate
/// processes would be.
pub async fn run(
    ns: Option<String>,
    servers: u32,
    start: u32,
    calls: u64,
    concurrency: usize,
) -> anyhow::Result<Report> {
    let (ns, own) = name_server(ns).await?;
    let _ring = if own {
        spawn_ring(&ns, servers.max(1)).await?
    } else {
        Vec::new()
    };
    let hops = ns.list(Some("example.chainTopology.")).await?.len() as u64 + 1;
    let client = Arc::new(connect(&ns, start).await?);
    let name = server_name(start);
    let uri = ns.lookup(&name).await?.pyro_uri(&name);
    let pyro = pyro4_wire::Proxy::connect(&uri)
        .await
        .map_err(|source| Error::Pyro { name, source })?;
    let pyro = Arc::new(Connection::Pyro(tokio::sync::Mutex::new(pyro)));
    let floor = Floor::start().await.context(SETUP)?;
    chains(&client, start, 500, 1).await?; // warm-up: connects every hop
    chains(&pyro, start, 500, 1).await?;

    let sequential = chains(&client, start, calls, 1).await?;
    let raw = floor.measure(calls * hops).await.context(SETUP)?;
    let concurrent = chains(&client, start, calls, concurrency).await?;
    let pyro = chains(&pyro, start, calls, 1).await?;
    Ok(Report {
        hops,
        protocol: client.protocol(),
        sequential,
        concurrency,
        concurrent,
        raw,
        pyro,
    })
}

/// Starts a ring of `size` quiet servers, each on its own thread and
/// runtime (and so with its own connection to the name server), and
/// registers them. The ring runs while the returned threads are held.
async fn spawn_ring(ns: &NameServerClient, size: u32) -> anyhow::Result<Vec<ServerThread>> {
    let mut ring = Vec::new();
    for id in 1..=size {
        let addr = ns.addr().to_owned();
        let thread = spawn_server_thread(move |listener, stopped| async move {
            match NameServerClient::connect(&addr).await {
                Ok(ns) => {
                    let server = ChainServer::new(id, id % size + 1, ns, false);
                    serve(listener, server, async {
                        let _ = stopped.await;
                    })
                    .await;
                }
                Err(err) => tracing::error!(%err, "bench ring server could not start"),
            }
        })
        .context(SETUP)?;
        ns.register(&server_name(id), thread.addr, false).await?;
        ring.push(thread);
    }
    Ok(ring)
}

/// `calls` trips round the ring from server `start`, `concurrency` at a time.
pub async fn chains(
    client: &Arc<Connection>,
    start: u32,
    calls: u64,
    concurrency: usize,
) -> anyhow::Result<Stats> {
    let client = client.clone();
    Ok(closed_loop(calls, concurrency, move |_| {
        let client = client.clone();
        async move {
            send(&client, start, vec!["hello".to_owned()])
                .await
                .map(drop)
        }
    })
    .await?)
}
