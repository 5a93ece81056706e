//! tarpc plumbing shared by every RPC example: how a connection is framed,
//! encoded and accepted.
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
//! graceful stop, which tarpc does not have built in.

use std::future::Future;
use std::net::SocketAddr;

use plumbing::accept::{self, AcceptConfig, Connection, IdleTimeout, OnShutdown};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tarpc::serde_transport::{self, Transport};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// Largest frame either end sends or accepts. A larger request is refused by
/// the receiving end, which drops that connection, and only that one.
pub const MAX_FRAME: usize = 1 << 20;

/// The client side of a connection to a service with requests `Req` and
/// responses `Resp`: hand it to the generated `XClient::new`.
pub type ClientTransport<Req, Resp> = Transport<
    TcpStream,
    Response<Resp>,
    ClientMessage<Req>,
    Bincode<Response<Resp>, ClientMessage<Req>>,
>;

/// The server side of a connection: hand it to `BaseChannel::with_defaults`.
pub type ServerTransport<Req, Resp> = Transport<
    IdleTimeout<TcpStream>,
    ClientMessage<Req>,
    Response<Resp>,
    Bincode<ClientMessage<Req>, Response<Resp>>,
>;

fn frame<Io, Item, SinkItem>(stream: Io) -> Transport<Io, Item, SinkItem, Bincode<Item, SinkItem>>
where
    Io: AsyncRead + AsyncWrite,
    Item: DeserializeOwned,
    SinkItem: Serialize,
{
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_framed(stream);
    serde_transport::new(framed, Bincode::default())
}

/// Opens a connection to a service at `addr`.
pub async fn connect<Req, Resp>(addr: SocketAddr) -> std::io::Result<ClientTransport<Req, Resp>>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(frame(stream))
}

/// How the RPC servers accept: 256 connections at once, a 60 s idle
/// timeout (longer than any call's deadline, so only a connection with
/// nothing in flight is dropped), and on a stop the open connections are
/// closed rather than waited for (clients keep theirs open).
pub fn accept_config(name: &'static str) -> AcceptConfig {
    AcceptConfig {
        on_shutdown: OnShutdown::Close,
        ..AcceptConfig::new(name)
    }
}

/// Accepts connections on `listener` until `shutdown` completes, running
/// `on_connection(transport)` for each in its own task (through
/// [`plumbing::accept::serve`], with [`accept_config`]).
///
/// `on_connection` is where the concrete service runs the channel, typically
/// `BaseChannel::with_defaults(t).execute(server.serve()).for_each(spawn)`
/// (tarpc does not spawn requests for you, and a ring of servers needs each
/// request in its own task).
pub async fn serve_connections<Req, Resp, Conn>(
    listener: TcpListener,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
    mut on_connection: impl FnMut(ServerTransport<Req, Resp>) -> Conn,
) where
    Req: DeserializeOwned,
    Resp: Serialize,
    Conn: Future<Output = ()> + Send + 'static,
{
    accept::serve(
        listener,
        &accept_config(name),
        shutdown,
        |connection: Connection| on_connection(frame(connection.stream)),
        accept::close,
    )
    .await;
}

/// Spawns one request's future; for `execute(..).for_each(spawn_request)`.
pub async fn spawn_request(request: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(request);
}
