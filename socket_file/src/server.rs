//! The book server: one request in, one book out, many borrowers at once.
//!
//! Reading the file, hashing and framing run on a blocking thread that feeds
//! the socket writer through a small bounded channel, so disk, hash and
//! network overlap and memory stays constant for any book size. The digest of
//! a book is cached while the file is unchanged (same size, mtime and inode),
//! so repeat borrowers cost no hashing on the server.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use plumbing::accept::{self, AcceptConfig, Connection, IdleTimeout, OnShutdown, Slot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::protocol::{self, BLOCK_SIZE, DIGEST_LEN, FrameError, FrameReader, Kind, MAX_REQUEST};
use crate::{CLOSING_MESSAGE, Error, Result};

/// Book bytes per chunk handed from the reader thread to the socket writer.
const CHUNK_BLOCKS: usize = 256;
/// Chunks buffered between the reader thread and the socket (memory bound).
const CHUNKS_IN_FLIGHT: usize = 4;
/// How long, and for how many bytes, a refused client is drained before the
/// close (see `refuse`).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// How the server behaves; `ServerConfig::new(book)` gives the defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The file lent to every borrower.
    pub book: PathBuf,
    /// Borrowers served at once; one more gets a "busy" error frame.
    pub max_connections: usize,
    /// How long a client may take to send its request.
    pub request_timeout: Duration,
    /// How long a connection may move no byte (a client that says nothing,
    /// or stops reading) before it is dropped.
    pub stall_timeout: Duration,
    /// The slowest a borrower may take the book, in bytes per second on
    /// average, once `rate_grace` has passed: a borrower that reads, but too
    /// slowly, is dropped, so that a few slow readers cannot hold every slot.
    pub min_rate: u64,
    /// Time a loan gets before `min_rate` applies (a slow start, a short
    /// book).
    pub rate_grace: Duration,
    /// Print the chapter's per-connection lines.
    pub announce: bool,
    /// Also print every block (`Memproses '<block>'`), as the original did.
    pub verbose: bool,
}

impl ServerConfig {
    pub fn new(book: impl Into<PathBuf>) -> Self {
        ServerConfig {
            book: book.into(),
            max_connections: 64,
            request_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            min_rate: 256 * 1024,
            rate_grace: Duration::from_secs(10),
            announce: true,
            verbose: false,
        }
    }
}

/// Identifies one version of a file: if any of these change, so may its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }
}

struct Shared {
    config: ServerConfig,
    digest_cache: Mutex<Option<(FileStamp, [u8; DIGEST_LEN])>>,
}

/// A borrower's connection, failed by the accept loop once it moves no
/// byte for the stall timeout.
type Stream = IdleTimeout<TcpStream>;

/// Serves `config.book` on `listener` until `shutdown` completes, then waits
/// for the transfers in flight and returns.
///
/// Connections come through the workspace's accept loop
/// ([`plumbing::accept`]): at most `max_connections` borrowers at once (one
/// more gets a "server busy" error frame), and a borrower that takes no
/// byte for `stall_timeout` is dropped, freeing its slot.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    if config.announce {
        println!("Menunggu peminjaman buku");
    }
    if !config.book.is_file() {
        tracing::warn!(book = %config.book.display(), "the book does not exist yet; borrowers get an error until it does");
    }
    let busy = format!(
        "server busy: {} borrowers are being served, try again shortly",
        config.max_connections
    );
    // Every borrower over the limit is told, however many come at once: a
    // few bytes, written by the accept loop (no task each).
    let accept_config = AcceptConfig {
        max_connections: config.max_connections,
        idle_timeout: config.stall_timeout,
        on_shutdown: OnShutdown::Finish,
        busy_reply: Some(protocol::error_frame(&busy).to_vec().into()),
        ..AcceptConfig::new("book server")
    };
    let shared = Arc::new(Shared {
        config,
        digest_cache: Mutex::new(None),
    });
    let serve_one = move |connection: Connection| {
        let shared = Arc::clone(&shared);
        async move {
            if let Err(err) = lend(connection.stream, &connection.slot, &shared).await {
                tracing::info!(peer = %connection.peer, %err, "borrower not served");
            }
        }
    };
    accept::serve(listener, &accept_config, shutdown, serve_one, accept::close).await;
}

/// Why a connection ended early: told to the client when it still listens.
enum Refusal {
    /// Send this text as an error frame, then close.
    Tell(String),
    /// The connection itself failed; nothing more can be said.
    Lost(Error),
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        Refusal::Lost(err)
    }
}

