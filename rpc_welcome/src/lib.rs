//! Remote procedure call, found by name: the chapter's first Pyro4 example.
//!
//! A server object with one method, `welcome_message(name)`, registers under
//! the name `server` with the name server ([`rpc_naming`]); the client looks
//! the name up, connects, and calls the method as if it were local. Here the
//! service is a tarpc trait ([`Welcome`]); the name server hands out the
//! address, and the registration is a lease, so a crashed server's name
//! disappears within seconds.
//!
//! The whole example in one program:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rpc_naming::NameServer;
//!
//! let ns = NameServer::connect(&rpc_naming::server::spawn_local(100).await?).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let _lease = ns.claim("server", listener.local_addr()?).await?;
//! tokio::spawn(rpc_welcome::serve(listener, std::future::pending()));
//!
//! let client = rpc_welcome::connect(&ns, "server").await?;
//! let reply = rpc_welcome::buy(&client, "server", "Sistem Terdistribusi").await?;
//! assert_eq!(reply, "Buku dengan judul Sistem Terdistribusi berhasil dibeli!");
//! # Ok(())
//! # }
//! ```

pub mod bench;

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use rpc_naming::NameServer;
use rpc_naming::client::deadline_in;
use rpc_naming::transport::{serve_connections, server_channel, spawn_request};
use tarpc::client::RpcError;
use tarpc::context::Context;
use tarpc::server::Channel;
use tokio::net::TcpListener;

/// The name the chapter's server registers under.
pub const DEFAULT_NAME: &str = "server";
/// The client's prompt, as in `pyro_client.py`.
pub const PROMPT: &str = "Mau beli buku dengan judul apa? ";
/// Deadline of one call: past it the client reports the server as hung.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The remote object's interface.
#[tarpc::service]
pub trait Welcome {
    /// The message for a buyer of the book titled `name`.
    async fn welcome_message(name: String) -> String;
}

/// The chapter's reply to buying the book `title`.
pub fn welcome_message(title: &str) -> String {
    format!("Buku dengan judul {title} berhasil dibeli!")
}

/// The line the server prints once it is registered and ready.
pub fn ready_line(name: &str, addr: std::net::SocketAddr) -> String {
    format!("Ready. Object uri = {name}@{addr}")
}

/// The server object: stateless, so cloning it per connection is free.
#[derive(Clone, Copy, Debug)]
pub struct WelcomeServer;

impl Welcome for WelcomeServer {
    async fn welcome_message(self, _: Context, name: String) -> String {
        welcome_message(&name)
    }
}

/// Everything that can go wrong for a user of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Naming(#[from] rpc_naming::Error),
    #[error("{name} did not answer (is the server stuck or gone?)")]
    Call { name: String, source: RpcError },
    #[error("the bench could not set up its servers")]
    BenchSetup(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serves [`WelcomeServer`] on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    serve_connections(listener, "welcome server", shutdown, |transport| {
        server_channel(transport)
            .execute(WelcomeServer.serve())
            .for_each(spawn_request)
    })
    .await;
}

/// Finds the server registered as `name` and connects to it.
pub async fn connect(ns: &NameServer, name: &str) -> Result<WelcomeClient> {
    let transport = ns.connect_to(name).await?;
    Ok(WelcomeClient::new(Default::default(), transport).spawn())
}

/// Buys `title` from the server behind `client`, within [`CALL_TIMEOUT`].
pub async fn buy(client: &WelcomeClient, name: &str, title: &str) -> Result<String> {
    client
        .welcome_message(deadline_in(CALL_TIMEOUT), title.to_owned())
        .await
        .map_err(|source| Error::Call {
            name: name.to_owned(),
            source,
        })
}
