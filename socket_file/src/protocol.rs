//! The wire format: kind-length-payload frames.
//!
//! Every frame is a 1-byte kind (an ASCII letter), a 4-byte big-endian payload
//! length, and the payload. The client sends one `Q` frame; the server answers
//! `B`, then `D` frames, then `S` and `M`, or an `E` frame at any point, and
//! closes. The full spec, with a sequence diagram, is `docs/socket-file.md`.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Payload bytes per data frame: the chapter's 1024-byte blocks.
pub const BLOCK_SIZE: usize = 1024;
/// Longest request the server reads; longer ones get an error frame.
pub const MAX_REQUEST: usize = 1024;
/// Longest error or closing message either side accepts.
pub const MAX_TEXT: usize = 64 * 1024;
/// Kind byte plus length.
pub const HEADER_LEN: usize = 5;
/// Size of the `B` frame's payload: the book's size as a u64.
pub const BOOK_LEN: usize = 8;
/// Size of the `S` frame's payload: a BLAKE3 digest (256 bits).
pub const DIGEST_LEN: usize = 32;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client to server: the request text, UTF-8, 1 to 1024 bytes.
    Request,
    /// The book's size in bytes, u64 big-endian.
    Book,
    /// 1 to 1024 bytes of the book, in order.
    Data,
    /// The BLAKE3 digest of the whole book, 32 bytes.
    Digest,
    /// The closing message, UTF-8.
    Closing,
    /// An error, UTF-8; the sender closes after it.
    Error,
}

impl Kind {
    pub const fn byte(self) -> u8 {
        match self {
            Kind::Request => b'Q',
            Kind::Book => b'B',
            Kind::Data => b'D',
            Kind::Digest => b'S',
            Kind::Closing => b'M',
            Kind::Error => b'E',
        }
    }

    pub const fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            b'Q' => Kind::Request,
            b'B' => Kind::Book,
            b'D' => Kind::Data,
            b'S' => Kind::Digest,
            b'M' => Kind::Closing,
            b'E' => Kind::Error,
            _ => return None,
        })
    }
}

/// A frame header as it goes on the wire.
pub fn header(kind: Kind, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("frame payloads are far below 4 GiB");
    let [a, b, c, d] = len.to_be_bytes();
    [kind.byte(), a, b, c, d]
}

/// Appends one whole frame to `out`.
///
/// ```
/// use socket_file::protocol::{Kind, put_frame};
/// let mut wire = bytes::BytesMut::new();
/// put_frame(&mut wire, Kind::Request, b"Pinjam");
/// assert_eq!(&wire[..], b"Q\0\0\0\x06Pinjam");
/// ```
pub fn put_frame(out: &mut BytesMut, kind: Kind, payload: &[u8]) {
    out.reserve(HEADER_LEN + payload.len());
    out.put_slice(&header(kind, payload.len()));
    out.put_slice(payload);
}

/// Appends `book` to `out` as data frames of [`BLOCK_SIZE`] bytes (the last
/// one shorter), calling `on_block` with each block.
///
/// ```
/// use socket_file::protocol::{HEADER_LEN, put_data_frames};
/// let mut wire = bytes::BytesMut::new();
/// put_data_frames(&mut wire, &[7u8; 1500], |_| {});
/// assert_eq!(wire.len(), 2 * HEADER_LEN + 1500);
/// assert_eq!(&wire[..HEADER_LEN], b"D\0\0\x04\0");
/// ```
pub fn put_data_frames(out: &mut BytesMut, book: &[u8], mut on_block: impl FnMut(&[u8])) {
    out.reserve(book.len() + book.len().div_ceil(BLOCK_SIZE) * HEADER_LEN);
    for block in book.chunks(BLOCK_SIZE) {
        on_block(block);
        put_frame(out, Kind::Data, block);
    }
}

/// The `B` frame: the book's size.
pub fn book_frame(size: u64) -> BytesMut {
    let mut out = BytesMut::new();
    put_frame(&mut out, Kind::Book, &size.to_be_bytes());
    out
}

