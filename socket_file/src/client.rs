//! The borrower: sends one request and saves the book it gets back.
//!
//! The socket is read on the async side, which checks every frame and packs
//! the blocks into large chunks; a blocking thread writes the chunks to a
//! temporary file and another hashes them, so receiving, writing and hashing
//! overlap. The temporary file sits beside the target (same file system, so
//! the final rename is atomic) and is deleted if anything fails.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tempfile::{NamedTempFile, TempPath};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use crate::protocol::{
    self, BLOCK_SIZE, BOOK_LEN, DIGEST_LEN, FrameError, FrameReader, Front, Kind, MAX_TEXT,
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
    pub digest: [u8; DIGEST_LEN],
    /// The message the server sent after the book.
    pub closing: String,
}

/// Borrows a book: sends `request` to `addr` and saves the reply to `out`.
///
/// `out` is only created or replaced once the whole book has arrived and its
/// size and BLAKE3 digest match what the server announced. Until then the book is
/// written to a hidden temporary file beside `out`, which is deleted if
/// anything fails *or if this future is dropped* (a caller that stops on
/// Ctrl-C leaves nothing behind).
pub async fn borrow_book(
    addr: &str,
    request: &str,
    out: &Path,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Borrowed> {
    let mut frames = send_request(addr, request).await?;
    let size = match next_frame(&mut frames).await? {
        (Kind::Book, payload) if payload.len() == BOOK_LEN => {
            u64::from_be_bytes(payload[..].try_into().expect("checked length"))
        }
        (kind, payload) => return Err(unexpected(kind, &payload, "the book's size")),
    };
    on_event(Event::Started { size });
    let (temp, digest) = receive_book(&mut frames, size, out, &mut on_event).await?;

    let expected = match next_frame(&mut frames).await? {
        (Kind::Digest, payload) if payload.len() == DIGEST_LEN => payload,
        (kind, payload) => return Err(unexpected(kind, &payload, "the digest")),
    };
    if expected[..] != digest[..] {
        return Err(Error::DigestMismatch {
            expected: hex(&expected),
            actual: hex(&digest),
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
        digest,
        closing,
    })
}

/// Connects to `addr`, sends the request frame, and returns a reader for
/// the reply.
async fn send_request(addr: &str, request: &str) -> Result<FrameReader<OwnedReadHalf>> {
    let connect_failed = |source| Error::Connect {
        addr: addr.to_owned(),
        source,
    };
    let socket = tokio::time::timeout(CLIENT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| connect_failed(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect_failed)?;
    let _ = socket.set_nodelay(true);
    let (reader, mut writer) = socket.into_split();
    protocol::write_frame(&mut writer, Kind::Request, request.as_bytes()).await?;
    Ok(FrameReader::new(reader, READ_BUFFER))
}

/// Receives the `size` bytes of the book into a temporary file beside
/// `out`, hashing them on the way; returns the file (deleted when dropped)
/// and the digest of what arrived.
async fn receive_book<R: AsyncRead + Unpin>(
    frames: &mut FrameReader<R>,
    size: u64,
    out: &Path,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<(TempPath, [u8; DIGEST_LEN])> {
    // The path stays with this future, so dropping it deletes the file; the
    // writer thread only holds the open file.
    let (file, temp) = temp_file_beside(out)?.into_parts();
    let (to_writer, writer_rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let (to_hasher, hasher_rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let writing = tokio::task::spawn_blocking(move || write_chunks(file, writer_rx));
    let hashing = tokio::task::spawn_blocking(move || hash_chunks(hasher_rx));

    let received = receive_blocks(frames, size, &to_writer, &to_hasher, on_event).await;
    drop((to_writer, to_hasher));
    let written = writing.await.expect("writer thread panicked");
    let digest = hashing.await.expect("hasher thread panicked");
    received?;
    written.map_err(|source| Error::Output {
        path: temp.to_path_buf(),
        source,
    })?;
    Ok((temp, digest))
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
        match frames
            .front_block()
            .map_err(|err| Error::Protocol(err.to_string()))?
        {
            Front::Block(block) => {
                let len = block.len();
                if received + len as u64 > size {
                    return Err(Error::Protocol(format!(
                        "the server sent more than the {size} bytes it announced"
                    )));
                }
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
            Front::OtherKind => {
                let (kind, payload) = next_frame(frames).await?;
                return Err(unexpected(kind, &payload, "a data frame"));
            }
            Front::Incomplete => {}
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
        // The server's words, with anything that could take over a terminal
        // (escape sequences, bells, carriage returns) written as escapes.
        Kind::Error => Error::Refused(plumbing::text::escape_line(&String::from_utf8_lossy(
            payload,
        ))),
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

fn write_chunks(mut file: File, mut chunks: mpsc::Receiver<Bytes>) -> std::io::Result<()> {
    while let Some(chunk) = chunks.blocking_recv() {
        file.write_all(&chunk)?;
    }
    file.flush()?;
    #[cfg(unix)]
    {
        // tempfile creates 0600; a received book is an ordinary file.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

fn hash_chunks(mut chunks: mpsc::Receiver<Bytes>) -> [u8; DIGEST_LEN] {
    let mut hasher = blake3::Hasher::new();
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
    }
    *hasher.finalize().as_bytes()
}
