//! The accept loop every server shares: one error policy, a connection
//! limit, an idle timeout, and a graceful stop.
//!
//! A server built on [`serve`] gets, without writing it again:
//!
//! - **a connection limit**: at most `max_connections` are served at once.
//!   The slot is taken in the accept loop, in arrival order. One more is
//!   handed to the server's *refusal* (which can tell the client why, e.g.
//!   `socket_file`'s "server busy" frame); refusals have a limit of their
//!   own, and beyond it a connection is closed at once. A server whose
//!   refusal is a fixed message ([`AcceptConfig::busy_reply`]) tells every
//!   refused client, with no task per refusal: the message is written at
//!   once, the connection half-closed and kept by the loop for a moment
//!   ([`BUSY_LINGER`]) so the client reads it before the close. Nothing
//!   grows without bound, however many clients come.
//! - **an idle timeout**: every connection is wrapped in [`IdleTimeout`], so
//!   a peer that moves no byte, in either direction, for `idle_timeout` gets
//!   its reads and writes failed with [`std::io::ErrorKind::TimedOut`]. A
//!   client that connects and says nothing, or that stops reading what it
//!   is sent, cannot keep a slot for ever.
//! - **one error policy**: an accept error never stops a server (running
//!   out of descriptors is the typical one and goes away when connections
//!   close). It is logged, and the loop pauses before the next accept,
//!   10 ms at first, doubling to 1 s while errors repeat.
//! - **a graceful stop**: when `shutdown` completes, the loop stops
//!   accepting and either lets the open connections finish
//!   ([`OnShutdown::Finish`], for a request that is one transfer) or closes
//!   them ([`OnShutdown::Close`], for long-lived RPC connections that would
//!   otherwise keep it waiting), then logs one line and returns.
//!
//! ```no_run
//! use plumbing::accept::{self, AcceptConfig, Connection};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn example() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = AcceptConfig::new("hello server");
//! accept::serve(
//!     listener,
//!     &config,
//!     plumbing::shutdown::signal(),
//!     |mut connection: Connection| async move {
//!         let _ = connection.stream.write_all(b"hello\r\n").await;
//!     },
//!     accept::close,
//! )
//! .await;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

/// What happens to open connections when the server is told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnShutdown {
    /// Let each finish (a transfer in flight completes).
    Finish,
    /// Close them at once (long-lived connections, such as RPC clients').
    Close,
}

/// How a server accepts; [`AcceptConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct AcceptConfig {
    /// What the server is, for its log lines ("time server").
    pub name: &'static str,
    /// Connections served at once; one more is refused.
    pub max_connections: usize,
    /// How long a connection may move no byte before it is failed.
    pub idle_timeout: Duration,
    /// What a stop does to open connections.
    pub on_shutdown: OnShutdown,
    /// The bytes every connection over the limit is sent, if the server's
    /// refusal is a fixed message: then the refusal closure is not called.
    pub busy_reply: Option<Arc<[u8]>>,
}

impl AcceptConfig {
    /// Defaults: 256 connections, a 60 s idle timeout, connections finish on
    /// a stop.
    pub fn new(name: &'static str) -> Self {
        AcceptConfig {
            name,
            max_connections: 256,
            idle_timeout: Duration::from_secs(60),
            on_shutdown: OnShutdown::Finish,
            busy_reply: None,
        }
    }
}

/// A connection being served. Its place under the limit is held until the
/// future serving it ends, or until [`Slot::release`].
#[derive(Debug)]
pub struct Connection {
    pub stream: IdleTimeout<TcpStream>,
    pub peer: SocketAddr,
    pub slot: Slot,
}

/// A connection's place under the limit.
#[derive(Clone, Debug)]
pub struct Slot(Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>);

impl Slot {
    /// A free place under `limit`, if there is one.
    fn take(limit: &Arc<Semaphore>) -> Option<Slot> {
        let permit = Arc::clone(limit).try_acquire_owned().ok()?;
        Some(Slot::holding(permit))
    }

    fn holding(permit: OwnedSemaphorePermit) -> Slot {
        Slot(Arc::new(std::sync::Mutex::new(Some(permit))))
    }

