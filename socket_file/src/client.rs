//! The borrower: sends one request and saves the book it gets back.
//!
//! The socket is read on the async side, which checks every frame and packs
//! the blocks into large chunks; a blocking thread writes the chunks to a
//! temporary file and another hashes them, so receiving, writing and hashing
//! overlap. The temporary file sits beside the target (same file system, so
//! the final rename is atomic) and is deleted if anything fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::protocol::{
    self, BLOCK_SIZE, BOOK_LEN, DIGEST_LEN, FrameError, FrameReader, Kind, MAX_TEXT,
};
use crate::{Error, Result, hex};

/// How long to wait to connect, and for any single read to make progress.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Book bytes gathered before handing them to the writer and hasher.
const CHUNK: usize = 256 * 1024;
/// Chunks queued per worker thread (memory bound: a few MiB in all).
const CHUNKS_IN_FLIGHT: usize = 4;
const READ_BUFFER: usize = 256 * 1024;

/// What the client saw while receiving, for the front end to show.
#[derive(Debug)]
pub enum Event<'a> {
    /// The server accepted the request and will send this many bytes.
    Started { size: u64 },
    /// One block of the book, as it arrived.
    Block(&'a [u8]),
}

/// A book that arrived whole and was saved under its final name.
#[derive(Debug)]
pub struct Borrowed {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: [u8; DIGEST_LEN],
    /// The message the server sent after the book.
    pub closing: String,
}

