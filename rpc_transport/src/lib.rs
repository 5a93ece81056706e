//! The transport every RPC server of the workspace runs on: tarpc and
//! Pyro4 on one port, with the limits that keep a server serving.
//!
//! The name server (`rpc_naming`), the welcome server (`rpc_welcome`) and
//! the ring's servers (`rpc_chain`) differ only in their service; how a
//! connection is framed, encoded, accepted, bounded and handed to tarpc or
//! to Pyro4 is decided here, once, and each of them calls [`serve`].
//!
//! tarpc leaves three choices to the application, made here once:
//! - the codec: bincode, the fastest of tarpc's serde formats;
//! - the frame limit: tarpc's length-delimited codec defaults to 8 MiB and
//!   kills the connection above it; we set it on purpose, on both ends;
//! - `TCP_NODELAY`: RPC is small request/response messages, which Nagle's
//!   algorithm would delay.
//!
//! Servers accept through the workspace's one accept loop
//! ([`plumbing::accept`]): a connection limit, an idle timeout and a
//! graceful stop, which tarpc does not have built in. On top of it, what a
//! hostile or broken client could otherwise do to a server is bounded here:
//!
//! - requests in flight per connection: at most [`MAX_IN_FLIGHT`]; past
//!   that, the server stops reading the connection until replies have been
//!   written, so a client that pipelines requests and never reads the
//!   replies holds a bounded amount of memory ([`ServerChannel`]);
//! - a frame begun and not finished within [`frames::FRAME_TIMEOUT`] closes
//!   the connection ([`frames`]);
//! - a deadline from the wire is clamped to [`codec::MAX_DEADLINE`], so no
//!   value can make tarpc panic ([`codec`]);
//! - a server full of idle or trickling connections does not lock anyone
//!   out: a newcomer over the limit closes the least recently active
//!   connection, of either protocol, and takes its place ([`room`]); only
//!   when no place frees is its first request answered with a "busy"
//!   error before it is closed.
//!
//! Every server also speaks Pyro4 on the same port, so that the chapter's
//! Python clients can call it: a connection whose first four bytes are
//! `PYRO` (which as a tarpc length prefix would announce a 1.3 GB frame,
//! far over [`MAX_FRAME`]) is handed to a Pyro4 daemon
//! ([`pyro4_wire::daemon`]) serving the server's object; any other goes to
//! tarpc. Pyro4 connections are served one request at a time, as a Python
//! daemon serves them, which bounds them as [`MAX_IN_FLIGHT`] bounds tarpc's;
//! and they are not closed for being idle, as a Python daemon does not close
//! them: a Python proxy (a Python ring server's link to its next hop, say)
//! keeps its connection for life and does not reconnect, so closing it would
//! fail its next call. The room bounds them instead (a newcomer at the
//! limit takes the place of the least recently active connection), and a
//! message stalled half-way, either way, still closes one.
//!
//! Any server can also be TLS from the first byte, as Pyro4's SSL is
//! ([`tls`]): give [`serve`] a [`Listener`] with a [`tls::ServerTls`]. Both
//! protocols are then served after the handshake, and clients connect with
//! [`connect`] given a [`plumbing::tls::ClientTls`].