    /// Frees the place now, before the connection ends: for a connection
    /// that is only saying goodbye (an error already sent) and should not
    /// keep a new client waiting meanwhile.
    pub fn release(&self) {
        self.0.lock().expect("slot poisoned").take();
    }
}

/// A connection over the limit, handed to the server's refusal.
#[derive(Debug)]
pub struct Refused {
    pub stream: IdleTimeout<TcpStream>,
    pub peer: SocketAddr,
    /// The places under the limit, for [`Refused::admit`].
    slots: Arc<Semaphore>,
    /// Its place among the refusals, given back once it is admitted.
    refusing: Slot,
}

impl Refused {
    /// Waits up to `within` for a place under the limit (the server may
    /// have just closed a connection to make room) and, if one frees, hands
    /// the connection back to be served like any other.
    pub async fn admit(self, within: Duration) -> Result<Connection, Refused> {
        let permit = tokio::time::timeout(within, Arc::clone(&self.slots).acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => {
                self.refusing.release();
                Ok(Connection {
                    stream: self.stream,
                    peer: self.peer,
                    slot: Slot::holding(permit),
                })
            }
            _ => Err(self),
        }
    }
}

/// The refusal of a server with nothing to say: close the connection.
pub async fn close(refused: Refused) {
    drop(refused);
}

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// Accepts on `listener` until `shutdown` completes, running
/// `handle(connection)` for each connection under the limit and
/// `refuse(connection)` for each one over it, each in its own task.
pub async fn serve<H, HFut, R, RFut>(
    listener: TcpListener,
    config: &AcceptConfig,
    shutdown: impl Future<Output = ()>,
    mut handle: H,
    mut refuse: R,
) where
    H: FnMut(Connection) -> HFut,
    HFut: Future<Output = ()> + Send + 'static,
    R: FnMut(Refused) -> RFut,
    RFut: Future<Output = ()> + Send + 'static,
{
    let limit = config.max_connections.max(1);
    let mut places = Places {
        config,
        limit,
        slots: Arc::new(Semaphore::new(limit)),
        refusal_slots: Arc::new(Semaphore::new(limit)),
        connections: JoinSet::new(),
        told_busy: Lingering::default(),
    };
    let mut pause = FIRST_PAUSE;
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    pause = FIRST_PAUSE;
                    pair
                }
                Err(err) => {
                    tracing::warn!(%err, "{}: accept failed; retrying in {pause:?}", config.name);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut shutdown => break,
                    }
                    pause = (pause * 2).min(LONGEST_PAUSE);
                    continue;
                }
            },
            // Reap finished connections so the set does not grow for ever.
            Some(_) = places.connections.join_next(), if !places.connections.is_empty() => continue,
            () = places.told_busy.next_due(), if !places.told_busy.is_empty() => {
                places.told_busy.close_due();
                continue;
            }
            () = &mut shutdown => break,
        };
        places.place(socket, peer, &mut handle, &mut refuse);
    }
    stop(&listener, config, places.connections).await;
}

/// The accept loop's state: the places under the limit and for refusals,
/// the connections being served or refused, those told busy.
struct Places<'a> {
    config: &'a AcceptConfig,
    limit: usize,
    slots: Arc<Semaphore>,
    refusal_slots: Arc<Semaphore>,
    connections: JoinSet<()>,
    told_busy: Lingering,
}

impl Places<'_> {
    /// Where a new connection goes: served under the limit; over it, told
    /// busy (a fixed reply), handed to the refusal, or closed at once.
    fn place<H, HFut, R, RFut>(
        &mut self,
        socket: TcpStream,
        peer: SocketAddr,
        handle: &mut H,
        refuse: &mut R,
    ) where
        H: FnMut(Connection) -> HFut,
        HFut: Future<Output = ()> + Send + 'static,
        R: FnMut(Refused) -> RFut,
        RFut: Future<Output = ()> + Send + 'static,
    {
        let (name, limit) = (self.config.name, self.limit);
        let _ = socket.set_nodelay(true);
        if self.slots.available_permits() == 0
            && let Some(reply) = &self.config.busy_reply
        {
            tracing::warn!(%peer, "{name}: {limit} connections open; telling one more it is busy");
            self.told_busy.tell(socket, reply);
            return;
        }
        let stream = IdleTimeout::new(socket, self.config.idle_timeout);
        if let Some(slot) = Slot::take(&self.slots) {
            tracing::debug!(%peer, "{name}: connection");
            let served = handle(Connection {
                stream,
                peer,
                slot: slot.clone(),
            });
            self.connections.spawn(held_while(served, slot));
        } else if let Some(refusing) = Slot::take(&self.refusal_slots) {
            tracing::warn!(%peer, "{name}: {limit} connections open; refusing one more");
            let refused = Refused {
                stream,
                peer,
                slots: Arc::clone(&self.slots),
                refusing: refusing.clone(),
            };
            self.connections
                .spawn(held_while(refuse(refused), refusing));
        } else {
            tracing::debug!(%peer, "{name}: over the limit, closed at once");
        }
    }
}

