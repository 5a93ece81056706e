//! What each command of the `socket_file` binary does, and what it
//! prints (the chapter's lines, a progress bar for big books): the server,
//! the client and a demo of both. `main.rs` only reads the command line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::net::TcpListener;

use crate::client::{Borrowed, Event, borrow_book};
use crate::server::{ServerConfig, serve};
use crate::{DEFAULT_REQUEST, hex};

/// The chapter's book, shipped inside the binary.
const SHIPPED_BOOK: &[u8] = include_bytes!("../mytext.txt");
/// Books at least this large get a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 1 << 20;

/// The chapter's book, shipped inside the binary, saved to a temporary
/// folder that lives as long as the returned guard.
fn shipped_book() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().context("cannot create a folder for the shipped book")?;
    let book = dir.path().join("mytext.txt");
    std::fs::write(&book, SHIPPED_BOOK).context("cannot save the shipped book")?;
    Ok((dir, book))
}

/// Server and client in one process on an ephemeral port.
pub async fn demo() -> anyhow::Result<()> {
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
        "(demo: {} bytes saved to a temporary received.txt, BLAKE3 {})",
        borrowed.size,
        hex(&borrowed.digest)
    );
    Ok(())
}

/// The server's limits from the command line.
pub struct Limits {
    pub max_connections: usize,
    pub request_timeout: Duration,
    /// Bytes a second.
    pub min_rate: u64,
}

/// Lends `file` (or the shipped book) on `addr` until Ctrl-C or SIGTERM.
pub async fn server(
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
    let listener = plumbing::cli::listen(addr).await?;
    let stop = plumbing::shutdown::signal();
    tracing::info!(book = %config.book.display(), "book server listening on {}", listener.local_addr()?);
    serve(listener, config, stop).await;
    Ok(())
}

/// Borrows the book from `addr` into `out`, printing the chapter's lines.
pub async fn client(
    addr: &str,
    request: &str,
    out: &Path,
    verbose: bool,
) -> anyhow::Result<Borrowed> {
    println!("Peminjaman buku sedang diproses");
    // Hidden until the book turns out big enough to need it; only a shown
    // bar is told of each block (telling a hidden one costs a lock and a
    // clock read per block).
    let progress = ProgressBar::hidden();
    let on_event = {
        let progress = progress.clone();
        let mut shown = false;
        move |event: Event<'_>| match event {
            Event::Started { size } => {
                shown = !verbose && size >= PROGRESS_FROM && std::io::stdout().is_terminal();
                if shown {
                    progress.set_length(size);
                    progress.set_style(
                        ProgressStyle::with_template(
                            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .expect("valid progress template"),
                    );
                    progress.set_draw_target(ProgressDrawTarget::stdout());
                }
            }
            Event::Block(block) => {
                if verbose {
                    let block = String::from_utf8_lossy(block);
                    println!("Data=> {}", plumbing::text::escape_text(&block));
                }
                if shown {
                    progress.inc(block.len() as u64);
                }
            }
        }
    };
    let borrowed = borrow_book(addr, request, out, on_event).await;
    progress.finish_and_clear();
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
    tracing::info!(bytes = borrowed.size, blake3 = %hex(&borrowed.digest), path = %borrowed.path.display(), "saved");
    Ok(borrowed)
}