pub mod backpressure;
pub mod codec;
pub mod frames;
pub mod room;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use plumbing::accept::{self, AcceptConfig, Connection, IdleTimeout, OnShutdown, Refused};
use plumbing::tls::{ClientStream, ClientTls};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tarpc::serde_transport::{self, Transport};
use tarpc::server::BaseChannel;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tarpc::{ClientMessage, Response, ServerError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use backpressure::Backpressure;
use codec::{MAX_DEADLINE, ServerCodec};
use frames::{FRAME_TIMEOUT, FrameWatch};
use pyro4_wire::daemon::Watch;
use room::{Membership, Room};
use tls::{ServerIo, ServerTls, TlsServerStream};
use tokio_util::either::Either;

/// The annotation by which a server of this workspace (name server or not)
/// tells a Pyro4 client, in its CONNECTOK answer, that it also speaks tarpc
/// on the same port. An annotation, not a method: Python's view of each
/// object stays exactly what the chapter's Python object exposes.
pub const TARPC_MARK: [u8; 4] = *b"TRPC";

/// Whether the server behind `proxy` is one of this workspace's.
pub fn speaks_tarpc(proxy: &pyro4_wire::Proxy) -> bool {
    proxy.connect_annotation(TARPC_MARK).is_some()
}

/// Largest frame either end sends or accepts. A larger request is refused by
/// the receiving end, which drops that connection, and only that one.
pub const MAX_FRAME: usize = 1 << 20;

/// The client side of a connection to a service with requests `Req` and
/// responses `Resp`: hand it to the generated `XClient::new`.
pub type ClientTransport<Req, Resp> = Transport<
    ClientStream,
    Response<Resp>,
    ClientMessage<Req>,
    Bincode<Response<Resp>, ClientMessage<Req>>,
>;

/// What a server reads and writes: a connection from the accept loop
/// (plain or TLS), its frames timed.
pub type ServerStream = FrameWatch<ServerIo>;

/// The server side of a connection.
pub type ServerTransport<Req, Resp> =
    Transport<ServerStream, ClientMessage<Req>, Response<Resp>, ServerCodec<Req, Resp>>;

/// A server's channel: tarpc's, reading no more requests while
/// [`MAX_IN_FLIGHT`] are in flight.
pub type ServerChannel<Req, Resp> =
    Backpressure<BaseChannel<Req, Resp, ServerTransport<Req, Resp>>>;

/// Requests in flight on one connection (being handled, or answered and
/// not yet written). Past this the server reads no more from the connection
/// until some replies have gone out: back-pressure reaches the client
/// through TCP, and memory per connection stays bounded.
pub const MAX_IN_FLIGHT: usize = 64;

/// Length-delimited frames of at most [`MAX_FRAME`] bytes over `stream`,
/// encoded with `codec`.
fn frame<Io, Item, SinkItem, Codec>(
    stream: Io,
    codec: Codec,
) -> Transport<Io, Item, SinkItem, Codec>
where
    Io: AsyncRead + AsyncWrite,
    Item: DeserializeOwned,
    SinkItem: Serialize,
    Codec: tarpc::tokio_serde::Serializer<SinkItem> + tarpc::tokio_serde::Deserializer<Item>,
{
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_framed(stream);
    serde_transport::new(framed, codec)
}

fn server_transport<Req, Resp>(
    stream: ServerIo,
    on_request: impl Fn() + Send + Sync + 'static,
) -> ServerTransport<Req, Resp>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    let watched = FrameWatch::new(stream, FRAME_TIMEOUT).on_frame(on_request);
    frame(watched, ServerCodec::default())
}

/// The channel a server runs a connection on: tarpc's defaults, with at
/// most [`MAX_IN_FLIGHT`] requests in flight.
fn server_channel<Req, Resp>(transport: ServerTransport<Req, Resp>) -> ServerChannel<Req, Resp>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    Backpressure::new(BaseChannel::with_defaults(transport), MAX_IN_FLIGHT)
}

/// Opens a connection to a service at `addr`, over TLS with `tls` (the
/// server's certificate checked for `host`, what `addr` was named).
pub async fn connect<Req, Resp>(
    addr: SocketAddr,
    host: &str,
    tls: Option<&ClientTls>,
) -> std::io::Result<ClientTransport<Req, Resp>>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let stream = plumbing::tls::connect(addr, host, tls).await?;
    Ok(frame(stream, Bincode::default()))
}

/// Where a server accepts: a TCP listener, and the TLS every connection
/// must begin with, if any.
#[derive(Debug)]
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<ServerTls>,
}

impl Listener {
    pub fn new(tcp: TcpListener, tls: Option<ServerTls>) -> Self {
        Listener { tcp, tls }
    }
}

impl From<TcpListener> for Listener {
    /// A plain listener.
    fn from(tcp: TcpListener) -> Self {
        Listener { tcp, tls: None }
    }
}

/// How the RPC servers accept: [`MAX_CONNECTIONS`] at once, a 60 s idle
/// timeout (twice the longest deadline a request gets, so only a connection
/// with nothing in flight is dropped), and on a stop the open connections
/// are closed rather than waited for (clients keep theirs open).
pub fn accept_config(name: &'static str) -> AcceptConfig {
    AcceptConfig {
        max_connections: MAX_CONNECTIONS,
        idle_timeout: 2 * MAX_DEADLINE,
        on_shutdown: OnShutdown::Close,
        ..AcceptConfig::new(name)
    }
}

/// Connections a server serves at once.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a refused connection has to send its first request, which is
/// then answered with the refusal; and how long a newcomer waits for the
/// place of the connection closed to make room for it.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Answers the first request of a connection over the limit with an error
/// saying so, then closes it. A client sees `ConnectionRefused: <name> is
/// busy...` instead of a connection that closed for no reason.
async fn refuse<Req, Resp>(refused: Refused, tls: Option<&ServerTls>, name: &'static str)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let busy =
        format!("the {name} is busy: {MAX_CONNECTIONS} connections are open; try again shortly");
    let opened = tokio::time::timeout(REFUSAL_WAIT, open(refused.stream, tls)).await;
    let Ok(Ok((protocol, stream))) = opened else {
        return;
    };
    let stream = match (protocol, stream) {
        (Protocol::Pyro, stream) => {
            let _ = tokio::time::timeout(
                REFUSAL_WAIT,
                pyro4_wire::daemon::refuse(stream.pyro(), &busy),
            )
            .await;
            return;
        }
        (Protocol::Tarpc, stream) => stream,
    };
    let mut transport = server_transport::<Req, Resp>(stream.tarpc(), || {});
    let first = tokio::time::timeout(REFUSAL_WAIT, transport.next()).await;
    if let Ok(Some(Ok(ClientMessage::Request(request)))) = first {
        let busy = ServerError::new(std::io::ErrorKind::ConnectionRefused, busy);
        let _ = tokio::time::timeout(
            REFUSAL_WAIT,
            transport.send(Response {
                request_id: request.id,
                message: Err(busy),
            }),
        )
        .await;
    }
}

