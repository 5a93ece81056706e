//! `rpc_naming bench`: lookups per second, sequential and concurrent, over
//! tarpc and over Pyro4, against the floor the RPC benches share: a raw TCP
//! ping-pong of about one small RPC's size, measured in the same run. The
//! runner, its statistics and the floor are the workspace's one
//! ([`plumbing::bench`]); the name server runs on a thread of its own, as
//! a separate process would.

use std::sync::Arc;

use anyhow::Context;
use plumbing::bench::{Floor, RpcReport, Stats, closed_loop};
use pyro4_wire::PyroUri;

use plumbing::cli::host_port;
use rpc_naming::{Error, Location, NS_ENV, NameServerClient};

/// `rpc_naming bench`'s flags.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The name server to measure (Python's, say); without it, the bench
    /// starts its own.
    #[arg(long, env = NS_ENV, value_parser = host_port)]
    ns: Option<String>,
    /// Lookups per run.
    #[arg(long, default_value_t = 20_000)]
    lookups: u64,
    /// Lookups in flight at once in the concurrent run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Runs the bench and prints its report.
pub async fn command(args: BenchArgs) -> anyhow::Result<()> {
    let report = run(args.ns, args.lookups, args.concurrency.max(1)).await?;
    println!("{report}");
    Ok(())
}

/// Measures `lookups` lookups through the name server at `ns` (Python's,
/// say), or without it through one started here on a thread of its own;
/// `concurrency` in flight in the concurrent run. The name looked up is
/// registered first and removed after.
pub async fn run(
    ns: Option<String>,
    lookups: u64,
    concurrency: usize,
) -> anyhow::Result<RpcReport> {
    let (addr, _own) = match ns {
        Some(addr) => (addr, None),
        None => {
            let own = rpc_naming::server::spawn_thread()
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
        Ok(RpcReport {
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
) -> rpc_naming::Result<Stats> {
    let (client, name, expected) = (client.clone(), name.to_owned(), expected.clone());
    closed_loop(lookups, concurrency, move |_| {
        let (client, name, expected) = (client.clone(), name.clone(), expected.clone());
        async move { check(client.lookup(&name).await?, &expected) }
    })
    .await
}

fn check(found: Location, expected: &Location) -> rpc_naming::Result<()> {
    if &found == expected {
        Ok(())
    } else {
        Err(Error::Protocol {
            addr: "the name server".into(),
            reason: format!("the bench's name led to {found}, not {expected}"),
        })
    }
}
