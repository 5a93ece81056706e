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
//! ([`rpc_transport::spawn_request`]); a server that handled one call
//! at a time would deadlock. The caller's deadline travels with the message,
//! each hop forwarding it a little earlier ([`forwarded`]), so that a hop
//! that hangs is named by the hop before it; a hop that is missing or dead
//! comes back as an error naming it, long before that deadline.
//!
//! Rings mix Python and Rust: each server also answers Pyro4 on its port
//! ([`PyroChain`], method `process`, the object id being its name), so a
//! Python hop (`server_chain_2.py`) can call it, and a hop the name server
//! knows by a Pyro URI is called over Pyro4. Pyro4 carries no deadline: a
//! call that comes in over Pyro4 gets [`CALL_TIMEOUT`] from its arrival.

pub mod commands;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pyro4_wire::serpent::Value;
use pyro4_wire::{Proxy, ProxyError, PyroException};
use rpc_naming::client::deadline_in;
use rpc_naming::{Endpoint, NameServerClient};
use rpc_transport::{PyroObject, ServerChannel, Service, spawn_request};
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
    /// A Pyro4 hop raised an exception (a Python `process` that failed).
    #[error("{hop}, called from {from}, raised {exception}")]
    HopRaised {
        hop: String,
        from: String,
        exception: PyroException,
    },
    #[error("{hop} answered {from} with {reply}, not a list of strings")]
    BadReply {
        hop: String,
        from: String,
        reply: String,
    },
}