/// The object a server shows Pyro4 clients, and the id they ask for it by
/// (the name it registered).
pub struct PyroObject<O> {
    id: Arc<str>,
    object: Arc<Marked<O>>,
}

impl<O> Clone for PyroObject<O> {
    fn clone(&self) -> Self {
        PyroObject {
            id: self.id.clone(),
            object: self.object.clone(),
        }
    }
}

impl<O: pyro4_wire::daemon::Object> PyroObject<O> {
    pub fn new(id: &str, object: O) -> Self {
        PyroObject {
            id: id.into(),
            object: Arc::new(Marked(object)),
        }
    }

    async fn serve<S>(&self, stream: S, peer: SocketAddr, membership: Membership)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let served = pyro4_wire::daemon::serve(stream, &self.id, &*self.object, &membership);
        if let Err(err) = served.await {
            tracing::debug!(%peer, %err, "Pyro4 connection closed");
        }
    }
}

/// An object as every server here shows it to Pyro4: its own methods, and
/// [`TARPC_MARK`] in the handshake. A client of this workspace that reached
/// the server through a Pyro URI (say, from Python's name server) sees the
/// mark and speaks tarpc to the same port instead.
struct Marked<O>(O);

impl<O: pyro4_wire::daemon::Object> pyro4_wire::daemon::Object for Marked<O> {
    fn class_name(&self) -> &'static str {
        self.0.class_name()
    }

    fn methods(&self) -> &[&'static str] {
        self.0.methods()
    }

    async fn invoke(
        &self,
        call: pyro4_wire::Call,
    ) -> Result<pyro4_wire::serpent::Value, pyro4_wire::PyroException> {
        self.0.invoke(call).await
    }

    fn connect_annotations(&self) -> Vec<([u8; 4], Vec<u8>)> {
        vec![(TARPC_MARK, Vec::new())]
    }
}

/// Which protocol a connection speaks, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Tarpc,
    Pyro,
}

/// Looks at (without taking) the first bytes of `stream`: `PYRO` means
/// Pyro4; anything else, tarpc. Waits at most the connection's idle time.
async fn sniff(stream: &IdleTimeout<TcpStream>) -> std::io::Result<Protocol> {
    let magic = pyro4_wire::message::MAGIC;
    let look = async {
        let mut head = [0; 4];
        loop {
            let seen = stream.get_ref().peek(&mut head).await?;
            if seen == 0 || head[..seen] != magic[..seen] {
                return Ok(Protocol::Tarpc);
            }
            if seen == magic.len() {
                return Ok(Protocol::Pyro);
            }
            // A prefix of PYRO so far: peek returns at once until more
            // arrives, so wait a little before looking again.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(stream.timeout(), look)
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)?
}

/// A connection whose protocol is known, ready to serve.
enum Opened {
    Plain(IdleTimeout<TcpStream>),
    /// With the idle timeout its tarpc side gets.
    Tls(TlsServerStream, std::time::Duration),
}

impl Opened {
    /// For tarpc: failed once idle too long.
    fn tarpc(self) -> ServerIo {
        match self {
            Opened::Plain(stream) => Either::Left(stream),
            Opened::Tls(stream, idle) => Either::Right(IdleTimeout::new(stream, idle)),
        }
    }

    /// For Pyro4: no idle timeout (a Python proxy keeps its connection for
    /// life; the daemon bounds messages stalled either way).
    fn pyro(self) -> Either<TcpStream, TlsServerStream> {
        match self {
            Opened::Plain(stream) => Either::Left(stream.into_inner()),
            Opened::Tls(stream, _) => Either::Right(stream),
        }
    }
}

/// Makes the TLS handshake if the server has TLS, then finds which
/// protocol the client speaks. A client that does not finish the handshake
/// within [`tls::HANDSHAKE_TIMEOUT`], or says nothing within the idle
/// timeout, is an error.
async fn open(
    stream: IdleTimeout<TcpStream>,
    tls: Option<&ServerTls>,
) -> std::io::Result<(Protocol, Opened)> {
    let Some(tls) = tls else {
        let protocol = sniff(&stream).await?;
        return Ok((protocol, Opened::Plain(stream)));
    };
    let idle = stream.timeout();
    let mut tls = tls.accept(stream.into_inner()).await?;
    let is_pyro = tokio::time::timeout(idle, tls.starts_with(pyro4_wire::message::MAGIC))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    let protocol = if is_pyro {
        Protocol::Pyro
    } else {
        Protocol::Tarpc
    };
    Ok((protocol, Opened::Tls(tls, idle)))
}

/// A tarpc service as a server here runs it: each request of a connection
/// in its own task (a ring of servers needs that: a hop waits on the next
/// while its caller's other requests go on).
///
/// tarpc's generated `serve()` is an `async fn` in a trait, whose future
/// generic code cannot prove `Send`; so each service writes this one method
/// out, where its concrete future is known to be `Send`:
///
/// ```text
/// fn run(self, channel: ServerChannel<Self::Req, Self::Resp>) -> impl Future<Output = ()> + Send {
///     channel.execute(self.serve()).for_each(spawn_request)
/// }
/// ```
pub trait Service: Clone + Send + Sync + 'static {
    type Req: DeserializeOwned + Send + 'static;
    type Resp: Serialize + Send + 'static;

    /// Serves one connection's requests until it closes.
    fn run(self, channel: ServerChannel<Self::Req, Self::Resp>) -> impl Future<Output = ()> + Send;
}

