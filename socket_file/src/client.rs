//! The borrower: sends one request and saves the book it gets back.
//!
//! Connecting and sending the request are async; the book itself is
//! received on one blocking thread that reads the socket, checks every
//! frame, writes the blocks to a temporary file and hashes them, all in
//! line, the way a plain copy would: on a machine with few cores, handing
//! chunks to a writer and a hasher thread cost more in wake-ups and cache
//! traffic than the parallelism gave back (`socket_file bench` and the
//! README's figures). The temporary file sits beside the target (same file
//! system, so the final rename is atomic) and is deleted if anything fails,
//! or if the future is dropped: its path stays with the future, which also
//! shuts the socket down then, so the thread stops at once.

use std::fs::File;
use std::io::Write;
use std::net::TcpStream as StdStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tempfile::NamedTempFile;
use tokio::net::TcpStream;

use crate::protocol::{
    self, BLOCK_SIZE, BOOK_LEN, DIGEST_LEN, FrameError, FrameReader, Front, Kind, MAX_TEXT,
};
use crate::{Error, Result, hex};

/// How long to wait to connect, and for any single read to make progress.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Book bytes gathered from their frames before they are written and hashed.
const CHUNK: usize = 256 * 1024;
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

/// Borrows a book: sends `request` to `addr` and saves the reply to `out`,
/// calling `on_event` (on the receiving thread) as it arrives.
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
    on_event: impl FnMut(Event<'_>) + Send + 'static,
) -> Result<Borrowed> {
    let socket = send_request(addr, request).await?.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let _stop_on_drop = ShutdownOnDrop(socket.try_clone()?);
    // The path stays with this future, so dropping it deletes the file; the
    // receiving thread only holds the open file.
    let (file, temp) = temp_file_beside(out)?.into_parts();
    let temp_path = temp.to_path_buf();
    let reply = tokio::task::spawn_blocking(move || receive(socket, file, &temp_path, on_event))
        .await
        .expect("the receiving thread panicked")?;
    temp.persist(out).map_err(|err| Error::Output {
        path: out.to_owned(),
        source: err.error,
    })?;
    Ok(Borrowed {
        path: out.to_owned(),
        size: reply.size,
        digest: reply.digest,
        closing: reply.closing,
    })
}

/// Shuts a socket down when dropped, so that a thread blocked reading it
/// returns at once.
struct ShutdownOnDrop(StdStream);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// Connects to `addr` and sends the request frame.
async fn send_request(addr: &str, request: &str) -> Result<TcpStream> {
    let connect_failed = |source| Error::Connect {
        addr: addr.to_owned(),
        source,
    };
    let mut socket = tokio::time::timeout(CLIENT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| connect_failed(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect_failed)?;
    let _ = socket.set_nodelay(true);
    protocol::write_frame(&mut socket, Kind::Request, request.as_bytes()).await?;
    Ok(socket)
}

/// The server's whole reply, checked, with the book in the file.
struct Reply {
    size: u64,
    digest: [u8; DIGEST_LEN],
    closing: String,
}

/// Runs on a blocking thread: reads the reply (`B`, the `D` frames, `S`,
/// `M`) from `socket`, writing the book to `file` (at `path`).
fn receive(
    socket: StdStream,
    file: File,
    path: &Path,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Reply> {
    let mut frames = FrameReader::new(socket, READ_BUFFER);
    let size = match next_frame(&mut frames)? {
        (Kind::Book, payload) if payload.len() == BOOK_LEN => {
            u64::from_be_bytes(payload[..].try_into().expect("checked length"))
        }
        (kind, payload) => return Err(unexpected(kind, &payload, "the book's size")),
    };
    on_event(Event::Started { size });
    let digest = receive_book(&mut frames, size, file, path, &mut on_event)?;
    let expected = match next_frame(&mut frames)? {
        (Kind::Digest, payload) if payload.len() == DIGEST_LEN => payload,
        (kind, payload) => return Err(unexpected(kind, &payload, "the digest")),
    };
    if expected[..] != digest[..] {
        return Err(Error::DigestMismatch {
            expected: hex(&expected),
            actual: hex(&digest),
        });
    }
    let closing = match next_frame(&mut frames)? {
        (Kind::Closing, payload) => String::from_utf8(payload.to_vec())
            .map_err(|_| Error::Protocol("the closing message is not UTF-8".into()))?,
        (kind, payload) => return Err(unexpected(kind, &payload, "the closing message")),
    };
    Ok(Reply {
        size,
        digest,
        closing,
    })
}

/// Parses the `D` frames of a book of `size` bytes straight out of the read
/// buffer, gathers their blocks into large chunks, and writes (to `file`,
/// at `path`) and hashes each chunk; returns the digest of what arrived.
fn receive_book(
    frames: &mut FrameReader<StdStream>,
    size: u64,
    mut file: File,
    path: &Path,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<[u8; DIGEST_LEN]> {
    let output_failed = |source| Error::Output {
        path: path.to_owned(),
        source,
    };
    let mut hasher = blake3::Hasher::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut received = 0u64;
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
                    file.write_all(&chunk).map_err(output_failed)?;
                    hasher.update(&chunk);
                    chunk.clear();
                }
                continue;
            }
            Front::OtherKind => {
                let (kind, payload) = next_frame(frames)?;
                return Err(unexpected(kind, &payload, "a data frame"));
            }
            Front::Incomplete => {}
        }
        match frames.fill_blocking() {
            Ok(0) => {
                return Err(Error::Interrupted {
                    received,
                    expected: size,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            Ok(_) => {}
            Err(err) => return Err(lost(err, received, size)),
        }
    }
    file.flush().map_err(output_failed)?;
    #[cfg(unix)]
    {
        // tempfile creates 0600; a received book is an ordinary file.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(output_failed)?;
    }
    Ok(*hasher.finalize().as_bytes())
}

/// A failed read in the middle of the book: a stall if it timed out.
fn lost(err: std::io::Error, received: u64, expected: u64) -> Error {
    match err.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            Error::Stalled(CLIENT_TIMEOUT)
        }
        _ => Error::Interrupted {
            received,
            expected,
            source: err,
        },
    }
}

/// Reads the next whole frame; an end of stream here is an interruption.
fn next_frame(frames: &mut FrameReader<StdStream>) -> Result<(Kind, Bytes)> {
    let limit = |kind| match kind {
        Some(Kind::Book) => BOOK_LEN,
        Some(Kind::Data) => BLOCK_SIZE,
        Some(Kind::Digest) => DIGEST_LEN,
        _ => MAX_TEXT,
    };
    let frame = match frames.next_frame_blocking(limit) {
        Ok(frame) => frame,
        Err(FrameError::Io(err))
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(Error::Stalled(CLIENT_TIMEOUT));
        }
        Err(FrameError::Io(err)) => return Err(Error::Io(err)),
        Err(err) => return Err(Error::Protocol(err.to_string())),
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
