//! The client side: talk to a name server, register with a lease, and find
//! a service by name.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tarpc::client::{self, RpcError};
use tarpc::context;
use tokio::net::lookup_host;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use plumbing::tls::ClientTls;
use pyro4_wire::{Proxy, ProxyError, PyroUri};

use crate::pyro_client::PyroNameServerClient;
use crate::{
    Error, LIST_PAGE, ListFilter, Location, NAME_SERVER_ID, NamingClient, NamingError, Result,
};
use rpc_transport::{ClientTransport, speaks_tarpc};

/// How long to wait for a TCP connection to a name server or a service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of each call to the name server.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to live of a lease; heartbeats renew it three times as often.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// A context whose deadline is `timeout` from now, carrying the current
/// Pyro4 correlation id ([`pyro4_wire::correlation`]) as its trace id, so
/// that a call made on behalf of a request keeps the request's id.
pub fn deadline_in(timeout: Duration) -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + timeout;
    if let Some(id) = pyro4_wire::correlation::current() {
        ctx.trace_context.trace_id = id.into();
    }
    ctx
}

/// Connects to `addr` within [`CONNECT_TIMEOUT`] (a TLS handshake has a
/// deadline of its own), over TLS with `tls`, the server's certificate
/// checked for `host`.
pub async fn connect_within<Req: Serialize, Resp: DeserializeOwned>(
    addr: SocketAddr,
    host: &str,
    tls: Option<&ClientTls>,
) -> std::io::Result<ClientTransport<Req, Resp>> {
    tokio::time::timeout(connect_limit(tls), rpc_transport::connect(addr, host, tls))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out"))?
}

/// How long a connection may take: [`CONNECT_TIMEOUT`], and the handshake's
/// deadline over TLS.
fn connect_limit(tls: Option<&ClientTls>) -> Duration {
    match tls {
        Some(_) => CONNECT_TIMEOUT + rpc_transport::tls::HANDSHAKE_TIMEOUT,
        None => CONNECT_TIMEOUT,
    }
}

/// What a failed Pyro4 connection says of TLS, if it failed in TLS: a
/// handshake refused, or (TLS 1.3) the server's alert on the first
/// exchange, or its close crossing that exchange.
fn tls_failure(err: &ProxyError, tls: bool) -> Option<String> {
    match err {
        ProxyError::Connect { source, .. } => plumbing::tls::failure(source),
        ProxyError::Read {
            source: pyro4_wire::io::ReadError::Io(source),
            ..
        } => plumbing::tls::client_failure(source).filter(|_| tls),
        _ => None,
    }
}

/// The host part of `addr` (host:port), without an IPv6 address's
/// brackets: the name a server's certificate is checked for.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A connection to a name server: this workspace's (over tarpc) or
/// Python's `Pyro4.naming` (over Pyro4), whichever answers at the address.
///
/// A name server may restart, or drop a connection that was idle too long:
/// a call that finds the connection broken connects again and is made once
/// more, so a server that registered an hour ago can still resolve its next
/// hop.
#[derive(Clone, Debug)]
pub struct NameServerClient {
    addr: String,
    backend: Backend,
    /// TLS for every connection this client makes: to the name server and
    /// to the servers it finds.
    tls: Option<ClientTls>,
}

#[derive(Clone, Debug)]
enum Backend {
    Tarpc(Arc<Mutex<NamingClient>>),
    Pyro(Arc<PyroNameServerClient>),
}

/// A connection to a registered server, in the protocol its location calls
/// for: hand a tarpc transport to the service's generated client,
/// `XClient::new(Default::default(), t).spawn()`; call a Pyro4 proxy's
/// methods by name.
pub enum Endpoint<Req, Resp> {
    Tarpc(ClientTransport<Req, Resp>),
    Pyro(Proxy),
}