/// Accepts connections on `listener` until `shutdown` completes, running
/// each in its own task (through [`plumbing::accept::serve`], with
/// [`accept_config`]): a tarpc connection on `service`, a Pyro4 one with a
/// daemon serving `pyro`. `name` says what the server is in its logs and
/// refusals ("name server", "welcome server", ...).
///
/// A newcomer over the limit closes the least recently active connection
/// ([`room`]) and takes its place; only if none frees within a second is it
/// told the server is busy.
pub async fn serve<S, O>(
    listener: impl Into<Listener>,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
    service: S,
    pyro: PyroObject<O>,
) where
    S: Service,
    O: pyro4_wire::daemon::Object,
{
    let Listener { tcp, tls } = listener.into();
    let server = Server {
        name,
        service,
        pyro,
        room: Room::default(),
        tls,
    };
    let refusing = server.clone();
    accept::serve(
        tcp,
        &accept_config(name),
        shutdown,
        |connection: Connection| server.clone().connection(connection),
        |refused: Refused| refusing.clone().over_limit(refused),
    )
    .await;
}

/// What [`serve`] runs each connection with.
struct Server<S, O> {
    name: &'static str,
    service: S,
    pyro: PyroObject<O>,
    room: Room,
    tls: Option<ServerTls>,
}

impl<S: Clone, O> Clone for Server<S, O> {
    fn clone(&self) -> Self {
        Server {
            name: self.name,
            service: self.service.clone(),
            pyro: self.pyro.clone(),
            room: self.room.clone(),
            tls: self.tls.clone(),
        }
    }
}

impl<S: Service, O: pyro4_wire::daemon::Object> Server<S, O> {
    /// Serves one connection in the protocol it speaks, as a member of the
    /// room (closed if a newcomer needs its place while it is the least
    /// recently active).
    async fn connection(self, connection: Connection) {
        // A member from the start: a connection that never says a word is
        // the first to make room.
        let membership = self.room.join();
        let peer = connection.peer;
        let opened = tokio::select! {
            opened = open(connection.stream, self.tls.as_ref()) => opened,
            () = membership.closing() => return,
        };
        match opened {
            Ok((Protocol::Tarpc, stream)) => {
                let transport = server_transport(stream.tarpc(), membership.activity());
                tokio::select! {
                    () = self.service.run(server_channel(transport)) => {}
                    () = membership.closing() => {
                        tracing::info!(%peer, "{}: closed the least recently active connection to make room", self.name);
                    }
                }
            }
            Ok((Protocol::Pyro, stream)) => self.pyro.serve(stream.pyro(), peer, membership).await,
            Err(err) if self.tls.is_some() => {
                tracing::info!(%peer, "{}: connection refused: {err}", self.name)
            }
            Err(err) => tracing::debug!(%peer, %err, "no request"),
        }
    }

    /// A connection over the limit: closes the least recently active one
    /// and serves this one in its place; told "busy" if no place frees.
    async fn over_limit(self, refused: Refused) {
        if !self.room.close_least_active() {
            return refuse::<S::Req, S::Resp>(refused, self.tls.as_ref(), self.name).await;
        }
        match refused.admit(REFUSAL_WAIT).await {
            Ok(connection) => self.connection(connection).await,
            Err(refused) => refuse::<S::Req, S::Resp>(refused, self.tls.as_ref(), self.name).await,
        }
    }
}

/// Spawns one request's future; for `execute(..).for_each(spawn_request)`
/// in [`Service::run`].
pub async fn spawn_request(request: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(request);
}
