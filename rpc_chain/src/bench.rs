//! `rpc_chain bench`: whole trips round the ring per second, sequential and
//! concurrent. The floor is one raw round trip per call of a chain (client
//! to 1, 1 to 2, 2 to 3, 3 back to 1, for three servers), from the
//! ping-pong of [`plumbing::bench::Floor`], measured in the same run. The same
//! ring is also entered over Pyro4 (the client's call to the first server;
//! the hops stay on tarpc), against entering it over tarpc.

use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use plumbing::bench::{Floor, PING_SIZE, Stats, closed_loop};
use plumbing::cli::host_port;
use rpc_naming::NS_ENV;
use rpc_naming::server::connect_or_spawn;

use rpc_chain::{Connection, Error, Placement, connect, send, server_name, start_ring};

/// What a bench says when it cannot start its servers.
const SETUP: &str = "the bench could not set up its servers";

/// `rpc_chain bench`'s flags.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A name server whose ring to measure; without it, the bench starts
    /// its own name server and a ring of --servers servers.
    #[arg(long, env = NS_ENV, value_parser = host_port)]
    ns: Option<String>,
    /// Ring size when the bench starts its own ring.
    #[arg(long, default_value_t = 3)]
    servers: u32,
    /// The server to start at.
    #[arg(long, default_value_t = 1)]
    start: u32,
    /// Chains per run.
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
    /// Chains in flight at once in the concurrent run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Runs the bench and prints its report.
pub async fn command(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs {
        ns,
        servers,
        start,
        calls,
        concurrency,
    } = args;
    println!("{}", run(ns, servers, start, calls, concurrency).await?);
    Ok(())
}

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
    let (ns, own) = connect_or_spawn(ns, &Default::default()).await?;
    let _ring = if own {
        start_ring(&ns, servers.max(1), false, Placement::OwnThread)
            .await
            .context(SETUP)?
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
