//! `rpc_welcome bench`: welcome calls per second, sequential and concurrent,
//! against the raw TCP ping-pong floor ([`plumbing::bench::Floor`]) in the same
//! run; and the same server called over Pyro4 by this workspace's Pyro4
//! client, against tarpc. Python's own Pyro4 client against this server and
//! against Python's is measured by `rpc_welcome/bench/python_client.sh`.

use std::sync::Arc;

use anyhow::Context;
use plumbing::bench::{Floor, RpcReport, Stats, closed_loop, spawn_server_thread};
use plumbing::cli::host_port;
use rpc_naming::NS_ENV;
use rpc_naming::server::connect_or_spawn;
use rpc_transport::Listener;
use rpc_transport::tls::SslArgs;

use rpc_welcome::{Connection, DEFAULT_NAME, Error, TITLE, buy, connect, serve};

/// What a bench says when it cannot start its servers.
const SETUP: &str = "the bench could not set up its servers";

/// `rpc_welcome bench`'s flags.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A name server whose registered server to measure; without it, the
    /// bench starts its own name server and server.
    #[arg(long, env = NS_ENV, value_parser = host_port)]
    ns: Option<String>,
    /// The name of the server to measure.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
    /// Calls per run.
    #[arg(long, default_value_t = 20_000)]
    calls: u64,
    /// Calls in flight at once in the concurrent run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Also measure over TLS, beside plain: the bench's own name server and
    /// server, with the certificates the --ssl-* settings (PYRO_SSL_*)
    /// name, alternating with plain runs; prints the medians.
    #[arg(long, conflicts_with = "ns")]
    tls: bool,
    #[command(flatten)]
    ssl: SslArgs,
}

/// Runs of each kind `--tls` makes.
const TLS_ROUNDS: usize = 3;

/// Runs the bench and prints its report.
pub async fn command(args: BenchArgs) -> anyhow::Result<()> {
    let (calls, concurrency) = (args.calls, args.concurrency);
    if !args.tls {
        let report = run(args.ns, &args.name, calls, concurrency, &args.ssl).await?;
        println!("{report}");
        return Ok(());
    }
    let tls = SslArgs {
        ssl: true,
        ..args.ssl
    };
    let plain = SslArgs::default();
    // Plain and TLS alternate, so that a busy moment of the machine does
    // not fall on one side only.
    let (mut plain_reports, mut tls_reports) = (Vec::new(), Vec::new());
    for _ in 0..TLS_ROUNDS {
        plain_reports.push(run(None, &args.name, calls, concurrency, &plain).await?);
        tls_reports.push(run(None, &args.name, calls, concurrency, &tls).await?);
    }
    println!("plain (the first run):\n{}", plain_reports[0]);
    println!("\nTLS (the first run):\n{}", tls_reports[0]);
    println!("\nmedians of {TLS_ROUNDS} runs    plain/s    TLS/s  TLS/plain");
    let rows: [(&str, Rate); 3] = [
        ("sequential (tarpc)", |r| r.sequential.per_second()),
        ("concurrent (tarpc)", |r| r.concurrent.per_second()),
        ("sequential (Pyro4)", |r| r.pyro.per_second()),
    ];
    for (label, rate) in rows {
        let (plain, tls) = (median(&plain_reports, rate), median(&tls_reports, rate));
        println!("{label:<24} {plain:9.0} {tls:8.0}  {:.2}", tls / plain);
    }
    Ok(())
}

/// One figure of a report.
type Rate = fn(&RpcReport) -> f64;

fn median(reports: &[RpcReport], rate: Rate) -> f64 {
    let mut rates: Vec<f64> = reports.iter().map(rate).collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Measures the server registered as `name` with the name server `ns`;
/// without `ns`, starts a name server here and a welcome server on a thread
/// of its own (as a separate process would be), registered through it.
///
/// With `ssl` on, every connection is TLS, and so are the servers started
/// here.
pub async fn run(
    ns: Option<String>,
    name: &str,
    calls: u64,
    concurrency: usize,
    ssl: &SslArgs,
) -> anyhow::Result<RpcReport> {
    let (ns, own) = connect_or_spawn(ns, ssl).await?;
    let client_tls = ssl.client()?;
    let _own_server = if own {
        let object = name.to_owned();
        let tls = ssl.server()?;
        let server = spawn_server_thread(move |listener, stopped| async move {
            serve(Listener::new(listener, tls), &object, async {
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
    let pyro = pyro4_wire::Proxy::connect_with(&location.pyro_uri(name), client_tls.as_ref())
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
    Ok(RpcReport {
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