/// What closes a loan: the `S` frame with the book's digest and the `M`
/// frame with the closing message.
pub fn closing_frames(digest: &[u8; DIGEST_LEN], message: &str) -> BytesMut {
    let mut out = BytesMut::new();
    put_frame(&mut out, Kind::Digest, digest);
    put_frame(&mut out, Kind::Closing, message.as_bytes());
    out
}

/// An `E` frame: an error the server tells a borrower before it closes.
pub fn error_frame(text: &str) -> BytesMut {
    let mut out = BytesMut::new();
    put_frame(&mut out, Kind::Error, text.as_bytes());
    out
}

/// Writes one whole frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    kind: Kind,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = BytesMut::new();
    put_frame(&mut frame, kind, payload);
    out.write_all(&frame).await
}

/// The front of the read buffer, seen as a data block.
#[derive(Debug, PartialEq, Eq)]
pub enum Front<'a> {
    /// A whole `D` frame: its block (consume it with
    /// [`FrameReader::consume`]).
    Block(&'a [u8]),
    /// Not enough bytes buffered yet to tell.
    Incomplete,
    /// Another kind of frame: read it with [`FrameReader::next_frame`].
    OtherKind,
}

/// Reads frames from a byte stream through one large buffer.
///
/// Frames are parsed straight out of the buffer, so a run of small data
/// frames costs one read call per buffer fill, not two per frame. A header
/// is checked against the caller's limit before its payload is waited for,
/// so a peer cannot make us buffer a huge frame. The same reader serves an
/// async stream (the server reading a request) and a blocking one (the
/// client receiving a book on a thread of its own, like a plain copy).
pub struct FrameReader<R> {
    input: R,
    /// Bytes `start..end` are read and not yet consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R> FrameReader<R> {
    pub fn new(input: R, capacity: usize) -> Self {
        FrameReader {
            input,
            buf: vec![0; capacity.max(2 * HEADER_LEN)],
            start: 0,
            end: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The kind byte and payload length of the frame at the front, once its
    /// header is buffered.
    fn header(&self) -> Option<(u8, usize)> {
        let head = self.buffered().get(..HEADER_LEN)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        Some((head[0], len as usize))
    }

    /// The front frame as a data block, parsed straight out of the buffer
    /// (no copy). A `D` frame of 0 or more than [`BLOCK_SIZE`] bytes is an
    /// error, found as soon as its header is buffered.
    pub fn front_block(&self) -> Result<Front<'_>, FrameError> {
        let Some((kind, len)) = self.header() else {
            return Ok(Front::Incomplete);
        };
        if kind != Kind::Data.byte() {
            return Ok(Front::OtherKind);
        }
        if len == 0 || len > BLOCK_SIZE {
            return Err(FrameError::BadBlock(len));
        }
        Ok(self
            .buffered()
            .get(HEADER_LEN..HEADER_LEN + len)
            .map_or(Front::Incomplete, Front::Block))
    }

    /// Drops the front frame, a block of `len` bytes seen with
    /// [`Self::front_block`].
    pub fn consume(&mut self, len: usize) {
        self.start += HEADER_LEN + len;
    }

    /// The front frame whole, if it is all buffered (`None`: read more);
    /// its length is checked against `max_len(kind)` first.
    fn take_frame(
        &mut self,
        max_len: &impl Fn(Option<Kind>) -> usize,
    ) -> Result<Option<(u8, Bytes)>, FrameError> {
        let Some((kind, len)) = self.header() else {
            return Ok(None);
        };
        let max = max_len(Kind::from_byte(kind));
        if len > max {
            return Err(FrameError::TooLong { kind, len, max });
        }
        let Some(payload) = self.buffered().get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let payload = Bytes::copy_from_slice(payload);
        self.start += HEADER_LEN + len;
        Ok(Some((kind, payload)))
    }

    /// Makes room to read into after `end`: the unconsumed bytes move to
    /// the front, and the buffer grows if a frame longer than it is still
    /// coming.
    fn make_room(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(2 * self.buf.len(), 0);
        }
    }

