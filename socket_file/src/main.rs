//! `socket_file`: the chapter's book-lending server and client, plus a demo
//! and a bench.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use plumbing::cli::{Runtime, host_port, socket_addr};

use socket_file::commands::{self, Limits};
use socket_file::{DEFAULT_ADDR, DEFAULT_REQUEST};

mod bench;

#[derive(Parser)]
#[command(
    version,
    about = "TCP: lend a book (a file) in 1024-byte blocks, framed and verified"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run server and client in one process on an ephemeral port (the default).
    Demo,
    /// Lend a book to every borrower (replaces server2.py).
    Server {
        /// Address to listen on (IP:PORT); 0.0.0.0 lets anyone on the network connect.
        #[arg(long, default_value = DEFAULT_ADDR, value_parser = socket_addr)]
        addr: SocketAddr,
        /// The book to lend (default: the chapter's mytext.txt, shipped in
        /// the binary).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print every block sent, as the original did (not for big books).
        #[arg(long)]
        verbose: bool,
        /// Borrowers served at once; more get a "server busy" error.
        #[arg(long, default_value_t = 64)]
        max_connections: usize,
        /// Seconds a client may take to send its request.
        #[arg(long, default_value_t = 10)]
        request_timeout: u64,
        /// The slowest a borrower may take the book, in KiB/s on average
        /// after its first 10 s; a slower one is dropped to free its slot.
        #[arg(long, default_value_t = 256)]
        min_rate_kib: u64,
    },
    /// Borrow the book and save it (replaces client2.py).
    Client {
        /// Address of the book server (HOST:PORT).
        #[arg(long, default_value = DEFAULT_ADDR, value_parser = host_port)]
        addr: String,
        /// Where to save the book; written only once it is complete and verified.
        #[arg(long, default_value = "received.txt")]
        out: PathBuf,
        /// The request sent to the server.
        #[arg(long, default_value = DEFAULT_REQUEST)]
        request: String,
        /// Print every block received, as the original did (not for big books).
        #[arg(long)]
        verbose: bool,
    },
    /// Time a loan as `client` runs it against a plain copy, in the same run.
    Bench {
        /// Size of the generated book, in MiB.
        #[arg(long, default_value_t = 256)]
        size_mib: u64,
        /// How many transfers of each kind (they alternate).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Folder for the generated book and the received copies (default: a
        /// temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Demo);
    plumbing::cli::run(
        Runtime::MultiThread,
        "warn,socket_file=info,plumbing=info",
        run(command),
    )
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo => commands::demo().await,
        Command::Server {
            addr,
            file,
            verbose,
            max_connections,
            request_timeout,
            min_rate_kib,
        } => {
            let limits = Limits {
                max_connections,
                request_timeout: Duration::from_secs(request_timeout),
                min_rate: min_rate_kib.saturating_mul(1024),
            };
            commands::server(addr, file, verbose, limits).await
        }
        Command::Client {
            addr,
            out,
            request,
            verbose,
        } => {
            // Stop on Ctrl-C or SIGTERM by dropping the loan, which deletes
            // its temporary file: an interrupted loan leaves nothing behind.
            let stop = plumbing::shutdown::signal();
            tokio::select! {
                borrowed = commands::client(&addr, &request, &out, verbose) => borrowed.map(drop),
                () = stop => anyhow::bail!("interrupted; {} was not written", out.display()),
            }
        }
        Command::Bench {
            size_mib,
            runs,
            dir,
        } => {
            println!("{}", bench::run(size_mib, runs.max(1), dir).await?);
            Ok(())
        }
    }
}