/// Serves one borrower.
async fn lend(mut socket: Stream, slot: &Slot, shared: &Shared) -> Result<()> {
    let config = &shared.config;
    let outcome =
        match tokio::time::timeout(config.request_timeout, read_request(&mut socket)).await {
            Err(_) => Err(Refusal::Tell(format!(
                "no request within {:?}",
                config.request_timeout
            ))),
            Ok(Err(refusal)) => Err(refusal),
            Ok(Ok(request)) => {
                if config.announce {
                    println!("Memproses pinjaman buku");
                    // The client's words, never raw: see plumbing::text.
                    let request = plumbing::text::escape_line(&request);
                    println!("Peminjaman buku diterima '{request}'");
                }
                send_book(&mut socket, shared).await
            }
        };
    match outcome {
        Ok(()) => {
            if config.announce {
                println!("Berhasil Meminjamkan Buku");
            }
            Ok(())
        }
        Err(Refusal::Tell(text)) => {
            // Free the slot first: the refusal may linger up to a second.
            slot.release();
            refuse(socket, text).await
        }
        Err(Refusal::Lost(err)) => Err(err),
    }
}

/// Sends `text` in an error frame and closes.
async fn refuse(mut socket: Stream, text: String) -> Result<()> {
    tracing::info!(reason = %text, "refusing a borrower");
    let stall = socket.timeout();
    protocol::write_frame(&mut socket, Kind::Error, text.as_bytes())
        .await
        .map_err(|err| lost(err, stall))?;
    socket.shutdown().await.map_err(|err| lost(err, stall))?;
    // Closing with unread input (a request we never read) makes the kernel
    // send a reset, which can destroy the error frame before the client reads
    // it. Drain what the client still sends, briefly, then close.
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
    Ok(())
}

/// A failed send: a stall (the accept loop's idle timeout) or another error.
fn lost(err: std::io::Error, stall: Duration) -> Error {
    if err.kind() == std::io::ErrorKind::TimedOut {
        Error::Stalled(stall)
    } else {
        Error::Io(err)
    }
}

/// Writes `bytes`; a client that takes none of them for the stall timeout
/// is dropped.
async fn send(socket: &mut Stream, bytes: &[u8]) -> Result<(), Refusal> {
    let stall = socket.timeout();
    socket
        .write_all(bytes)
        .await
        .map_err(|err| Refusal::Lost(lost(err, stall)))
}

/// Reads and checks the one request frame.
async fn read_request(socket: &mut Stream) -> Result<String, Refusal> {
    let not_a_request = |kind: u8| {
        Refusal::Tell(format!(
            "bad request: expected a request frame (kind 'Q'), got byte 0x{kind:02x}"
        ))
    };
    let mut frames = FrameReader::new(socket, 2 * MAX_REQUEST);
    let limit = |kind| {
        if kind == Some(Kind::Request) {
            MAX_REQUEST
        } else {
            0
        }
    };
    let (kind, payload) = match frames.next_frame(limit).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return Err(Error::Protocol("closed before sending a request".into()).into()),
        Err(FrameError::TooLong { kind, len, max }) if kind == Kind::Request.byte() => {
            return Err(Refusal::Tell(format!(
                "bad request: {len} bytes; a request is 1 to {max} bytes"
            )));
        }
        Err(FrameError::TooLong { kind, .. }) => return Err(not_a_request(kind)),
        Err(FrameError::Truncated) => {
            return Err(Error::Protocol("closed in the middle of the request".into()).into());
        }
        Err(FrameError::BadBlock(_)) => return Err(not_a_request(Kind::Data.byte())),
        Err(FrameError::Io(err)) => return Err(Error::Io(err).into()),
    };
    if kind != Kind::Request.byte() {
        return Err(not_a_request(kind));
    }
    if payload.is_empty() {
        return Err(Refusal::Tell("bad request: the request is empty".into()));
    }
    let request = String::from_utf8(payload.to_vec())
        .map_err(|_| Refusal::Tell("bad request: the text is not valid UTF-8".into()))?;
    if !request.starts_with("Pinjam") {
        return Err(Refusal::Tell(format!(
            "request refused: {request:?} does not ask to borrow (start it with \"Pinjam\")"
        )));
    }
    Ok(request)
}

