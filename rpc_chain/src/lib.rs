//! A ring of RPC servers passing a message on: the chapter's second Pyro4
//! example (a chain of books, read one after the other).
//!
//! Server `N` registers as `example.chainTopology.N` and knows only the id of
//! the next server. `process(message)` follows the chapter's rule: a server
//! that finds its own id in the message has seen it before, so the ring is
//! complete and it answers `["Kembali ke buku N"]`; otherwise it appends its
//! id, forwards the message to the next server, and puts its own line in
//! front of what comes back.
//!
//! What makes this work in a ring: the first server is called again while
//! its own call is still waiting, so every request runs in its own task
//! ([`rpc_naming::transport::spawn_request`]); a server that handled one call
//! at a time would deadlock. The caller's deadline travels with the message,
//! each hop forwarding it a little earlier ([`forwarded`]), so that a hop
//! that hangs is named by the hop before it; a hop that is missing or dead
//! comes back as an error naming it, long before that deadline.

pub mod bench;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc_naming::NameServer;
use rpc_naming::client::deadline_in;
use rpc_naming::transport::{serve_connections, server_channel, spawn_request};
use serde::{Deserialize, Serialize};
use tarpc::client::RpcError;
use tarpc::context::Context;
use tarpc::server::Channel;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// Most elements a message may have. Every hop appends one, so this is also
/// the hop limit: no message can circle for ever.
pub const MAX_ITEMS: usize = 256;
/// Most bytes the elements of a message may add up to.
pub const MAX_BYTES: usize = 64 * 1024;
/// The client's deadline for a whole trip round the ring.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The name server's name for server `id`.
pub fn server_name(id: u32) -> String {
    format!("example.chainTopology.{id}")
}

/// A server in the ring.
#[tarpc::service]
pub trait Chain {
    /// Passes `message` on round the ring; returns what each server said.
    async fn process(message: Vec<String>) -> Result<Vec<String>, ChainError>;
}

/// Why a trip round the ring failed, as it travels back to the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ChainError {
    #[error(
        "message refused by {server}: {items} elements / {bytes} bytes is over the limit \
         ({MAX_ITEMS} elements, {MAX_BYTES} bytes; every hop adds one element)"
    )]
    TooLarge {
        server: String,
        items: usize,
        bytes: usize,
    },
    #[error("{hop} cannot be reached from {from}: {reason}")]
    HopUnreachable {
        hop: String,
        from: String,
        reason: String,
    },
}

/// The chapter's lines.
pub fn starting_line(id: u32) -> String {
    format!("Buku {id} mulai dibaca ")
}
pub fn back_line(id: u32) -> String {
    format!("Kembali ke buku {id}; Buku akan di ulang dari halaman 1")
}
pub fn forward_line(id: u32, next: u32) -> String {
    format!("Buku {id} sudah selesai di baca lanjutkan ke buku {next}")
}
pub fn finished(id: u32) -> String {
    format!("Buku {id} sudah selesai di baca!")
}
pub fn returned(id: u32) -> String {
    format!("Kembali ke buku {id}")
}

/// Formats a list of strings as Python's `repr` does, to print
/// `Status = [...]` exactly as the chapter's client did.
///
/// ```
/// let status = vec![rpc_chain::finished(1), "it's".to_owned()];
/// assert_eq!(
///     rpc_chain::python_list(&status),
///     r#"['Buku 1 sudah selesai di baca!', "it's"]"#
/// );
/// ```
pub fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| plumbing::text::python_repr(s))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// How much earlier than its own deadline a hop's call to the next hop
/// ends. When a hop hangs, the hop that called it gives up first and names
/// it, and its error reaches every earlier hop and the client before their
/// own deadlines: the hop next to the failure is the one that reports it.
pub const HOP_MARGIN: Duration = Duration::from_millis(200);

/// The context a hop forwards: the caller's, with a deadline [`HOP_MARGIN`]
/// earlier (or half the time left, when less than twice the margin is).
///
/// ```
/// use std::time::{Duration, Instant};
/// let mut ctx = tarpc::context::current();
/// ctx.deadline = Instant::now() + Duration::from_secs(10);
/// let next = rpc_chain::forwarded(ctx);
/// assert!(next.deadline <= ctx.deadline - rpc_chain::HOP_MARGIN);
/// assert!(next.deadline > Instant::now() + Duration::from_secs(9));
/// ```
pub fn forwarded(mut ctx: Context) -> Context {
    let now = Instant::now();
    let left = ctx.deadline.saturating_duration_since(now);
    ctx.deadline = now + left.saturating_sub(HOP_MARGIN).max(left / 2);
    ctx
}

/// One server of the ring.
#[derive(Clone)]
pub struct ChainServer {
    id: u32,
    next: u32,
    announce: bool,
    ns: NameServer,
    /// The next hop, resolved on first use and again after it fails.
    next_client: Arc<Mutex<Option<ChainClient>>>,
}

