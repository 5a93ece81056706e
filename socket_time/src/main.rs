//! `socket_time`: the chapter's time server and client, plus a demo and a bench.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumbing::cli::{Runtime, host_port, socket_addr};

use socket_time::{DEFAULT_ADDR, commands};

mod bench;

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
        Command::Demo => commands::demo().await,
        Command::Server { addr } => commands::server(addr).await,
        Command::Client { addr } => commands::client(&addr).await,
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
