//! `rpc_chain`: a ring of RPC servers passing a message on, its client, a
//! demo and a bench; this file reads the command line.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumbing::cli::{Runtime, host_port, socket_addr};
use rpc_transport::tls::SslArgs;

use rpc_chain::commands;
use rpc_naming::{DEFAULT_NS_ADDR, NS_ENV};

mod bench;

#[derive(Parser)]
#[command(
    version,
    about = "A ring of RPC servers passing a message on (replaces the Pyro4 chain example)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Name server, a ring of servers and the client in one process (the default).
    Demo {
        /// How many servers in the ring.
        #[arg(long, default_value_t = 3)]
        servers: u32,
    },
    /// Run server N of the ring (replaces server_chain_N.py; Python hops may be its neighbours).
    Server {
        /// The name server, HOST:PORT: `rpc_naming serve` or Python's
        /// `python -m Pyro4.naming`.
        #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR, value_parser = host_port)]
        ns: String,
        #[command(flatten)]
        ssl: SslArgs,
        /// This server's id: it registers as example.chainTopology.ID.
        #[arg(long)]
        id: u32,
        /// The id of the server it passes messages on to.
        #[arg(long)]
        next: u32,
        /// Address to listen on (IP:PORT; port 0 picks a free one); 0.0.0.0
        /// lets anyone on the network connect.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = socket_addr)]
        addr: SocketAddr,
    },
    /// Send a message round the ring and print the status (replaces client_chain.py).
    Client {
        /// The name server, HOST:PORT.
        #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR, value_parser = host_port)]
        ns: String,
        #[command(flatten)]
        ssl: SslArgs,
        /// The server to start at.
        #[arg(long, default_value_t = 1)]
        start: u32,
        /// The Pyro4 correlation id (a UUID) every call of the trip
        /// carries; without it, a new one.
        #[arg(long, value_name = "UUID")]
        correlation_id: Option<uuid::Uuid>,
        /// The message's words.
        #[arg(default_values_t = ["hello".to_owned()])]
        words: Vec<String>,
    },
    /// Chains/s sequential and concurrent, entered over tarpc and Pyro4, and four raw ping-pongs per chain as the floor.
    Bench(bench::BenchArgs),
}

// One thread: an RPC is microseconds of work, and on two cores hand-offs
// between the threads of a work-stealing pool cost more than they give
// (measured in the README).
fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Demo { servers: 3 });
    // A bench's own servers stopping is not news.
    let log = match command {
        Command::Bench { .. } => "warn",
        _ => "warn,rpc_chain=info,plumbing=info",
    };
    plumbing::cli::run(Runtime::CurrentThread, log, run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo { servers } => commands::demo(servers.max(1)).await,
        Command::Server {
            ns,
            ssl,
            id,
            next,
            addr,
        } => commands::server(&ns, &ssl, id, next, addr).await,
        Command::Client {
            ns,
            ssl,
            start,
            correlation_id,
            words,
        } => commands::client(&ns, &ssl, start, words, correlation_id).await,
        Command::Bench(args) => bench::command(args).await,
    }
}