impl ChainError {
    /// The exception a Pyro4 caller gets: a hop's own exception passes
    /// through unchanged, as it does through a Python hop.
    pub fn to_exception(&self) -> PyroException {
        match self {
            ChainError::TooLarge { .. } => {
                PyroException::new("builtins.ValueError", self.to_string())
            }
            ChainError::HopUnreachable { .. } | ChainError::BadReply { .. } => {
                PyroException::new("Pyro4.errors.CommunicationError", self.to_string())
            }
            ChainError::HopRaised { exception, .. } => exception.clone(),
        }
    }
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
    let quoted: Vec<String> = items.iter().map(|s| python_text::repr(s)).collect();
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

/// A connection to the next hop, in the protocol its registration calls for.
#[derive(Clone)]
enum Hop {
    Tarpc(ChainClient),
    /// One call at a time, as a Python proxy; whoever waits for it waits
    /// within their deadline.
    Pyro(Arc<Mutex<Proxy>>),
}

/// How a call to the next hop failed.
enum HopFailure {
    /// The connection is gone: resolve the hop again and retry once.
    Broken(String),
    /// The call failed for good.
    Failed(ChainError),
}

/// One server of the ring.
#[derive(Clone)]
pub struct ChainServer {
    id: u32,
    next: u32,
    announce: bool,
    ns: NameServerClient,
    /// The next hop, resolved on first use and again after it fails.
    next_client: Arc<Mutex<Option<Hop>>>,
}

impl ChainServer {
    /// Server `id`, forwarding to server `next`, found through `ns`. With
    /// `announce` it prints the chapter's lines.
    pub fn new(id: u32, next: u32, ns: NameServerClient, announce: bool) -> Self {
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

    /// The next hop, connecting if there is none.
    async fn next_hop(&self) -> Result<Hop, ChainError> {
        let mut slot = self.next_client.lock().await;
        if let Some(hop) = slot.as_ref() {
            return Ok(hop.clone());
        }
        let hop = match self.ns.connect_to(&server_name(self.next)).await {
            Ok(Endpoint::Tarpc(transport)) => {
                Hop::Tarpc(ChainClient::new(Default::default(), transport).spawn())
            }
            Ok(Endpoint::Pyro(proxy)) => Hop::Pyro(Arc::new(Mutex::new(proxy))),
            Err(err) => return Err(self.unreachable(&err)),
        };
        *slot = Some(hop.clone());
        Ok(hop)
    }

    /// Forwards to the next hop with the caller's context and a deadline
    /// [`HOP_MARGIN`] earlier ([`forwarded`]). A broken connection is dropped
    /// and the hop resolved again once, so a hop that restarted elsewhere is
    /// found.
    async fn forward(&self, ctx: Context, message: Vec<String>) -> Result<Vec<String>, ChainError> {
        let ctx = forwarded(ctx);
        match self.call_hop(ctx, message.clone()).await {
            Ok(reply) => Ok(reply),
            Err(HopFailure::Broken(_)) => {
                self.next_client.lock().await.take();
                match self.call_hop(ctx, message).await {
                    Ok(reply) => Ok(reply),
                    Err(HopFailure::Broken(reason)) => Err(ChainError::HopUnreachable {
                        hop: server_name(self.next),
                        from: server_name(self.id),
                        reason,
                    }),
                    Err(HopFailure::Failed(err)) => Err(err),
                }
            }
            Err(HopFailure::Failed(err)) => Err(err),
        }
    }

    /// One call to the next hop, whichever protocol it speaks.
    async fn call_hop(
        &self,
        ctx: Context,
        message: Vec<String>,
    ) -> Result<Vec<String>, HopFailure> {
        match self.next_hop().await.map_err(HopFailure::Failed)? {
            Hop::Tarpc(client) => match client.process(ctx, message).await {
                Ok(reply) => reply.map_err(HopFailure::Failed),
                Err(err @ (RpcError::Shutdown | RpcError::Send(_) | RpcError::Channel(_))) => {
                    Err(HopFailure::Broken(plumbing::describe(&err)))
                }
                Err(err) => Err(HopFailure::Failed(self.unreachable(&err))),
            },
            Hop::Pyro(proxy) => {
                let deadline = tokio::time::Instant::from_std(ctx.deadline);
                match tokio::time::timeout_at(deadline, pyro_process(&proxy, message)).await {
                    Ok(Ok(reply)) => strings(reply).map_err(|reply| {
                        HopFailure::Failed(ChainError::BadReply {
                            hop: server_name(self.next),
                            from: server_name(self.id),
                            reply: pyro_text(&reply),
                        })
                    }),
                    Ok(Err(ProxyError::Remote(exception))) => {
                        Err(HopFailure::Failed(ChainError::HopRaised {
                            hop: server_name(self.next),
                            from: server_name(self.id),
                            exception,
                        }))
                    }
                    Ok(Err(err)) if err.is_broken() => {
                        Err(HopFailure::Broken(plumbing::describe(&err)))
                    }
                    Ok(Err(err)) => Err(HopFailure::Failed(self.unreachable(&err))),
                    Err(_) => {
                        // The reply may still come: this connection is done.
                        self.next_client.lock().await.take();
                        Err(HopFailure::Failed(ChainError::HopUnreachable {
                            hop: server_name(self.next),
                            from: server_name(self.id),
                            reason: "no answer before the deadline".into(),
                        }))
                    }
                }
            }
        }
    }

    /// The chapter's `process`, for a caller with the context `ctx`.
    async fn handle(
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

impl Chain for ChainServer {
    async fn process(self, ctx: Context, message: Vec<String>) -> Result<Vec<String>, ChainError> {
        // The caller's correlation id rides in tarpc's trace id: the calls
        // made for this request (the next hop, over either protocol) carry
        // it on, as a Python hop carries Pyro4's.
        let id = u128::from(ctx.trace_context.trace_id);
        let handled = self.handle(ctx, message);
        pyro4_wire::correlation::scope((id != 0).then_some(id), handled).await
    }
}

/// The method's name in Python, as `chainTopology.py` exposes it.
pub const PYRO_METHOD: &str = "process";

/// Calls `process(message)` over Pyro4.
async fn pyro_process(proxy: &Mutex<Proxy>, message: Vec<String>) -> Result<Value, ProxyError> {
    let list = Value::List(message.into_iter().map(Value::Str).collect());
    proxy
        .lock()
        .await
        .call(PYRO_METHOD, vec![list], vec![])
        .await
}

/// A Pyro4 reply as the list of strings it should be; what it was if not.
fn strings(reply: Value) -> Result<Vec<String>, Value> {
    let items = match &reply {
        Value::List(items) | Value::Tuple(items) => items,
        _ => return Err(reply),
    };
    match items
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
    {
        Some(strings) => Ok(strings),
        None => Err(reply),
    }
}

/// A value as Python would print it, for error messages.
fn pyro_text(value: &Value) -> String {
    let text = pyro4_wire::serpent::dumps(value);
    String::from_utf8_lossy(&text[pyro4_wire::serpent::HEADER.len()..])
        .chars()
        .take(200)
        .collect()
}

/// A ring server as Pyro4 callers see it: `process(message)` with a list
/// of strings, returning a list.
pub struct PyroChain(pub ChainServer);

/// What the chapter's `process` makes of a message a Pyro4 caller sent.
enum PythonMessage {
    /// A list of strings: it goes round the ring.
    Strings(Vec<String>),
    /// Answered at once, as Python's `self.name in message` and
    /// `message.append(...)` would answer it.
    Answer(Result<Value, PyroException>),
}

impl PyroChain {
    /// `message` read as the chapter's Python reads it: `name in message`
    /// (membership in a list, tuple, set or dict's keys, a substring of a
    /// str, Python's `TypeError` for anything else), then
    /// `message.append(name)` (only a list has one: Python's
    /// `AttributeError` otherwise). A list holding other values than
    /// strings is refused (the ring carries strings; Python would pass
    /// them on).
    fn python_message(&self, message: Option<&Value>) -> PythonMessage {
        let me = self.0.id.to_string();
        let error =
            |class: &str, text: String| PythonMessage::Answer(Err(PyroException::new(class, text)));
        let contains = match message {
            Some(Value::List(items) | Value::Tuple(items) | Value::Set(items)) => {
                items.iter().any(|item| item.as_str() == Some(me.as_str()))
            }
            Some(Value::Dict(pairs)) => pairs
                .iter()
                .any(|(key, _)| key.as_str() == Some(me.as_str())),
            Some(Value::Str(text)) => text.contains(&me),
            other => {
                let kind = other.map_or("NoneType", Value::python_type);
                return error(
                    "builtins.TypeError",
                    format!("argument of type '{kind}' is not iterable"),
                );
            }
        };
        if contains {
            if self.0.announce {
                println!("{}", back_line(self.0.id));
            }
            return PythonMessage::Answer(Ok(Value::List(vec![Value::Str(returned(self.0.id))])));
        }
        match message {
            Some(Value::List(items)) => match items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
            {
                Some(strings) => PythonMessage::Strings(strings),
                None => error(
                    "builtins.TypeError",
                    "this ring passes on a list of strings only".into(),
                ),
            },
            other => {
                let kind = other.map_or("NoneType", Value::python_type);
                error(
                    "builtins.AttributeError",
                    format!("'{kind}' object has no attribute 'append'"),
                )
            }
        }
    }
}

impl pyro4_wire::daemon::Object for PyroChain {
    fn class_name(&self) -> &'static str {
        "Chain"
    }

    fn methods(&self) -> &[&'static str] {
        &[PYRO_METHOD]
    }

    async fn invoke(&self, call: pyro4_wire::Call) -> Result<Value, PyroException> {
        let bound = call.bind("Chain.process", &["message"])?;
        let message = match self.python_message(bound.first().copied()) {
            PythonMessage::Strings(message) => message,
            PythonMessage::Answer(answer) => return answer,
        };
        match self
            .0
            .clone()
            .handle(deadline_in(CALL_TIMEOUT), message)
            .await
        {
            Ok(status) => Ok(Value::List(status.into_iter().map(Value::Str).collect())),
            Err(err) => Err(err.to_exception()),
        }
    }
}

impl Service for ChainServer {
    type Req = ChainRequest;
    type Resp = ChainResponse;

    fn run(
        self,
        channel: ServerChannel<ChainRequest, ChainResponse>,
    ) -> impl Future<Output = ()> + Send {
        channel.execute(self.serve()).for_each(spawn_request)
    }
}

/// Serves `server` on `listener` (plain, or TLS) until `shutdown`
/// completes, over tarpc and, as the object named like the server, Pyro4.
pub async fn serve(
    listener: impl Into<rpc_transport::Listener>,
    server: ChainServer,
    shutdown: impl Future<Output = ()>,
) {
    let pyro = PyroObject::new(&server_name(server.id), PyroChain(server.clone()));
    rpc_transport::serve(listener, "chain server", shutdown, server, pyro).await;
}

/// Where a ring server started here runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On the runtime that starts it (the demo, the tests).
    Here,
    /// On a thread and runtime of its own, with its own connection to the
    /// name server, as a separate process would be (the bench).
    OwnThread,
}

/// A ring server started in this process, registered under its name (a
/// lease) until [`RingServer::stop`]; dropping it stops it too, its name
/// left to expire.
#[derive(Debug)]
pub struct RingServer {
    lease: rpc_naming::Lease,
    _running: Running,
}

/// What keeps a ring server running: held, never read.
#[derive(Debug)]
#[allow(dead_code)]
enum Running {
    /// Dropping the sender stops the server.
    Here(tokio::sync::oneshot::Sender<()>),
    OwnThread(plumbing::bench::ServerThread),
}

impl RingServer {
    /// Starts server `id`, which passes messages on to server `next`, on a
    /// port of its own on 127.0.0.1, and registers it with `ns`. With
    /// `announce` it prints the chapter's lines, as `server_chain_N.py`.
    pub async fn start(
        ns: &NameServerClient,
        id: u32,
        next: u32,
        announce: bool,
        placement: Placement,
    ) -> std::io::Result<RingServer> {
        let (addr, running) = match placement {
            Placement::Here => {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let server = ChainServer::new(id, next, ns.clone(), announce);
                tokio::spawn(serve(listener, server, async {
                    let _ = stopped.await;
                }));
                (addr, Running::Here(stop))
            }
            Placement::OwnThread => {
                let ns_addr = ns.addr().to_owned();
                let thread =
                    plumbing::bench::spawn_server_thread(move |listener, stopped| async move {
                        match NameServerClient::connect(&ns_addr).await {
                            Ok(ns) => {
                                let server = ChainServer::new(id, next, ns, announce);
                                serve(listener, server, async {
                                    let _ = stopped.await;
                                })
                                .await;
                            }
                            Err(err) => tracing::error!(%err, "ring server {id} could not start"),
                        }
                    })?;
                (thread.addr, Running::OwnThread(thread))
            }
        };
        let lease = ns
            .register_lease(&server_name(id), addr, false)
            .await
            .map_err(std::io::Error::other)?;
        if announce {
            println!("{}", starting_line(id));
        }
        Ok(RingServer {
            lease,
            _running: running,
        })
    }