/// Borrows a book: sends `request` to `addr` and saves the reply to `out`.
///
/// `out` is only created or replaced once the whole book has arrived and its
/// size and SHA-256 match what the server announced.
pub async fn borrow_book(
    addr: &str,
    request: &str,
    out: &Path,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Borrowed> {
    let socket = tokio::time::timeout(CLIENT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Connect {
            addr: addr.to_owned(),
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| Error::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = socket.set_nodelay(true);
    let (reader, mut writer) = socket.into_split();
    protocol::write_frame(&mut writer, Kind::Request, request.as_bytes()).await?;
    let mut frames = FrameReader::new(reader, READ_BUFFER);

    let size = match next_frame(&mut frames).await? {
        (Kind::Book, payload) if payload.len() == BOOK_LEN => {
            u64::from_be_bytes(payload[..].try_into().expect("checked length"))
        }
        (kind, payload) => return Err(unexpected(kind, &payload, "the book's size")),
    };
    on_event(Event::Started { size });

    let temp = temp_file_beside(out)?;
    let temp_path = temp.path().to_owned();
    let (to_writer, writer_rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let (to_hasher, hasher_rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let writing = tokio::task::spawn_blocking(move || write_chunks(temp, writer_rx));
    let hashing = tokio::task::spawn_blocking(move || hash_chunks(hasher_rx));

    let received = receive_blocks(&mut frames, size, &to_writer, &to_hasher, &mut on_event).await;
    drop((to_writer, to_hasher));
    let written = writing.await.expect("writer thread panicked");
    let actual = hashing.await.expect("hasher thread panicked");
    received?;
    let temp = written.map_err(|source| Error::Output {
        path: temp_path,
        source,
    })?;

    let expected = match next_frame(&mut frames).await? {
        (Kind::Digest, payload) if payload.len() == DIGEST_LEN => payload,
        (kind, payload) => return Err(unexpected(kind, &payload, "the digest")),
    };
    if expected[..] != actual[..] {
        return Err(Error::DigestMismatch {
            expected: hex(&expected),
            actual: hex(&actual),
        });
    }
    let closing = match next_frame(&mut frames).await? {
        (Kind::Closing, payload) => String::from_utf8(payload.to_vec())
            .map_err(|_| Error::Protocol("the closing message is not UTF-8".into()))?,
        (kind, payload) => return Err(unexpected(kind, &payload, "the closing message")),
    };

    temp.persist(out).map_err(|err| Error::Output {
        path: out.to_owned(),
        source: err.error,
    })?;
    Ok(Borrowed {
        path: out.to_owned(),
        size,
        sha256: actual,
        closing,
    })
}

/// Parses the `D` frames of a book of `size` bytes straight out of the read
/// buffer and passes the bytes on in large chunks.
async fn receive_blocks<R: AsyncRead + Unpin>(
    frames: &mut FrameReader<R>,
    size: u64,
    to_writer: &mpsc::Sender<Bytes>,
    to_hasher: &mpsc::Sender<Bytes>,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<()> {
    let mut received = 0u64;
    let mut chunk = BytesMut::with_capacity(CHUNK);
    while received < size {
        match frames.header() {
            Some((kind, len)) if kind == Kind::Data.byte() => {
                if len == 0 || len > BLOCK_SIZE {
                    return Err(Error::Protocol(format!(
                        "a data frame of {len} bytes (1 to {BLOCK_SIZE} allowed)"
                    )));
                }
                if received + len as u64 > size {
                    return Err(Error::Protocol(format!(
                        "the server sent more than the {size} bytes it announced"
                    )));
                }
                if let Some(block) = frames.payload(len) {
                    chunk.extend_from_slice(block);
                    on_event(Event::Block(block));
                    frames.consume(len);
                    received += len as u64;
                    if chunk.len() + BLOCK_SIZE > CHUNK || received == size {
                        let full = chunk.split().freeze();
                        chunk.reserve(CHUNK);
                        // A worker that stopped has failed; its result says why.
                        if to_writer.send(full.clone()).await.is_err()
                            || to_hasher.send(full).await.is_err()
                        {
                            return Ok(());
                        }
                    }
                    continue;
                }
            }
            Some(_) => {
                let (kind, payload) = next_frame(frames).await?;
                return Err(unexpected(kind, &payload, "a data frame"));
            }
            None => {}
        }
        let interrupted = |source| Error::Interrupted {
            received,
            expected: size,
            source,
        };
        match tokio::time::timeout(CLIENT_TIMEOUT, frames.fill()).await {
            Err(_) => return Err(Error::Stalled(CLIENT_TIMEOUT)),
            Ok(Ok(0)) => return Err(interrupted(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(Ok(_)) => {}
            Ok(Err(source)) => return Err(interrupted(source)),
        }
    }
    Ok(())
}

/// Reads the next whole frame; an end of stream here is an interruption.
async fn next_frame<R: AsyncRead + Unpin>(frames: &mut FrameReader<R>) -> Result<(Kind, Bytes)> {
    let limit = |kind| match kind {
        Some(Kind::Book) => BOOK_LEN,
        Some(Kind::Data) => BLOCK_SIZE,
        Some(Kind::Digest) => DIGEST_LEN,
        _ => MAX_TEXT,
    };
    let frame = match tokio::time::timeout(CLIENT_TIMEOUT, frames.next_frame(limit)).await {
        Err(_) => return Err(Error::Stalled(CLIENT_TIMEOUT)),
        Ok(Ok(frame)) => frame,
        Ok(Err(FrameError::Io(err))) => return Err(Error::Io(err)),
        Ok(Err(err)) => return Err(Error::Protocol(err.to_string())),
    };
    let (kind, payload) = frame.ok_or_else(|| {
        Error::Protocol("the server closed the connection before the transfer was complete".into())
    })?;
    let kind = Kind::from_byte(kind)
        .ok_or_else(|| Error::Protocol(format!("unknown frame kind 0x{kind:02x}")))?;
    Ok((kind, payload))
}

/// Turns a frame that does not belong here into an error; an `E` frame is the
/// server's own explanation.
fn unexpected(kind: Kind, payload: &[u8], wanted: &str) -> Error {
    match kind {
        Kind::Error => Error::Refused(String::from_utf8_lossy(payload).into_owned()),
        _ => Error::Protocol(format!(
            "expected {wanted}, got a {kind:?} frame of {} bytes",
            payload.len()
        )),
    }
}

fn temp_file_beside(out: &Path) -> Result<NamedTempFile> {
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .map_or_else(|| "book".into(), |n| n.to_string_lossy().into_owned());
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|source| Error::Output {
            path: out.to_owned(),
            source,
        })
}

fn write_chunks(
    mut temp: NamedTempFile,
    mut chunks: mpsc::Receiver<Bytes>,
) -> std::io::Result<NamedTempFile> {
    while let Some(chunk) = chunks.blocking_recv() {
        temp.write_all(&chunk)?;
    }
    temp.flush()?;
    #[cfg(unix)]
    {
        // tempfile creates 0600; a received book is an ordinary file.
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(temp)
}

fn hash_chunks(mut chunks: mpsc::Receiver<Bytes>) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha256::new();
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
    }
    hasher.finalize().into()
}
