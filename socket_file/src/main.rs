//! `socket_file`: the chapter's book-lending server and client, plus a demo
//! and a bench.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use plumbing::cli::{Runtime, host_port, socket_addr};
use tokio::net::TcpListener;

use socket_file::client::{Borrowed, Event, borrow_book};
use socket_file::server::{ServerConfig, serve};
use socket_file::{DEFAULT_ADDR, DEFAULT_REQUEST, bench, hex};

/// The chapter's book, shipped inside the binary.
const SHIPPED_BOOK: &[u8] = include_bytes!("../mytext.txt");
/// Books at least this large get a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 1 << 20;

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
    /// Measure MB/s of the protocol and of a raw TCP copy in the same run.
    Bench {
        /// Size of the generated book, in MiB.
        #[arg(long, default_value_t = 256)]
        size_mib: u64,
        /// How many transfers of each kind.
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
        Command::Demo => demo().await,
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
            server(addr, file, verbose, limits).await
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
                borrowed = client(&addr, &request, &out, verbose) => borrowed.map(drop),
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

/// The chapter's book, shipped inside the binary, saved to a temporary
/// folder that lives as long as the returned guard.
fn shipped_book() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().context("cannot create a folder for the shipped book")?;
    let book = dir.path().join("mytext.txt");
    std::fs::write(&book, SHIPPED_BOOK).context("cannot save the shipped book")?;
    Ok((dir, book))
}

async fn demo() -> anyhow::Result<()> {
    let (_shipped, book) = shipped_book()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, ServerConfig::new(book), async {
        let _ = stopped.await;
    }));
    let dir = tempfile::tempdir()?;
    let borrowed = client(
        &addr,
        DEFAULT_REQUEST,
        &dir.path().join("received.txt"),
        true,
    )
    .await?;
    let _ = stop.send(());
    server.await?;
    println!(
        "(demo: {} bytes saved to a temporary received.txt, SHA-256 {})",
        borrowed.size,
        hex(&borrowed.sha256)
    );
    Ok(())
}

/// The server's limits from the command line.
struct Limits {
    max_connections: usize,
    request_timeout: Duration,
    min_rate: u64,
}

async fn server(
    addr: SocketAddr,
    file: Option<PathBuf>,
    verbose: bool,
    limits: Limits,
) -> anyhow::Result<()> {
    let mut _shipped = None;
    let book = match file {
        Some(file) => {
            anyhow::ensure!(
                file.is_file(),
                "the book {} does not exist or is not a file",
                file.display()
            );
            file
        }
        None => {
            let (dir, book) = shipped_book()?;
            _shipped = Some(dir);
            book
        }
    };
    let mut config = ServerConfig::new(book);
    config.verbose = verbose;
    config.max_connections = limits.max_connections.max(1);
    config.request_timeout = limits.request_timeout;
    config.min_rate = limits.min_rate.max(1);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    if addr.ip().is_unspecified() {
        tracing::warn!("listening on {addr}: anyone on the network can connect");
    }
    let stop = plumbing::shutdown::signal();
    tracing::info!(book = %config.book.display(), "book server listening on {}", listener.local_addr()?);
    serve(listener, config, stop).await;
    Ok(())
}

async fn client(addr: &str, request: &str, out: &Path, verbose: bool) -> anyhow::Result<Borrowed> {
    println!("Peminjaman buku sedang diproses");
    let mut progress: Option<ProgressBar> = None;
    let borrowed = borrow_book(addr, request, out, |event| match event {
        Event::Started { size } => {
            if !verbose && size >= PROGRESS_FROM && std::io::stdout().is_terminal() {
                let bar = ProgressBar::new(size).with_style(
                    ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid progress template"),
                );
                progress = Some(bar);
            }
        }
        Event::Block(block) => {
            if verbose {
                let block = String::from_utf8_lossy(block);
                println!("Data=> {}", plumbing::text::escape_text(&block));
            }
            if let Some(bar) = &progress {
                bar.inc(block.len() as u64);
            }
        }
    })
    .await;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let borrowed = borrowed.with_context(|| {
        format!(
            "borrowing from {addr} failed; {} was not written",
            out.display()
        )
    })?;
    // The server's text, never raw: see plumbing::text.
    println!("{}", plumbing::text::escape_line(&borrowed.closing));
    println!("Buku siap dipinjam!");
    println!("peminjaman selesai");
    tracing::info!(bytes = borrowed.size, sha256 = %hex(&borrowed.sha256), path = %borrowed.path.display(), "saved");
    Ok(borrowed)
}