/// How long a connection told it is busy is kept open after the message,
/// so the client reads it before the close.
pub const BUSY_LINGER: Duration = Duration::from_secs(1);
/// Connections told busy kept open at once; past this the oldest is closed
/// early.
const MAX_LINGERING: usize = 1024;

/// Connections told they are busy, half-closed, each closed at its time:
/// held by the accept loop itself, not a task each.
#[derive(Default)]
struct Lingering(std::collections::VecDeque<(Instant, std::net::TcpStream)>);

impl Lingering {
    /// Sends `reply` without waiting (a new connection's send buffer takes
    /// a few bytes), ends the sending side, and keeps the connection open
    /// for [`BUSY_LINGER`]: closing at once, with the client's request
    /// unread, would reset the connection and could lose the reply.
    fn tell(&mut self, socket: TcpStream, reply: &[u8]) {
        use std::io::Write;
        let Ok(socket) = socket.into_std() else {
            return;
        };
        // Non-blocking, as the socket stays: a short or failed write only
        // loses the courtesy, never stalls the accept loop.
        let _ = (&socket).write(reply);
        let _ = socket.shutdown(std::net::Shutdown::Write);
        if self.0.len() >= MAX_LINGERING {
            self.0.pop_front();
        }
        self.0.push_back((Instant::now() + BUSY_LINGER, socket));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// When the oldest is due to close.
    async fn next_due(&self) {
        if let Some((due, _)) = self.0.front() {
            tokio::time::sleep_until(*due).await;
        }
    }

    fn close_due(&mut self) {
        let now = Instant::now();
        while self.0.front().is_some_and(|(due, _)| *due <= now) {
            self.0.pop_front();
        }
    }
}

/// Finishes or closes the open connections, as configured, and logs the
/// server's one line about stopping.
async fn stop(listener: &TcpListener, config: &AcceptConfig, mut connections: JoinSet<()>) {
    match config.on_shutdown {
        OnShutdown::Finish => while connections.join_next().await.is_some() {},
        OnShutdown::Close => connections.shutdown().await,
    }
    match listener.local_addr() {
        Ok(addr) => tracing::info!("{} on {addr} stopped", config.name),
        Err(_) => tracing::info!("{} stopped", config.name),
    }
}

/// Runs `work`, keeping `slot` taken until it ends (or is released).
async fn held_while(work: impl Future<Output = ()>, slot: Slot) {
    work.await;
    slot.release();
}

/// A stream that fails its reads and writes once no byte has moved, either
/// way, for a given time.
///
/// A read or a write that is waiting when the time runs out returns an
/// error of kind [`io::ErrorKind::TimedOut`]. Any byte read or written
/// restarts the clock. Built on tokio's clock, so tests can use paused time.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use plumbing::accept::IdleTimeout;
/// use tokio::io::AsyncReadExt;
/// use std::time::Duration;
///
/// let (quiet, _peer) = tokio::io::duplex(64);
/// let mut stream = IdleTimeout::new(quiet, Duration::from_secs(5));
/// let err = stream.read_u8().await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// # }
/// ```
#[derive(Debug)]
pub struct IdleTimeout<S> {
    inner: S,
    timeout: Duration,
    last_progress: Instant,
    // Two timers: a read and a write may wait at once, in different tasks,
    // and a timer wakes only the last task that polled it.
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        let now = Instant::now();
        IdleTimeout {
            inner,
            timeout,
            last_progress: now,
            read_timer: Box::pin(tokio::time::sleep_until(now + timeout)),
            write_timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// How long the stream may be idle.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Ready with the error once the stream has been idle too long. The timer
    /// is not moved on every byte (that would cost a timer update per
    /// read); when it fires early, it is set again from the last progress.
    fn poll_idle(
        timer: &mut Pin<Box<Sleep>>,
        last_progress: Instant,
        timeout: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<io::Error> {
        loop {
            ready!(timer.as_mut().poll(cx));
            let due = last_progress + timeout;
            if due <= Instant::now() {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no byte moved for {timeout:?}"),
                ));
            }
            timer.as_mut().reset(due);
        }
    }

