//! Lending a book: streaming a file over TCP, framed, verified, never half-written.
//!
//! The chapter's `server2.py` / `client2.py` send `mytext.txt` in 1024-byte
//! blocks and then a closing message on the same raw stream. With no framing,
//! the client cannot tell the file from the message (the message ends up inside
//! `received.txt`), and the original server closes its socket inside the block
//! loop, so any book over 1024 bytes kills it.
//!
//! This crate keeps the shape (one request, 1024-byte blocks, a closing
//! message) and adds what makes it correct:
//!
//! - [`protocol`]: every message is a frame with a kind and a length, so data,
//!   the closing message and errors are told apart; the book's size comes
//!   first and its BLAKE3 digest last, so the client verifies what it got.
//! - [`server`]: streams any size in constant memory, serves many borrowers at
//!   once up to a limit, times out silent clients, and answers bad requests
//!   with an error frame while it keeps serving.
//! - [`client`]: writes to a temporary file beside the target and renames it
//!   only after the size and digest match, so `received.txt` is never left
//!   half-written or clobbered by a failed transfer.
//!
//! A loan, server and client in one program:
//!
//! ```
//! use socket_file::client::borrow_book;
//! use socket_file::server::{ServerConfig, serve};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let book = dir.path().join("mytext.txt");
//! std::fs::write(&book, "Peminjaman buku diterima")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?.to_string();
//! let mut config = ServerConfig::new(&book);
//! config.announce = false;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, config, async {
//!     let _ = stopped.await;
//! }));
//! let out = dir.path().join("received.txt");
//! let borrowed = borrow_book(&addr, socket_file::DEFAULT_REQUEST, &out, |_| {}).await?;
//! assert_eq!(borrowed.closing, socket_file::CLOSING_MESSAGE);
//! assert_eq!(std::fs::read_to_string(&out)?, "Peminjaman buku diterima");
//! let _ = stop.send(());
//! server.await?;
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod commands;
pub mod protocol;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

/// Where the chapter's file server listens (`server2.py` used port 60000).
pub const DEFAULT_ADDR: &str = "127.0.0.1:60000";

/// The chapter's request (`client2.py`; the description adds the `!`).
pub const DEFAULT_REQUEST: &str = "Pinjam Buku Programming GO!";

/// The chapter's closing message, sent after the book.
pub const CLOSING_MESSAGE: &str = "->Peminjaman buku telah selesai diproses";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to the book server at {addr} (is `socket_file server` running there?)")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the connection broke after {received} of {expected} bytes")]
    Interrupted {
        received: u64,
        expected: u64,
        source: std::io::Error,
    },
    #[error("the peer sent nothing for {0:?}")]
    Stalled(Duration),
    #[error("the borrower took the book at less than {min_rate} bytes/s; dropped to free its slot")]
    TooSlow { min_rate: u64 },
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("the book is corrupt: BLAKE3 {actual} does not match the server's {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("cannot write {path}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network I/O failed")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Lower-case hex of a digest, for messages and logs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
