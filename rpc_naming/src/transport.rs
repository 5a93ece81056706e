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
//! It also gives servers an accept loop that stops on a shutdown signal,
//! which tarpc does not have built in.

use std::future::Future;
use std::net::SocketAddr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tarpc::serde_transport::{self, Transport};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tarpc::{ClientMessage, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

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
    TcpStream,
    ClientMessage<Req>,
    Response<Resp>,
    Bincode<ClientMessage<Req>, Response<Resp>>,
>;

fn frame<Item, SinkItem>(
    stream: TcpStream,
) -> Transport<TcpStream, Item, SinkItem, Bincode<Item, SinkItem>>
where
    Item: DeserializeOwned,
    SinkItem: Serialize,
{
    let _ = stream.set_nodelay(true);
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
    Ok(frame(TcpStream::connect(addr).await?))
}

/// Accepts connections on `listener` until `shutdown` completes, running
/// `on_connection(transport)` for each in its own task; then stops accepting
/// and closes the open connections.
///
/// `on_connection` is where the concrete service runs the channel, typically
/// `BaseChannel::with_defaults(t).execute(server.serve()).for_each(spawn)`
/// (tarpc does not spawn requests for you, and a ring of servers needs each
/// request in its own task).
pub async fn serve_connections<Req, Resp, Conn>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    mut on_connection: impl FnMut(ServerTransport<Req, Resp>) -> Conn,
) where
    Req: DeserializeOwned,
    Resp: Serialize,
    Conn: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "connection");
                    connections.spawn(on_connection(frame(stream)));
                }
                Err(err) => {
                    // Out of descriptors or a reset peer: keep serving.
                    tracing::warn!(%err, "accept failed; continuing");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    connections.shutdown().await;
}

/// Spawns one request's future; for `execute(..).for_each(spawn_request)`.
pub async fn spawn_request(request: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(request);
}
