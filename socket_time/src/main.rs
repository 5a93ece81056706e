//! `socket_time`: the chapter's time server and client, plus a demo and a bench.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use socket_time::{DEFAULT_ADDR, bench, checkout_line, fetch_time, serve};

#[derive(Parser)]
#[command(
    version,
    about = "TCP: a server sends the current time, a client prints it"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run server and client in one process on an ephemeral port (the default).
    Demo,
    /// Serve the time to every connection (replaces server.py).
    Server {
        /// Address to listen on; 0.0.0.0 lets anyone on the network connect.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
    },
    /// Fetch the time once and print it (replaces client.py).
    Client {
        /// Address of the time server.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: String,
    },
    /// Measure connections/s and latency, and the raw-TCP floor in the same run.
    Bench {
        /// Time server to measure (any, e.g. the Python one); without it, an
        /// in-process `socket_time` server is started.
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// How many connections to make in all.
        #[arg(long, default_value_t = 20_000)]
        connections: u64,
        /// How many connections to keep open at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let command = Cli::parse().command.unwrap_or(Command::Demo);
    // Each connection is a few microseconds of work: one thread serves them
    // with less scheduling than a work-stealing pool (measured: the same
    // throughput or better, and a lower p99). The bench keeps the pool, since
    // it runs its client and two servers at once.
    let runtime = match command {
        Command::Server { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build();
    match runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(command)))
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo => demo().await,
        Command::Server { addr } => server(addr).await,
        Command::Client { addr } => {
            let time = fetch_time(&addr).await?;
            println!("{}", checkout_line(&time));
            Ok(())
        }
        Command::Bench {
            addr,
            connections,
            concurrency,
        } => run_bench(addr, connections, concurrency).await,
    }
}

async fn demo() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, true, async {
        let _ = stopped.await;
    }));
    let time = fetch_time(&addr.to_string()).await?;
    println!("{}", checkout_line(&time));
    let _ = stop.send(());
    server.await??;
    Ok(())
}

async fn server(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    if addr.ip().is_unspecified() {
        tracing::warn!("listening on {addr}: anyone on the network can connect");
    }
    tracing::info!("time server listening on {}", listener.local_addr()?);
    serve(listener, true, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: finishing open connections");
    })
    .await?;
    Ok(())
}

async fn run_bench(
    target: Option<SocketAddr>,
    connections: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let target = match target {
        Some(addr) => addr,
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(serve(listener, false, std::future::pending()));
            addr
        }
    };
    let floor_listener = TcpListener::bind("127.0.0.1:0").await?;
    let floor_addr = floor_listener.local_addr()?;
    tokio::spawn(bench::serve_floor(floor_listener));

    println!("{connections} connections, concurrency {concurrency}");
    let measured = bench::load(target, connections, concurrency).await;
    println!("server {target:<21} {}", measured.summary());
    let floor = bench::load(floor_addr, connections, concurrency).await;
    println!("floor  {floor_addr:<21} {}", floor.summary());
    println!(
        "ratio server/floor: {:.2}",
        measured.per_second() / floor.per_second()
    );
    anyhow::ensure!(
        measured.failures == 0,
        "{} connections to {target} failed (RUST_LOG=warn shows the first)",
        measured.failures
    );
    Ok(())
}
