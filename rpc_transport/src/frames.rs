//! A time limit on each frame a peer sends.
//!
//! tarpc frames are a 4-byte big-endian length and that many bytes. A peer
//! that sends a frame's first bytes and then dribbles the rest (or nothing)
//! would pin the buffer reserved for the whole frame (up to 1 MiB) for as
//! long as the connection lives, and the idle timeout alone does not stop a
//! peer that sends one byte a minute. [`FrameWatch`] follows the frame
//! boundaries in the bytes it reads and fails the read once a frame has been
//! begun and not finished for longer than its limit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a peer may take to send one whole frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

const HEADER: usize = 4;

/// A reader that fails with [`io::ErrorKind::TimedOut`] once a frame has
/// been begun and not finished within `limit`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use rpc_transport::frames::FrameWatch;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use std::time::Duration;
///
/// let (near, mut far) = tokio::io::duplex(64);
/// let mut stream = FrameWatch::new(near, Duration::from_secs(10));
/// far.write_all(&[0, 0, 0, 100, 1, 2]).await.unwrap(); // 2 of 100 bytes
/// let mut buf = [0u8; 64];
/// assert_eq!(stream.read(&mut buf).await.unwrap(), 6);
/// let err = stream.read(&mut buf).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// # }
/// ```
pub struct FrameWatch<S> {
    inner: S,
    limit: Duration,
    /// Bytes of the current frame's header seen so far, and the header.
    header_seen: usize,
    header: [u8; HEADER],
    /// Payload bytes still to come in the current frame.
    remaining: u64,
    /// When the current frame's first byte came, if one is in progress.
    begun: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    /// Told each time a whole frame has come in.
    on_frame: Option<Box<dyn Fn() + Send + Sync>>,
}

impl<S> std::fmt::Debug for FrameWatch<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWatch")
            .field("limit", &self.limit)
            .field("begun", &self.begun)
            .finish_non_exhaustive()
    }
}

impl<S> FrameWatch<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        FrameWatch {
            inner,
            limit,
            header_seen: 0,
            header: [0; HEADER],
            remaining: 0,
            begun: None,
            timer: Box::pin(tokio::time::sleep(limit)),
            on_frame: None,
        }
    }

    /// Calls `done` each time a whole frame has come in (a request, for a
    /// server): how a connection's activity is told from bytes trickling.
    pub fn on_frame(mut self, done: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_frame = Some(Box::new(done));
        self
    }

    fn finished(&mut self) {
        self.begun = None;
        if let Some(done) = &self.on_frame {
            done();
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Follows the frame boundaries through `bytes`, just read.
    fn track(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take =
                    usize::try_from(self.remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
                self.remaining -= take as u64;
                bytes = &bytes[take..];
                if self.remaining == 0 {
                    self.finished();
                }
                continue;
            }
            if self.header_seen == 0 {
                self.begin();
            }
            self.header[self.header_seen] = bytes[0];
            self.header_seen += 1;
            bytes = &bytes[1..];
            if self.header_seen == HEADER {
                self.header_seen = 0;
                self.remaining = u64::from(u32::from_be_bytes(self.header));
                if self.remaining == 0 {
                    self.finished();
                }
            }
        }
    }

    fn begin(&mut self) {
        let now = Instant::now();
        self.begun = Some(now);
        self.timer.as_mut().reset(now + self.limit);
    }

    fn overdue(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("a frame was begun and not finished within {:?}", self.limit),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.track(&buf.filled()[before..]);
                match this.begun {
                    Some(begun) if begun.elapsed() > this.limit => Poll::Ready(Err(this.overdue())),
                    _ => Poll::Ready(Ok(())),
                }
            }
            Poll::Pending if this.begun.is_some() && this.timer.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(this.overdue()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn whole_frames_in_any_pieces_pass_and_a_dribbled_one_fails() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stream = FrameWatch::new(near, Duration::from_secs(10));
        let mut buf = [0u8; 1024];
        // Two frames split at every awkward place, 9 s apart: each frame is
        // whole within its limit, so nothing fails.
        for piece in [&[0u8, 0][..], &[0, 2, 7], &[8, 0, 0, 0], &[0]] {
            far.write_all(piece).await.unwrap();
            let _ = stream.read(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_secs(9)).await;
        }
        // A frame of 5 bytes whose bytes come one every 4 s: over 10 s.
        far.write_all(&[0, 0, 0, 5]).await.unwrap();
        let mut failed = None;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            far.write_all(&[1]).await.unwrap();
            if let Err(err) = stream.read(&mut buf).await {
                failed = Some(err);
                break;
            }
        }
        assert_eq!(
            failed.expect("the dribbled frame passed").kind(),
            io::ErrorKind::TimedOut
        );
    }
}
