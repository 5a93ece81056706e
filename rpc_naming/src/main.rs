//! `rpc_naming`: the name server (`serve`, the default) and Pyro4 `nsc`-style
//! commands to query and change it; this file reads the command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumbing::cli::Runtime;

use rpc_naming::Location;
use rpc_naming::commands::{self, ListArgs, Ns, ServeArgs};

mod bench;

#[derive(Parser)]
#[command(
    version,
    about = "A name server for the RPC examples (replaces python -m Pyro4.naming and nsc)",
    long_about = "A name server for the RPC examples (replaces python -m Pyro4.naming and nsc).\n\n\
                  It speaks tarpc and Pyro4 on one port, so Python's Pyro4 programs use it as \
                  their name server; the client commands work against Python's \
                  `python -m Pyro4.naming` as well."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the name server (the default).
    Serve(ServeArgs),
    /// List registrations, all or those starting with PREFIX.
    List(ListArgs),
    /// Set NAME's metadata to the TAGs given (none: clear it), as nsc setmeta.
    Setmeta {
        name: String,
        tags: Vec<String>,
        #[command(flatten)]
        ns: Ns,
    },
    /// Print where NAME leads (IP:PORT, or a Pyro4 URI), and its metadata.
    Lookup {
        name: String,
        #[command(flatten)]
        ns: Ns,
    },
    /// Register NAME at LOCATION (overwrites unless --safe); it stays until removed.
    Register {
        name: String,
        /// Where the server is: IP:PORT for a server of this workspace, or a
        /// Pyro4 URI, PYRO:objectid@host:port, for a Python one.
        location: Location,
        /// Fail if the name is already registered.
        #[arg(long)]
        safe: bool,
        #[command(flatten)]
        ns: Ns,
    },
    /// Remove NAME (or with --regex, every name matching it); prints how many.
    Remove {
        name: String,
        /// Treat NAME as a regex (anchored at the start).
        #[arg(long)]
        regex: bool,
        #[command(flatten)]
        ns: Ns,
    },
    /// Lookups per second (sequential, concurrent, over Pyro4) against a
    /// raw TCP ping-pong in the same run.
    Bench(bench::BenchArgs),
    /// Check that the name server answers.
    Ping {
        #[command(flatten)]
        ns: Ns,
    },
}

// One thread: an RPC is microseconds of work, and on two cores hand-offs
// between the threads of a work-stealing pool cost more than they give
// (measured in the README).
fn main() -> ExitCode {
    // No subcommand is `serve` with its defaults (and its environment:
    // PYRO_SSL and the rest).
    let command = Cli::parse().command.unwrap_or_else(|| {
        let program = std::env::args()
            .next()
            .unwrap_or_else(|| "rpc_naming".into());
        let serve = Cli::parse_from([program.as_str(), "serve"]);
        serve.command.expect("serve is a command")
    });
    // A bench's own name server registering and stopping is not news.
    let log = match command {
        Command::Bench { .. } => "warn",
        _ => "warn,rpc_naming=info,plumbing=info",
    };
    plumbing::cli::run(Runtime::CurrentThread, log, run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => commands::serve(args).await,
        Command::List(args) => commands::list(args).await,
        Command::Setmeta { name, tags, ns } => commands::setmeta(&ns, &name, &tags).await,
        Command::Lookup { name, ns } => commands::lookup(&ns, &name).await,
        Command::Register {
            name,
            location,
            safe,
            ns,
        } => commands::register(&ns, &name, location, safe).await,
        Command::Remove { name, regex, ns } => commands::remove(&ns, &name, regex).await,
        Command::Ping { ns } => commands::ping(&ns).await,
        Command::Bench(args) => bench::command(args).await,
    }
}