    /// The end of the stream, met while reading a frame: clean if no byte
    /// of one was buffered.
    fn ended(&self) -> Result<Option<(u8, Bytes)>, FrameError> {
        if self.start == self.end {
            Ok(None)
        } else {
            Err(FrameError::Truncated)
        }
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads more bytes; `Ok(0)` is the end of the stream.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        self.make_room();
        let read = self.input.read(&mut self.buf[self.end..]).await?;
        self.end += read;
        Ok(read)
    }

    /// Reads one whole frame whose payload may be at most `max_len(kind)`
    /// bytes. `Ok(None)` on an end of stream before any byte of it.
    pub async fn next_frame(
        &mut self,
        max_len: impl Fn(Option<Kind>) -> usize,
    ) -> Result<Option<(u8, Bytes)>, FrameError> {
        loop {
            if let Some(frame) = self.take_frame(&max_len)? {
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                return self.ended();
            }
        }
    }
}

impl<R: std::io::Read> FrameReader<R> {
    /// [`Self::fill`], blocking.
    pub fn fill_blocking(&mut self) -> std::io::Result<usize> {
        self.make_room();
        let read = self.input.read(&mut self.buf[self.end..])?;
        self.end += read;
        Ok(read)
    }

    /// [`Self::next_frame`], blocking.
    pub fn next_frame_blocking(
        &mut self,
        max_len: impl Fn(Option<Kind>) -> usize,
    ) -> Result<Option<(u8, Bytes)>, FrameError> {
        loop {
            if let Some(frame) = self.take_frame(&max_len)? {
                return Ok(Some(frame));
            }
            if self.fill_blocking()? == 0 {
                return self.ended();
            }
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("a frame of kind 0x{kind:02x} with {len} bytes is over the limit of {max}")]
    TooLong { kind: u8, len: usize, max: usize },
    #[error("a data frame of {0} bytes (1 to {BLOCK_SIZE} allowed)")]
    BadBlock(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads every frame `wire` holds the way the client does (blocking):
    /// data blocks from the buffer, any other frame whole, with `next_frame`
    /// as given (the blocking or the async one). Returns how many it read.
    fn read_all_with(
        wire: &[u8],
        mut next_frame: impl FnMut(&mut FrameReader<&[u8]>) -> Result<Option<(u8, Bytes)>, FrameError>,
    ) -> usize {
        let mut frames = FrameReader::new(wire, 64);
        let mut read = 0;
        loop {
            match frames.front_block() {
                Ok(Front::Block(block)) => {
                    let len = block.len();
                    frames.consume(len);
                    read += 1;
                    continue;
                }
                Err(_) => return read,
                Ok(Front::Incomplete | Front::OtherKind) => {}
            }
            match next_frame(&mut frames) {
                Ok(Some(_)) => read += 1,
                Ok(None) | Err(_) => return read,
            }
        }
    }

    fn read_all(wire: &[u8]) -> usize {
        read_all_with(wire, |frames| frames.next_frame_blocking(|_| MAX_TEXT))
    }

    /// [`read_all`] through the async reader, as the server reads.
    fn read_all_async(wire: &[u8]) -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        read_all_with(wire, |frames| {
            runtime.block_on(frames.next_frame(|_| MAX_TEXT))
        })
    }

    #[test]
    fn frames_written_are_frames_read() {
        let mut wire = BytesMut::new();
        put_frame(&mut wire, Kind::Book, &3000u64.to_be_bytes());
        put_data_frames(&mut wire, &[1u8; 3000], |_| {});
        wire.extend_from_slice(&closing_frames(&[0; DIGEST_LEN], "done"));
        assert_eq!(read_all(&wire), 1 + 3 + 2);
        assert_eq!(read_all_async(&wire), 1 + 3 + 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn no_bytes_make_the_frame_reader_panic(wire in proptest::collection::vec(any::<u8>(), 0..512)) {
            // Blocking and async, the reader reads the same frames.
            prop_assert_eq!(read_all(&wire), read_all_async(&wire));
        }

        #[test]
        fn headers_of_any_length_are_checked_before_their_payload(kind in any::<u8>(), len in any::<u32>()) {
            let mut wire = vec![kind];
            wire.extend(len.to_be_bytes());
            prop_assert_eq!(read_all(&wire), read_all_async(&wire));
        }
    }
}
