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

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use crate::protocol::{
    self, BLOCK_SIZE, DIGEST_LEN, FrameError, FrameReader, HEADER_LEN, Kind, MAX_REQUEST,
};
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
    /// How long a send may make no progress before the client is dropped.
    pub stall_timeout: Duration,
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
    slots: Arc<Semaphore>,
    digest_cache: Mutex<Option<(FileStamp, [u8; DIGEST_LEN])>>,
}

/// Serves `config.book` on `listener` until `shutdown` completes, then waits
/// for the transfers in flight and returns.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if config.announce {
        println!("Menunggu peminjaman buku");
    }
    if !config.book.is_file() {
        tracing::warn!(book = %config.book.display(), "the book does not exist yet; borrowers get an error until it does");
    }
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(config.max_connections)),
        config,
        digest_cache: Mutex::new(None),
    });
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors, or a peer that reset before accept:
                    // keep serving the others.
                    tracing::warn!(%err, "accept failed; continuing");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Taken here, in arrival order, so that whoever connected first
        // gets the slot.
        let slot = Arc::clone(&shared.slots).try_acquire_owned().ok();
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            if let Err(err) = lend(socket, slot, &shared).await {
                tracing::info!(%peer, %err, "borrower not served");
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
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

/// Serves one borrower; without a `slot` the server is full and says so.
async fn lend(
    mut socket: TcpStream,
    slot: Option<OwnedSemaphorePermit>,
    shared: &Shared,
) -> Result<()> {
    let _ = socket.set_nodelay(true);
    let config = &shared.config;
    let Some(slot) = slot else {
        let text = format!(
            "server busy: {} borrowers are being served, try again shortly",
            config.max_connections
        );
        return refuse(&mut socket, text, config.stall_timeout).await;
    };
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
            drop(slot);
            refuse(&mut socket, text, config.stall_timeout).await
        }
        Err(Refusal::Lost(err)) => Err(err),
    }
}

async fn refuse(socket: &mut TcpStream, text: String, stall: Duration) -> Result<()> {
    tracing::info!(reason = %text, "refusing a borrower");
    let send = async {
        protocol::write_frame(socket, Kind::Error, text.as_bytes()).await?;
        socket.shutdown().await
    };
    match tokio::time::timeout(stall, send).await {
        Ok(sent) => sent.map_err(Error::Io)?,
        Err(_) => return Err(Error::Stalled(stall)),
    }
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

/// Reads and checks the one request frame.
async fn read_request(socket: &mut TcpStream) -> Result<String, Refusal> {
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
async fn send_book(socket: &mut TcpStream, shared: &Shared) -> Result<(), Refusal> {
    let config = &shared.config;
    let book_name = config.book.file_name().map_or_else(
        || config.book.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (file, stamp) = open_book(&config.book)
        .map_err(|err| Refusal::Tell(format!("book not available: {book_name}: {err}")))?;
    let cached = shared
        .digest_cache
        .lock()
        .expect("digest cache poisoned")
        .filter(|(cached_stamp, _)| *cached_stamp == stamp)
        .map(|(_, digest)| digest);

    let stall = config.stall_timeout;
    let mut book_frame = BytesMut::with_capacity(HEADER_LEN + 8);
    book_frame.put_slice(&protocol::header(Kind::Book, 8));
    book_frame.put_u64(stamp.len);
    send_within(socket, book_frame.freeze(), stall).await?;

    let (chunks_tx, mut chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let path = config.book.clone();
    let verbose = config.verbose;
    let reader = tokio::task::spawn_blocking(move || {
        read_frames(file, stamp.len, cached.is_none(), verbose, &chunks_tx)
    });
    while let Some(chunk) = chunks.recv().await {
        if let Err(lost) = send_within(socket, chunk, stall).await {
            // Dropping the receiver stops the reader thread at its next send.
            drop(chunks);
            let _ = reader.await;
            return Err(lost);
        }
    }
    let hashed = reader
        .await
        .expect("book reader panicked")
        .map_err(|err| Refusal::Tell(format!("reading {book_name} failed: {err}")))?;

    // If the file changed while it was read, what was sent may be a mix of
    // two versions: say so rather than vouch for it with a digest.
    let now = open_book(&path).map(|(_, stamp)| stamp).ok();
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

    let mut tail = BytesMut::with_capacity(2 * HEADER_LEN + DIGEST_LEN + CLOSING_MESSAGE.len());
    tail.put_slice(&protocol::header(Kind::Digest, DIGEST_LEN));
    tail.put_slice(&digest);
    tail.put_slice(&protocol::header(Kind::Closing, CLOSING_MESSAGE.len()));
    tail.put_slice(CLOSING_MESSAGE.as_bytes());
    send_within(socket, tail.freeze(), stall).await?;
    let _ = socket.shutdown().await;
    Ok(())
}

/// Writes `bytes`, dropping a client that accepts nothing for `stall`.
async fn send_within(socket: &mut TcpStream, bytes: Bytes, stall: Duration) -> Result<(), Refusal> {
    match tokio::time::timeout(stall, socket.write_all(&bytes)).await {
        Ok(sent) => sent.map_err(|err| Refusal::Lost(Error::Io(err))),
        Err(_) => Err(Refusal::Lost(Error::Stalled(stall))),
    }
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
    let mut hasher = hash.then(Sha256::new);
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
        let mut chunk = BytesMut::with_capacity(want + want.div_ceil(BLOCK_SIZE) * HEADER_LEN);
        for block in read.chunks(BLOCK_SIZE) {
            if verbose {
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "Memproses '{}'",
                    String::from_utf8_lossy(block)
                );
            }
            chunk.put_slice(&protocol::header(Kind::Data, block.len()));
            chunk.put_slice(block);
        }
        left -= want as u64;
        if chunks.blocking_send(chunk.freeze()).is_err() {
            return Ok(None);
        }
    }
    Ok(hasher.map(|h| h.finalize().into()))
}