    /// Removes its name, then stops it.
    pub async fn stop(self) -> Result<()> {
        self.lease.release().await?;
        Ok(())
    }
}

/// Starts a ring of `size` servers, 1 → 2 → ... → `size` → 1 (see
/// [`RingServer::start`]); it runs while they are held.
pub async fn start_ring(
    ns: &NameServerClient,
    size: u32,
    announce: bool,
    placement: Placement,
) -> std::io::Result<Vec<RingServer>> {
    let mut ring = Vec::new();
    for id in 1..=size {
        ring.push(RingServer::start(ns, id, id % size + 1, announce, placement).await?);
    }
    Ok(ring)
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
    #[error("{name} did not answer within {CALL_TIMEOUT:?}")]
    Timeout { name: String },
    #[error("{name} raised {0}", .exception)]
    Raised {
        name: String,
        exception: PyroException,
    },
    #[error("the call to {name} failed")]
    Pyro { name: String, source: ProxyError },
    #[error("{name} answered with {reply}, not a list of strings")]
    BadReply { name: String, reply: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to a ring server, in the protocol its registration calls
/// for.
#[derive(Debug)]
pub enum Connection {
    /// A server of this workspace.
    Tarpc(ChainClient),
    /// A Pyro4 server (`server_chain_1.py`); one call at a time.
    Pyro(Mutex<Proxy>),
}

impl Connection {
    /// The protocol this connection speaks, for reports.
    pub fn protocol(&self) -> &'static str {
        match self {
            Connection::Tarpc(_) => "tarpc",
            Connection::Pyro(_) => "Pyro4",
        }
    }
}

/// Finds server `start` through `ns` and connects to it.
pub async fn connect(ns: &NameServerClient, start: u32) -> Result<Connection> {
    Ok(match ns.connect_to(&server_name(start)).await? {
        Endpoint::Tarpc(transport) => {
            Connection::Tarpc(ChainClient::new(Default::default(), transport).spawn())
        }
        Endpoint::Pyro(proxy) => Connection::Pyro(Mutex::new(proxy)),
    })
}

/// Sends `message` round the ring from the server behind `client`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use rpc_chain::{ChainServer, connect, send, serve, server_name};
/// use rpc_naming::NameServerClient;
///
/// let ns = NameServerClient::connect(&rpc_naming::server::spawn_local(100).await?).await?;
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
pub async fn send(
    connection: &Connection,
    start: u32,
    message: Vec<String>,
) -> Result<Vec<String>> {
    let name = server_name(start);
    let proxy = match connection {
        Connection::Tarpc(client) => {
            let reply = client
                .process(deadline_in(CALL_TIMEOUT), message)
                .await
                .map_err(|source| Error::Call { name, source })?;
            return Ok(reply?);
        }
        Connection::Pyro(proxy) => proxy,
    };
    let reply = match tokio::time::timeout(CALL_TIMEOUT, pyro_process(proxy, message)).await {
        Err(_) => return Err(Error::Timeout { name }),
        Ok(Err(ProxyError::Remote(exception))) => return Err(Error::Raised { name, exception }),
        Ok(Err(source)) => return Err(Error::Pyro { name, source }),
        Ok(Ok(reply)) => reply,
    };
    strings(reply).map_err(|reply| Error::BadReply {
        name,
        reply: pyro_text(&reply),
    })
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
