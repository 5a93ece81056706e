//! `socket_file`: the chapter's book-lending server and client, plus a demo
//! and a bench.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpListener;

use socket_file::client::{Borrowed, Event, borrow_book};
use socket_file::server::{ServerConfig, serve};
use socket_file::{DEFAULT_ADDR, DEFAULT_REQUEST, bench, hex};

/// The chapter's book, shipped in this crate.
const SHIPPED_BOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mytext.txt");
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
        /// Address to listen on; 0.0.0.0 lets anyone on the network connect.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// The book to lend.
        #[arg(long, default_value = SHIPPED_BOOK)]
        file: PathBuf,
        /// Print every block sent, as the original did (not for big books).
        #[arg(long)]
        verbose: bool,
        /// Borrowers served at once; more get a "server busy" error.
        #[arg(long, default_value_t = 64)]
        max_connections: usize,
        /// Seconds a client may take to send its request.
        #[arg(long, default_value_t = 10)]
        request_timeout: u64,
    },
    /// Borrow the book and save it (replaces client2.py).
    Client {
        /// Address of the book server.
        #[arg(long, default_value = DEFAULT_ADDR)]
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run_cli().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().command.unwrap_or(Command::Demo) {
        Command::Demo => demo().await,
        Command::Server {
            addr,
            file,
            verbose,
            max_connections,
            request_timeout,
        } => {
            let mut config = ServerConfig::new(file);
            config.verbose = verbose;
            config.max_connections = max_connections.max(1);
            config.request_timeout = Duration::from_secs(request_timeout);
            server(addr, config).await
        }
        Command::Client {
            addr,
            out,
            request,
            verbose,
        } => client(&addr, &request, &out, verbose).await.map(drop),
        Command::Bench {
            size_mib,
            runs,
            dir,
        } => run_bench(size_mib, runs.max(1), dir).await,
    }
}

async fn demo() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, ServerConfig::new(SHIPPED_BOOK), async {
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
    server.await??;
    println!(
        "(demo: {} bytes saved to a temporary received.txt, SHA-256 {})",
        borrowed.size,
        hex(&borrowed.sha256)
    );
    Ok(())
}

async fn server(addr: SocketAddr, config: ServerConfig) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    if addr.ip().is_unspecified() {
        tracing::warn!("listening on {addr}: anyone on the network can connect");
    }
    tracing::info!(book = %config.book.display(), "book server listening on {}", listener.local_addr()?);
    serve(listener, config, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("Ctrl-C: finishing the transfers in flight");
    })
    .await?;
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
                println!("Data=> {}", String::from_utf8_lossy(block));
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
    println!("{}", borrowed.closing);
    println!("Buku siap dipinjam!");
    println!("peminjaman selesai");
    tracing::info!(bytes = borrowed.size, sha256 = %hex(&borrowed.sha256), path = %borrowed.path.display(), "saved");
    Ok(borrowed)
}

async fn run_bench(size_mib: u64, runs: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let temp;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let size = size_mib << 20;
    let book = dir.join("book.bin");
    println!("generating a {size_mib} MiB book in {}", dir.display());
    tokio::task::spawn_blocking({
        let book = book.clone();
        move || bench::generate_book(&book, size)
    })
    .await??;
    let protocol = bench::protocol_runs(&book, &dir, runs).await?;
    let raw = bench::raw_runs(size, runs).await?;
    std::fs::remove_file(&book)?;
    let show = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "protocol (file to file, SHA-256 verified): median {:>6.0} MB/s  runs: {}",
        bench::median(&protocol),
        show(&protocol)
    );
    println!(
        "raw TCP copy (memory to memory):           median {:>6.0} MB/s  runs: {}",
        bench::median(&raw),
        show(&raw)
    );
    println!(
        "ratio protocol/raw: {:.2}",
        bench::median(&protocol) / bench::median(&raw)
    );
    Ok(())
}