/// Sends `B`, the `D` frames, `S` and `M`.
async fn send_book(socket: &mut Stream, shared: &Shared) -> Result<(), Refusal> {
    let book = &shared.config.book;
    let book_name = book.file_name().map_or_else(
        || book.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (file, stamp) = open_book(book)
        .map_err(|err| Refusal::Tell(format!("book not available: {book_name}: {err}")))?;
    let cached = shared.cached_digest(stamp);
    send(socket, &protocol::book_frame(stamp.len)).await?;
    let hashed = stream_blocks(socket, file, stamp.len, cached.is_none(), &shared.config)
        .await?
        .map_err(|err| Refusal::Tell(format!("reading {book_name} failed: {err}")))?;

    // If the file changed while it was read, what was sent may be a mix of
    // two versions: say so rather than vouch for it with a digest.
    let now = open_book(book).map(|(_, stamp)| stamp).ok();
    if now != Some(stamp) {
        return Err(Refusal::Tell(format!(
            "{book_name} changed during the transfer; borrow it again"
        )));
    }
    let Some(digest) = cached.or(hashed) else {
        return Err(Refusal::Tell(format!("{book_name} could not be hashed")));
    };
    if cached.is_none() {
        *shared.digest_cache.lock().expect("digest cache poisoned") = Some((stamp, digest));
    }
    send(socket, &protocol::closing_frames(&digest, CLOSING_MESSAGE)).await?;
    let _ = socket.shutdown().await;
    Ok(())
}

impl Shared {
    /// The digest of the book version `stamp`, if it was hashed before.
    fn cached_digest(&self, stamp: FileStamp) -> Option<[u8; DIGEST_LEN]> {
        self.digest_cache
            .lock()
            .expect("digest cache poisoned")
            .filter(|(cached, _)| *cached == stamp)
            .map(|(_, digest)| digest)
    }
}

/// Streams `len` bytes of `file` as data frames: a blocking thread reads,
/// hashes (with `hash`) and frames, and this task sends, at no less than the
/// configured minimum rate. The outer error is a lost (or dropped)
/// connection; the inner result is the reader's (the digest, if hashed).
async fn stream_blocks(
    socket: &mut Stream,
    file: File,
    len: u64,
    hash: bool,
    config: &ServerConfig,
) -> Result<std::io::Result<Option<[u8; DIGEST_LEN]>>, Refusal> {
    let verbose = config.verbose;
    let (chunks_tx, mut chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let reader =
        tokio::task::spawn_blocking(move || read_frames(file, len, hash, verbose, &chunks_tx));
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    while let Some(chunk) = chunks.recv().await {
        sent += chunk.len() as u64;
        // By when these bytes must be taken: the grace, then the minimum rate.
        let due = started
            + config.rate_grace
            + Duration::from_secs_f64(sent as f64 / config.min_rate.max(1) as f64);
        let sent_in_time = match tokio::time::timeout_at(due, send(socket, &chunk)).await {
            Ok(done) => done,
            Err(_) => Err(Refusal::Lost(Error::TooSlow {
                min_rate: config.min_rate,
            })),
        };
        if let Err(lost) = sent_in_time {
            // Dropping the receiver stops the reader thread at its next send.
            drop(chunks);
            let _ = reader.await;
            return Err(lost);
        }
    }
    Ok(reader.await.expect("book reader panicked"))
}

fn open_book(path: &Path) -> std::io::Result<(File, FileStamp)> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, FileStamp::of(&meta)))
}

/// Runs on a blocking thread: reads exactly `len` bytes of `file`, frames them
/// in 1024-byte `D` frames, and hands chunks of frames to the socket writer.
/// Returns the digest when `hash` is set. Stops early if the writer is gone.
fn read_frames(
    mut file: File,
    len: u64,
    hash: bool,
    verbose: bool,
    chunks: &mpsc::Sender<Bytes>,
) -> std::io::Result<Option<[u8; DIGEST_LEN]>> {
    let mut hasher = hash.then(blake3::Hasher::new);
    let mut book = vec![0u8; CHUNK_BLOCKS * BLOCK_SIZE];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(book.len() as u64)).expect("at most one chunk");
        let read = &mut book[..want];
        file.read_exact(read).map_err(|err| {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                std::io::Error::other("the file shrank while it was read")
            } else {
                err
            }
        })?;
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&read[..]);
        }
        let mut chunk = BytesMut::new();
        protocol::put_data_frames(&mut chunk, read, |block| {
            if verbose {
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "Memproses '{}'",
                    String::from_utf8_lossy(block)
                );
            }
        });
        left -= want as u64;
        if chunks.blocking_send(chunk.freeze()).is_err() {
            return Ok(None);
        }
    }
    Ok(hasher.map(|h| *h.finalize().as_bytes()))
}