impl ChainServer {
    /// Server `id`, forwarding to server `next`, found through `ns`. With
    /// `announce` it prints the chapter's lines.
    pub fn new(id: u32, next: u32, ns: NameServer, announce: bool) -> Self {
        ChainServer {
            id,
            next,
            announce,
            ns,
            next_client: Arc::new(Mutex::new(None)),
        }
    }

    fn unreachable(&self, reason: &(dyn std::error::Error + 'static)) -> ChainError {
        ChainError::HopUnreachable {
            hop: server_name(self.next),
            from: server_name(self.id),
            reason: plumbing::describe(reason),
        }
    }

    /// The client for the next hop, connecting if there is none.
    async fn next_hop(&self) -> Result<ChainClient, ChainError> {
        let mut slot = self.next_client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let transport = self
            .ns
            .connect_to(&server_name(self.next))
            .await
            .map_err(|err| self.unreachable(&err))?;
        let client = ChainClient::new(Default::default(), transport).spawn();
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Forwards to the next hop with the caller's context and a deadline
    /// [`HOP_MARGIN`] earlier ([`forwarded`]). A broken connection is dropped
    /// and the hop resolved again once, so a hop that restarted elsewhere is
    /// found.
    async fn forward(&self, ctx: Context, message: Vec<String>) -> Result<Vec<String>, ChainError> {
        let ctx = forwarded(ctx);
        let client = self.next_hop().await?;
        match client.process(ctx, message.clone()).await {
            Ok(reply) => reply,
            Err(RpcError::Shutdown | RpcError::Send(_) | RpcError::Channel(_)) => {
                self.next_client.lock().await.take();
                let client = self.next_hop().await?;
                client
                    .process(ctx, message)
                    .await
                    .map_err(|err| self.unreachable(&err))?
            }
            Err(err) => Err(self.unreachable(&err)),
        }
    }
}

impl Chain for ChainServer {
    async fn process(
        self,
        ctx: Context,
        mut message: Vec<String>,
    ) -> Result<Vec<String>, ChainError> {
        let bytes: usize = message.iter().map(String::len).sum();
        if message.len() >= MAX_ITEMS || bytes > MAX_BYTES {
            return Err(ChainError::TooLarge {
                server: server_name(self.id),
                items: message.len(),
                bytes,
            });
        }
        let me = self.id.to_string();
        if message.contains(&me) {
            if self.announce {
                println!("{}", back_line(self.id));
            }
            return Ok(vec![returned(self.id)]);
        }
        if self.announce {
            println!("{}", forward_line(self.id, self.next));
        }
        message.push(me);
        let mut result = self.forward(ctx, message).await?;
        result.insert(0, finished(self.id));
        Ok(result)
    }
}

/// Serves `server` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, server: ChainServer, shutdown: impl Future<Output = ()>) {
    serve_connections(listener, "chain server", shutdown, move |transport| {
        server_channel(transport)
            .execute(server.clone().serve())
            .for_each(spawn_request)
    })
    .await;
}

/// Everything that can go wrong for a caller of the ring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Naming(#[from] rpc_naming::Error),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("{name} did not answer")]
    Call { name: String, source: RpcError },
    #[error("the bench could not set up its servers")]
    BenchSetup(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Finds server `start` through `ns` and connects to it.
pub async fn connect(ns: &NameServer, start: u32) -> Result<ChainClient> {
    let transport = ns.connect_to(&server_name(start)).await?;
    Ok(ChainClient::new(Default::default(), transport).spawn())
}

/// Sends `message` round the ring from the server behind `client`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use rpc_chain::{ChainServer, connect, send, serve, server_name};
/// use rpc_naming::NameServer;
///
/// let ns = NameServer::connect(&rpc_naming::server::spawn_local(100).await?).await?;
/// let mut leases = Vec::new();
/// for id in 1..=2 {
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
///     leases.push(ns.claim(&server_name(id), listener.local_addr()?).await?);
///     let server = ChainServer::new(id, id % 2 + 1, ns.clone(), false);
///     tokio::spawn(serve(listener, server, std::future::pending()));
/// }
/// let client = connect(&ns, 1).await?;
/// let status = send(&client, 1, vec!["hello".into()]).await?;
/// assert_eq!(status.last().map(String::as_str), Some("Kembali ke buku 1"));
/// # Ok(())
/// # }
/// ```
pub async fn send(client: &ChainClient, start: u32, message: Vec<String>) -> Result<Vec<String>> {
    let reply = client
        .process(deadline_in(CALL_TIMEOUT), message)
        .await
        .map_err(|source| Error::Call {
            name: server_name(start),
            source,
        })?;
    Ok(reply?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_print_like_python() {
        let items = vec![finished(1), returned(1)];
        assert_eq!(
            python_list(&items),
            "['Buku 1 sudah selesai di baca!', 'Kembali ke buku 1']"
        );
        assert_eq!(python_list(&["it's".into()]), "[\"it's\"]");
        assert_eq!(python_list(&["a'b\"c\n".into()]), "['a\\'b\"c\\n']");
        assert_eq!(python_list(&[]), "[]");
    }
}
