//! `socket_time`: the chapter's time server and client, plus a demo and a bench.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumbing::cli::{Runtime, host_port, socket_addr};
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
        /// Address to listen on (IP:PORT); 0.0.0.0 lets anyone on the network connect.
        #[arg(long, default_value = DEFAULT_ADDR, value_parser = socket_addr)]
        addr: SocketAddr,
    },
    /// Fetch the time once and print it (replaces client.py).
    Client {
        /// Address of the time server (HOST:PORT).
        #[arg(long, default_value = DEFAULT_ADDR, value_parser = host_port)]
        addr: String,
    },
    /// Measure connections/s and latency, and the raw-TCP floor in the same run.
    Bench {
        /// Time server to measure (any, e.g. the Python one); without it, an
        /// in-process `socket_time` server is started.
        #[arg(long, value_parser = socket_addr)]
        addr: Option<SocketAddr>,
        /// How many connections to make in all.
        #[arg(long, default_value_t = 20_000)]
        connections: u64,
        /// How many connections to keep open at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Demo);
    // Each connection is a few microseconds of work: one thread serves them
    // with less scheduling than a work-stealing pool (measured: the same
    // throughput or better, and a lower p99). The bench keeps the pool, since
    // it runs its client and two servers at once.
    let runtime = match command {
        Command::Server { .. } => Runtime::CurrentThread,
        _ => Runtime::MultiThread,
    };
    plumbing::cli::run(runtime, "warn,socket_time=info,plumbing=info", run(command))
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
        } => {
            println!("{connections} connections, concurrency {concurrency}");
            println!("{}", bench::run(addr, connections, concurrency).await?);
            Ok(())
        }
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
    server.await?;
    Ok(())
}

async fn server(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = plumbing::cli::listen(addr).await?;
    let stop = plumbing::shutdown::signal();
    tracing::info!("time server listening on {}", listener.local_addr()?);
    serve(listener, true, stop).await;
    Ok(())
}