    fn write_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        Self::poll_idle(&mut self.write_timer, self.last_progress, self.timeout, cx)
    }

    /// What a write came to: bytes written count as progress; a write that
    /// waits fails once the stream has been idle too long.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => self.write_idle(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                Self::poll_idle(&mut this.read_timer, this.last_progress, this.timeout, cx).map(Err)
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.write_idle(cx).map(Err),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.write_idle(cx).map(Err),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn bytes_keep_a_stream_alive_and_silence_ends_it() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = IdleTimeout::new(near, Duration::from_secs(10));
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                far.write_all(b"x").await.unwrap();
            }
            far
        });
        // Five bytes 6 s apart: 30 s in all, never 10 s idle.
        for _ in 0..5 {
            assert_eq!(stream.read_u8().await.unwrap(), b'x');
        }
        let _far = writer.await.unwrap();
        let started = Instant::now();
        let err = stream.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_fails_the_write() {
        let (near, _far) = tokio::io::duplex(16);
        let mut stream = IdleTimeout::new(near, Duration::from_secs(3));
        let err = stream.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn one_over_the_limit_is_refused_and_a_stop_ends_the_loop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = AcceptConfig::new("test server");
        config.max_connections = 1;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(async move {
            serve(
                listener,
                &config,
                async {
                    let _ = stopped.await;
                },
                move |mut c: Connection| {
                    let mut released = released.clone();
                    async move {
                        c.stream.write_all(b"served").await.unwrap();
                        let _ = released.wait_for(|done| *done).await;
                    }
                },
                |mut r: Refused| async move {
                    let _ = r.stream.write_all(b"busy").await;
                },
            )
            .await;
        });
        let read = |mut s: TcpStream| async move {
            let mut got = [0u8; 4];
            s.read_exact(&mut got).await.unwrap();
            got
        };
        let first = TcpStream::connect(addr).await.unwrap();
        assert_eq!(&read(first).await, b"serv");
        let second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(&read(second).await, b"busy");
        release.send(true).unwrap();
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    /// Starts a server whose connections each wait for `release`, opens one
    /// connection, and stops the server. Returns whether the server had
    /// returned before the release, and whether it returned after it.
    async fn stop_with_a_connection_open(on_shutdown: OnShutdown) -> (bool, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = AcceptConfig {
            on_shutdown,
            ..AcceptConfig::new("test server")
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let started_tx = std::sync::Mutex::new(Some(started_tx));
        let (release, released) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(async move {
            serve(
                listener,
                &config,
                async {
                    let _ = stopped.await;
                },
                move |_c: Connection| {
                    let mut released = released.clone();
                    if let Some(tx) = started_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    async move {
                        let _ = released.wait_for(|done| *done).await;
                    }
                },
                close,
            )
            .await;
        });
        let _client = TcpStream::connect(addr).await.unwrap();
        started.await.unwrap();
        stop.send(()).unwrap();
        // Let the loop see the stop; a server that did not wait is done by now.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let returned_early = server.is_finished();
        // (With Close, the connection and its receiver are gone already.)
        let _ = release.send(true);
        let returned = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .is_ok();
        (returned_early, returned)
    }

    #[tokio::test]
    async fn finish_waits_for_the_connections_in_flight() {
        assert_eq!(
            stop_with_a_connection_open(OnShutdown::Finish).await,
            (false, true)
        );
    }

    #[tokio::test]
    async fn close_does_not_wait_for_open_connections() {
        assert_eq!(
            stop_with_a_connection_open(OnShutdown::Close).await,
            (true, true)
        );
    }
}