/// Whether an RPC error comes from a frame over the limit (a reply the
/// client refused to read).
fn frame_too_large(err: &RpcError) -> bool {
    use tarpc::tokio_util::codec::LengthDelimitedCodecError;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(inner) = cause {
        if inner.is::<LengthDelimitedCodecError>() {
            return true;
        }
        // tarpc hands its transport error over in an Arc, and an io::Error
        // hides the error it wraps from source(): look inside both.
        type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
        cause = if let Some(shared) = inner.downcast_ref::<Shared>() {
            Some(&**shared)
        } else if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            io.get_ref()
                .map(|e| e as &(dyn std::error::Error + 'static))
        } else {
            inner.source()
        };
    }
    false
}

/// Whether an RPC error means the connection is gone (rather than the call).
fn connection_broken(err: &RpcError) -> bool {
    matches!(
        err,
        RpcError::Shutdown | RpcError::Send(_) | RpcError::Channel(_)
    )
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    let no_server = |source| Error::NoNameServer {
        addr: addr.to_owned(),
        source,
    };
    lookup_host(addr)
        .await
        .map_err(no_server)?
        .next()
        .ok_or_else(|| no_server(std::io::ErrorKind::NotFound.into()))
}

impl NameServerClient {
    /// Connects to the name server at `addr` (host:port).
    ///
    /// Both kinds of name server answer Pyro4, so the first connection asks
    /// for `Pyro.NameServer`: one of this workspace answers with the
    /// annotation [`rpc_transport::TARPC_MARK`] and is then spoken to over tarpc; Python's
    /// is spoken to over that Pyro4 connection.
    pub async fn connect(addr: &str) -> Result<Self> {
        Self::connect_with(addr, None).await
    }

    /// [`connect`](Self::connect) over TLS with `tls` (Pyro4's SSL): to the
    /// name server, and to every server found through it.
    pub async fn connect_with(addr: &str, tls: Option<ClientTls>) -> Result<Self> {
        let proxy = Self::probe(addr, tls.as_ref()).await?;
        let backend = if speaks_tarpc(&proxy) {
            Backend::Tarpc(Arc::new(Mutex::new(Self::open(addr, tls.as_ref()).await?)))
        } else {
            Backend::Pyro(Arc::new(PyroNameServerClient::new(proxy, tls.clone())))
        };
        Ok(NameServerClient {
            addr: addr.to_owned(),
            backend,
            tls,
        })
    }

    /// Connects over Pyro4 whichever kind of name server is at `addr`:
    /// how a Python program sees it (the bench measures this workspace's
    /// name server's Pyro4 face so).
    pub async fn connect_pyro4(addr: &str) -> Result<Self> {
        let proxy = Self::probe(addr, None).await?;
        Ok(NameServerClient {
            addr: addr.to_owned(),
            backend: Backend::Pyro(Arc::new(PyroNameServerClient::new(proxy, None))),
            tls: None,
        })
    }

    /// A Pyro4 proxy for `Pyro.NameServer` at `addr`, connected. Over TLS
    /// the URI keeps the host as given: the certificate is checked for it.
    async fn probe(addr: &str, tls: Option<&ClientTls>) -> Result<Proxy> {
        let resolved = resolve(addr).await?;
        let host = match tls {
            Some(_) => host_of(addr).to_owned(),
            None => resolved.ip().to_string(),
        };
        let uri = PyroUri {
            object: NAME_SERVER_ID.to_owned(),
            host,
            port: resolved.port(),
        };
        let probe = tokio::time::timeout(connect_limit(tls), Proxy::connect_with(&uri, tls))
            .await
            .map_err(|_| Error::NoNameServer {
                addr: addr.to_owned(),
                source: std::io::ErrorKind::TimedOut.into(),
            })?;
        probe.map_err(|err| {
            if let Some(reason) = tls_failure(&err, tls.is_some()) {
                return Error::Tls {
                    addr: addr.to_owned(),
                    reason,
                };
            }
            match err {
                ProxyError::Connect { source, .. } => Error::NoNameServer {
                    addr: addr.to_owned(),
                    source,
                },
                ProxyError::Rejected { reason, .. } => Error::Refused {
                    addr: addr.to_owned(),
                    reason,
                },
                // A TLS server drops a plain client's connection at once.
                ProxyError::Closed { .. } | ProxyError::Read { .. } if tls.is_none() => {
                    Error::Protocol {
                        addr: addr.to_owned(),
                        reason: format!(
                            "it closed the connection without answering: does it require TLS? \
                             (set PYRO_SSL and its certificates, or --ssl): {}",
                            plumbing::describe(&err)
                        ),
                    }
                }
                err => Error::Protocol {
                    addr: addr.to_owned(),
                    reason: format!(
                        "it does not answer as a name server: {}",
                        plumbing::describe(&err)
                    ),
                },
            }
        })
    }

    async fn open(addr: &str, tls: Option<&ClientTls>) -> Result<NamingClient> {
        let resolved = resolve(addr).await?;
        let transport = connect_within(resolved, host_of(addr), tls)
            .await
            .map_err(|source| Error::NoNameServer {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(NamingClient::new(client::Config::default(), transport).spawn())
    }

    /// The address this connection was made to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether this is Python's name server (spoken to over Pyro4), where
    /// registrations have no lease and stay until removed.
    pub fn is_pyro(&self) -> bool {
        matches!(self.backend, Backend::Pyro(_))
    }

    /// Makes one tarpc call with `op`; if the connection turns out to be
    /// broken, connects again and makes it once more.
    async fn call<T, Fut>(
        &self,
        client: &Mutex<NamingClient>,
        op: impl Fn(NamingClient, context::Context) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, RpcError>>,
    {
        let current = client.lock().expect("name server client poisoned").clone();
        match op(current, deadline_in(CALL_TIMEOUT)).await {
            // A reply too large for a frame would be too large again.
            Err(err) if connection_broken(&err) && !frame_too_large(&err) => {
                tracing::debug!(addr = %self.addr, %err, "name server connection broken; reconnecting");
                let fresh = Self::open(&self.addr, self.tls.as_ref()).await?;
                *client.lock().expect("name server client poisoned") = fresh.clone();
                op(fresh, deadline_in(CALL_TIMEOUT))
                    .await
                    .map_err(|e| self.rpc_error(e))
            }
            done => done.map_err(|e| self.rpc_error(e)),
        }
    }

    fn rpc_error(&self, source: RpcError) -> Error {
        if frame_too_large(&source) {
            return Error::ReplyTooLarge {
                addr: self.addr.clone(),
                source,
            };
        }
        Error::NameServerRpc {
            addr: self.addr.clone(),
            source,
        }
    }

    pub async fn ping(&self) -> Result<()> {
        match &self.backend {
            Backend::Pyro(ns) => ns.ping().await,
            Backend::Tarpc(c) => {
                self.call(c, |c, ctx| async move { c.ping(ctx).await })
                    .await
            }
        }
    }

    /// Where `name` leads.
    pub async fn lookup(&self, name: &str) -> Result<Location> {
        match &self.backend {
            Backend::Pyro(ns) => ns.lookup(name).await,
            Backend::Tarpc(c) => {
                let found = self
                    .call(
                        c,
                        |c, ctx| async move { c.lookup(ctx, name.to_owned()).await },
                    )
                    .await?;
                Ok(found?)
            }
        }
    }

    /// Registers `name` for good, as Pyro4's `register` does.
    pub async fn register(
        &self,
        name: &str,
        location: impl Into<Location>,
        safe: bool,
    ) -> Result<()> {
        let location = location.into();
        match &self.backend {
            Backend::Pyro(ns) => ns.register(name, &location, safe).await,
            Backend::Tarpc(c) => {
                let location = &location;
                let done = self
                    .call(c, |c, ctx| async move {
                        c.register(ctx, name.to_owned(), location.clone(), safe)
                            .await
                    })
                    .await?;
                Ok(done?)
            }
        }
    }

    /// Every registration whose name starts with `prefix` (all without one),
    /// sorted by name.
    pub async fn list(&self, prefix: Option<&str>) -> Result<Vec<(String, Location)>> {
        self.list_all(ListFilter::Prefix(prefix.unwrap_or_default().to_owned()))
            .await
    }

    /// Every registration whose name matches `pattern` (a regex anchored at
    /// the start, like Python's `re.match`), sorted by name.
    pub async fn list_matching(&self, pattern: &str) -> Result<Vec<(String, Location)>> {
        self.list_all(ListFilter::Regex(pattern.to_owned())).await
    }

    /// Lists page by page until a page comes back short (a Python name
    /// server sends everything at once).
    async fn list_all(&self, filter: ListFilter) -> Result<Vec<(String, Location)>> {
        let client = match &self.backend {
            Backend::Pyro(ns) => return ns.list(&filter).await,
            Backend::Tarpc(client) => client,
        };
        let mut all: Vec<(String, Location)> = Vec::new();
        loop {
            let after = all.last().map(|(name, _)| name.clone());
            let filter = &filter;
            let page = self
                .call(client, |c, ctx| {
                    let after = after.clone();
                    async move { c.list_page(ctx, filter.clone(), after).await }
                })
                .await??;
            let full = page.len() == LIST_PAGE;
            let advances = match (page.first(), &after) {
                (Some((first, _)), Some(after)) => first > after,
                _ => true,
            };
            if !advances {
                return Err(Error::Protocol {
                    addr: self.addr.clone(),
                    reason: "a page of the listing went backwards".into(),
                });
            }
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// Every registration whose metadata holds all of `tags` (or, with
    /// `any`, one of them at least), sorted by name.
    pub async fn list_by_metadata(
        &self,
        tags: &[String],
        any: bool,
    ) -> Result<Vec<(String, Location)>> {
        let tags = tags.to_vec();
        self.list_all(if any {
            ListFilter::MetadataAny(tags)
        } else {
            ListFilter::MetadataAll(tags)
        })
        .await
    }

    /// Replaces the metadata of `name` (an empty list clears it).
    pub async fn set_metadata(&self, name: &str, metadata: &[String]) -> Result<()> {
        match &self.backend {
            Backend::Pyro(ns) => ns.set_metadata(name, metadata).await,
            Backend::Tarpc(c) => {
                let metadata = metadata.to_vec();
                let done = self
                    .call(c, |c, ctx| {
                        let metadata = metadata.clone();
                        async move { c.set_metadata(ctx, name.to_owned(), metadata).await }
                    })
                    .await?;
                Ok(done?)
            }
        }
    }

    /// Where `name` leads, and its metadata, sorted, in one call.
    pub async fn lookup_with_metadata(&self, name: &str) -> Result<(Location, Vec<String>)> {
        match &self.backend {
            Backend::Pyro(ns) => ns.lookup_with_metadata(name).await,
            Backend::Tarpc(c) => {
                let found = self
                    .call(c, |c, ctx| async move {
                        c.lookup_with_metadata(ctx, name.to_owned()).await
                    })
                    .await?;
                Ok(found?)
            }
        }
    }

    pub async fn remove(&self, name: &str) -> Result<usize> {
        match &self.backend {
            Backend::Pyro(ns) => ns.remove(name).await,
            Backend::Tarpc(c) => {
                self.call(
                    c,
                    |c, ctx| async move { c.remove(ctx, name.to_owned()).await },
                )
                .await
            }
        }
    }

    pub async fn remove_matching(&self, pattern: &str) -> Result<usize> {
        match &self.backend {
            Backend::Pyro(ns) => ns.remove_matching(pattern).await,
            Backend::Tarpc(c) => {
                let removed = self
                    .call(c, |c, ctx| async move {
                        c.remove_matching(ctx, pattern.to_owned()).await
                    })
                    .await?;
                Ok(removed?)
            }
        }
    }

    /// Registers `name` at `addr` with a lease of [`LEASE_TTL`], kept alive
    /// by heartbeats until the returned [`Lease`] is released or dropped.
    pub async fn register_lease(&self, name: &str, addr: SocketAddr, safe: bool) -> Result<Lease> {
        self.register_lease_for(name, addr, safe, LEASE_TTL).await
    }

    /// [`Self::register_lease`] with a time to live of `ttl` (100 ms to 1 h):
    /// heartbeats go every third of it, and a crashed holder's name goes
    /// within it.
    ///
    /// A Python name server has no leases: there the name is registered for
    /// good, as Python servers register theirs, and [`Lease::release`]
    /// removes it if it still leads here.
    pub async fn register_lease_for(
        &self,
        name: &str,
        addr: SocketAddr,
        safe: bool,
        ttl: Duration,
    ) -> Result<Lease> {
        let held = Registration {
            name: name.to_owned(),
            addr,
            ttl,
        };
        let Backend::Tarpc(client) = &self.backend else {
            self.register(name, Location::Rust(addr), safe).await?;
            return Ok(Lease {
                ns: self.clone(),
                held,
                heartbeats: None,
                renewals: watch::channel(0).1,
            });
        };
        let id = self.lease(client, name, addr, safe, ttl).await?;
        let (stop, stopped) = oneshot::channel();
        let (renewed, renewals) = watch::channel(0);
        let heartbeat = heartbeat(self.clone(), held.clone(), id, stopped, renewed);
        Ok(Lease {
            ns: self.clone(),
            held,
            heartbeats: Some((stop, tokio::spawn(heartbeat))),
            renewals,
        })
    }

    /// Registers `name` at `addr` with a lease, as [`Self::register_lease`],
    /// but refuses to take the name from a live server: what a server that
    /// starts under a fixed name does, so that a second copy of it says so
    /// instead of silently stealing the first one's clients.
    ///
    /// On a Python name server, where a crashed server's name stays, a name
    /// whose holder no longer accepts connections is taken over.
    pub async fn claim(&self, name: &str, addr: SocketAddr) -> Result<Lease> {
        match self.register_lease(name, addr, true).await {
            Err(Error::Naming(NamingError::AlreadyRegistered(_))) => {
                let holder = self.lookup(name).await?;
                // A name whose server is gone (killed outright, and its
                // connection not yet seen closed; or on Python's name server,
                // which has no leases) is free; a live holder keeps it.
                if !answers(&holder).await {
                    tracing::warn!(%name, %holder, "nothing answers at the registered location; taking the name over");
                    return self.register_lease(name, addr, false).await;
                }
                Err(Error::NameTaken {
                    name: name.to_owned(),
                    holder,
                })
            }
            claimed => claimed,
        }
    }

    /// Takes a lease (on this workspace's name server: Python's has none).
    async fn lease(
        &self,
        c: &Mutex<NamingClient>,
        name: &str,
        addr: SocketAddr,
        safe: bool,
        ttl: Duration,
    ) -> Result<u64> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let leased = self
            .call(c, |c, ctx| async move {
                c.register_lease(ctx, name.to_owned(), addr, safe, ttl_ms)
                    .await
            })
            .await?;
        Ok(leased?)
    }

    async fn renew(&self, c: &Mutex<NamingClient>, name: &str, lease: u64) -> Result<()> {
        let renewed = self
            .call(c, |c, ctx| async move {
                c.renew(ctx, name.to_owned(), lease).await
            })
            .await?;
        Ok(renewed?)
    }

    /// Ends the registration `held`: the lease `id` on this workspace's name
    /// server; on Python's, the name if it still leads to `held.addr`.
    async fn release(&self, held: &Registration, id: Option<u64>) -> Result<bool> {
        let name = held.name.as_str();
        match (&self.backend, id) {
            (Backend::Tarpc(c), Some(lease)) => {
                self.call(c, |c, ctx| async move {
                    c.release(ctx, name.to_owned(), lease).await
                })
                .await
            }
            (Backend::Tarpc(_), None) => Ok(false),
            (Backend::Pyro(ns), _) => {
                let ours = Location::Pyro(Location::Rust(held.addr).pyro_uri(name));
                match ns.lookup(name).await {
                    Ok(location) if location == ours => Ok(ns.remove(name).await? == 1),
                    Ok(_) | Err(Error::Naming(NamingError::UnknownName(_))) => Ok(false),
                    Err(err) => Err(err),
                }
            }
        }
    }

    /// Looks `name` up and connects to it in the protocol its location
    /// calls for: tarpc to a server of this workspace (also when it was
    /// registered by a Pyro URI: its Pyro4 handshake says so), Pyro4 to a
    /// Python one.
    pub async fn connect_to<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Endpoint<Req, Resp>> {
        let location = self.lookup(name).await?;
        let dead = |location: &Location, source: Box<dyn std::error::Error + Send + Sync>| {
            Error::DeadServer {
                name: name.to_owned(),
                location: location.clone(),
                source,
            }
        };
        match &location {
            Location::Rust(addr) => {
                connect_within(*addr, &addr.ip().to_string(), self.tls.as_ref())
                    .await
                    .map(Endpoint::Tarpc)
                    .map_err(|source| dead(&location, source.into()))
            }
            Location::Pyro(uri) => {
                let connecting = Proxy::connect_with(uri, self.tls.as_ref());
                match tokio::time::timeout(connect_limit(self.tls.as_ref()), connecting).await {
                    // A server of this workspace, registered by URI (on
                    // Python's name server): Rust talks to it over tarpc.
                    Ok(Ok(proxy)) if speaks_tarpc(&proxy) => {
                        let addr = proxy
                            .peer_addr()
                            .map_err(|err| dead(&location, err.into()))?;
                        connect_within(addr, &uri.host, self.tls.as_ref())
                            .await
                            .map(Endpoint::Tarpc)
                            .map_err(|source| dead(&location, source.into()))
                    }
                    Ok(Ok(proxy)) => Ok(Endpoint::Pyro(proxy)),
                    Ok(Err(ProxyError::Connect { source, .. })) => {
                        Err(dead(&location, source.into()))
                    }
                    Ok(Err(source)) => Err(Error::PyroServer {
                        name: name.to_owned(),
                        source,
                    }),
                    Err(elapsed) => Err(dead(&location, elapsed.into())),
                }
            }
        }
    }
}

/// Whether something accepts connections at `location`.
async fn answers(location: &Location) -> bool {
    let connected = match location {
        Location::Rust(addr) => {
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
        }
        Location::Pyro(uri) => {
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::TcpStream::connect((uri.host.as_str(), uri.port)),
            )
            .await
        }
    };
    matches!(connected, Ok(Ok(_)))
}

/// A leased registration. Heartbeats keep it alive; [`Lease::release`]
/// removes it. Dropping it stops the heartbeats, so the name expires within
/// its time to live, as it does when the process dies. (On a Python name
/// server there are no heartbeats: the name stays until released.)
#[derive(Debug)]
pub struct Lease {
    ns: NameServerClient,
    held: Registration,
    heartbeats: Option<(oneshot::Sender<()>, JoinHandle<Option<u64>>)>,
    renewals: watch::Receiver<u64>,
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.held.name
    }

    /// How many times the heartbeats have renewed the lease so far: a
    /// monitor (or a test) waits for a renewal rather than for a time.
    pub fn renewals(&self) -> watch::Receiver<u64> {
        self.renewals.clone()
    }

    /// Stops the heartbeats and removes the name; true if it was still ours.
    pub async fn release(mut self) -> Result<bool> {
        let id = match self.heartbeats.take() {
            Some((stop, heartbeats)) => {
                let _ = stop.send(());
                match heartbeats.await {
                    Ok(Some(id)) => Some(id),
                    _ => return Ok(false),
                }
            }
            None => None,
        };
        self.ns.release(&self.held, id).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((_, heartbeats)) = &self.heartbeats {
            heartbeats.abort();
        }
    }
}

/// What a lease keeps registered.
#[derive(Clone, Debug)]
struct Registration {
    name: String,
    addr: SocketAddr,
    ttl: Duration,
}

/// Renews the lease every third of its time to live. If the name expired
/// (say the name server restarted), registers it again; if another server
/// took the name over, gives up. Returns the lease id held when stopped.
async fn heartbeat(
    ns: NameServerClient,
    held: Registration,
    mut id: u64,
    mut stopped: oneshot::Receiver<()>,
    renewed: watch::Sender<u64>,
) -> Option<u64> {
    let name = &held.name;
    let Backend::Tarpc(client) = &ns.backend else {
        return None;
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return Some(id),
            () = tokio::time::sleep(held.ttl / 3) => {}
        }
        match ns.renew(client, name, id).await {
            Ok(()) => {
                renewed.send_modify(|count| *count += 1);
                continue;
            }
            Err(Error::Naming(NamingError::LeaseLost(_))) => {
                tracing::warn!(%name, "another server took this name over; no longer registered");
                return None;
            }
            Err(Error::Naming(err)) => {
                tracing::warn!(%name, %err, "lease lapsed; registering again")
            }
            Err(err) => {
                tracing::warn!(%name, %err, "name server unreachable; will retry");
                continue;
            }
        }
        match ns.lease(client, name, held.addr, true, held.ttl).await {
            Ok(fresh) => id = fresh,
            Err(Error::Naming(NamingError::AlreadyRegistered(_))) => {
                tracing::warn!(%name, "another server registered this name meanwhile; no longer registered");
                return None;
            }
            Err(err) => tracing::warn!(%name, %err, "registering again failed; will retry"),
        }
    }
}
