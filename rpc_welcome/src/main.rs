//! `rpc_welcome`: the chapter's named RPC server and client, plus a demo and
//! a bench; this file reads the command line.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumbing::cli::{Runtime, socket_addr};

use rpc_welcome::TITLE;
use rpc_welcome::commands::{self, Naming};

mod bench;

#[derive(Parser)]
#[command(
    version,
    about = "A named RPC server and client (replaces pyro_server.py / pyro_client.py)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Name server, server and client in one process (the default).
    Demo {
        /// The book to buy.
        #[arg(long, default_value = TITLE)]
        title: String,
    },
    /// Serve welcome_message (tarpc) and welcomeMessage (Pyro4, for pyro_client.py) on one port, registered with the name server.
    Server {
        #[command(flatten)]
        naming: Naming,
        /// Address to listen on (IP:PORT; port 0 picks a free one); 0.0.0.0
        /// lets anyone on the network connect.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = socket_addr)]
        addr: SocketAddr,
    },
    /// Buy a book: find the server by name and call it (over Pyro4 if it is pyro_server.py).
    Client {
        #[command(flatten)]
        naming: Naming,
        /// The book's title; without it, asks on stdin as the chapter did.
        #[arg(long)]
        title: Option<String>,
        /// The Pyro4 correlation id (a UUID) the calls carry; without it, a
        /// new one.
        #[arg(long, value_name = "UUID")]
        correlation_id: Option<uuid::Uuid>,
    },
    /// Calls/s sequential and concurrent, over tarpc and Pyro4, and a raw TCP ping-pong in the same run.
    Bench(bench::BenchArgs),
}

// One thread: an RPC is microseconds of work, and on two cores hand-offs
// between the threads of a work-stealing pool cost more than they give
// (measured in the README).
fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Demo {
        title: TITLE.into(),
    });
    // A bench's own servers stopping is not news.
    let log = match command {
        Command::Bench { .. } => "warn",
        _ => "warn,rpc_welcome=info,plumbing=info",
    };
    plumbing::cli::run(Runtime::CurrentThread, log, run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo { title } => commands::demo(&title).await,
        Command::Server { naming, addr } => commands::server(&naming, addr).await,
        Command::Client {
            naming,
            title,
            correlation_id,
        } => commands::client(&naming, title, correlation_id).await,
        Command::Bench(args) => bench::command(args).await,
    }
}
