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
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::transport::{self, ClientTransport};
use crate::{Error, LIST_PAGE, ListFilter, NamingClient, NamingError, Result};

/// How long to wait for a TCP connection to a name server or a service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of each call to the name server.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to live of a lease; heartbeats renew it three times as often.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// A context whose deadline is `timeout` from now.
pub fn deadline_in(timeout: Duration) -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

/// Resolves `addr` (host:port) and connects within [`CONNECT_TIMEOUT`].
pub async fn connect_within<Req: Serialize, Resp: DeserializeOwned>(
    addr: SocketAddr,
) -> std::io::Result<ClientTransport<Req, Resp>> {
    tokio::time::timeout(CONNECT_TIMEOUT, transport::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out"))?
}

/// A connection to a name server that mends itself.
///
/// A name server may restart, or drop a connection that was idle too long:
/// a call that finds the connection broken connects again and is made once
/// more, so a server that registered an hour ago can still resolve its next
/// hop.
#[derive(Clone, Debug)]
pub struct NameServer {
    addr: String,
    client: Arc<Mutex<NamingClient>>,
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

impl NameServer {
    /// Connects to the name server at `addr` (host:port).
    pub async fn connect(addr: &str) -> Result<Self> {
        Ok(NameServer {
            addr: addr.to_owned(),
            client: Arc::new(Mutex::new(Self::open(addr).await?)),
        })
    }

    async fn open(addr: &str) -> Result<NamingClient> {
        let no_server = |source| Error::NoNameServer {
            addr: addr.to_owned(),
            source,
        };
        let resolved = lookup_host(addr)
            .await
            .map_err(no_server)?
            .next()
            .ok_or_else(|| no_server(std::io::ErrorKind::NotFound.into()))?;
        let transport = connect_within(resolved).await.map_err(no_server)?;
        Ok(NamingClient::new(client::Config::default(), transport).spawn())
    }

    /// The address this connection was made to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn current(&self) -> NamingClient {
        self.client
            .lock()
            .expect("name server client poisoned")
            .clone()
    }

    /// Makes one call with `op`; if the connection turns out to be broken,
    /// connects again and makes it once more.
    async fn call<T, Fut>(&self, op: impl Fn(NamingClient, context::Context) -> Fut) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, RpcError>>,
    {
        match op(self.current(), deadline_in(CALL_TIMEOUT)).await {
            // A reply too large for a frame would be too large again.
            Err(err) if connection_broken(&err) && !frame_too_large(&err) => {
                tracing::debug!(addr = %self.addr, %err, "name server connection broken; reconnecting");
                let fresh = Self::open(&self.addr).await?;
                *self.client.lock().expect("name server client poisoned") = fresh.clone();
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
        self.call(|c, ctx| async move { c.ping(ctx).await }).await
    }

    pub async fn lookup(&self, name: &str) -> Result<SocketAddr> {
        let found = self
            .call(|c, ctx| async move { c.lookup(ctx, name.to_owned()).await })
            .await?;
        Ok(found?)
    }

    /// Registers `name` for good, as Pyro4's `register` does.
    pub async fn register(&self, name: &str, addr: SocketAddr, safe: bool) -> Result<()> {
        let done = self
            .call(|c, ctx| async move { c.register(ctx, name.to_owned(), addr, safe).await })
            .await?;
        Ok(done?)
    }

    /// Every registration whose name starts with `prefix` (all without one),
    /// sorted by name.
    pub async fn list(&self, prefix: Option<&str>) -> Result<Vec<(String, SocketAddr)>> {
        self.list_all(ListFilter::Prefix(prefix.unwrap_or_default().to_owned()))
            .await
    }

    /// Every registration whose name matches `pattern` (a regex anchored at
    /// the start, like Python's `re.match`), sorted by name.
    pub async fn list_matching(&self, pattern: &str) -> Result<Vec<(String, SocketAddr)>> {
        self.list_all(ListFilter::Regex(pattern.to_owned())).await
    }

    /// Lists page by page until a page comes back short.
    async fn list_all(&self, filter: ListFilter) -> Result<Vec<(String, SocketAddr)>> {
        let mut all: Vec<(String, SocketAddr)> = Vec::new();
        loop {
            let after = all.last().map(|(name, _)| name.clone());
            let filter = &filter;
            let page = self
                .call(|c, ctx| {
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

    pub async fn remove(&self, name: &str) -> Result<usize> {
        self.call(|c, ctx| async move { c.remove(ctx, name.to_owned()).await })
            .await
    }

    pub async fn remove_matching(&self, pattern: &str) -> Result<usize> {
        let removed = self
            .call(|c, ctx| async move { c.remove_matching(ctx, pattern.to_owned()).await })
            .await?;
        Ok(removed?)
    }

    /// Registers `name` at `addr` with a lease of [`LEASE_TTL`], kept alive
    /// by heartbeats until the returned [`Lease`] is released or dropped.
    pub async fn register_lease(&self, name: &str, addr: SocketAddr, safe: bool) -> Result<Lease> {
        self.register_lease_for(name, addr, safe, LEASE_TTL).await
    }

    /// [`Self::register_lease`] with a time to live of `ttl` (100 ms to 1 h):
    /// heartbeats go every third of it, and a crashed holder's name goes
    /// within it.
    pub async fn register_lease_for(
        &self,
        name: &str,
        addr: SocketAddr,
        safe: bool,
        ttl: Duration,
    ) -> Result<Lease> {
        let id = self.lease(name, addr, safe, ttl).await?;
        let (stop, stopped) = oneshot::channel();
        let heartbeats = tokio::spawn(heartbeat(
            self.clone(),
            Registration {
                name: name.to_owned(),
                addr,
                ttl,
            },
            id,
            stopped,
        ));
        Ok(Lease {
            ns: self.clone(),
            name: name.to_owned(),
            stop: Some(stop),
            heartbeats,
        })
    }

    /// Registers `name` at `addr` with a lease, as [`Self::register_lease`],
    /// but refuses to take the name from a live server: what a server that
    /// starts under a fixed name does, so that a second copy of it says so
    /// instead of silently stealing the first one's clients.
    pub async fn claim(&self, name: &str, addr: SocketAddr) -> Result<Lease> {
        match self.register_lease(name, addr, true).await {
            Err(Error::Naming(NamingError::AlreadyRegistered(_))) => Err(Error::NameTaken {
                name: name.to_owned(),
                holder: self.lookup(name).await?,
            }),
            claimed => claimed,
        }
    }

    async fn lease(&self, name: &str, addr: SocketAddr, safe: bool, ttl: Duration) -> Result<u64> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let leased = self
            .call(|c, ctx| async move {
                c.register_lease(ctx, name.to_owned(), addr, safe, ttl_ms)
                    .await
            })
            .await?;
        Ok(leased?)
    }

    async fn renew(&self, name: &str, lease: u64) -> Result<()> {
        let renewed = self
            .call(|c, ctx| async move { c.renew(ctx, name.to_owned(), lease).await })
            .await?;
        Ok(renewed?)
    }

    async fn release(&self, name: &str, lease: u64) -> Result<bool> {
        self.call(|c, ctx| async move { c.release(ctx, name.to_owned(), lease).await })
            .await
    }

    /// Looks `name` up and opens a connection to it: hand the transport to
    /// the service's generated client, `XClient::new(Default::default(), t).spawn()`.
    pub async fn connect_to<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<ClientTransport<Req, Resp>> {
        let addr = self.lookup(name).await?;
        connect_within(addr)
            .await
            .map_err(|source| Error::DeadServer {
                name: name.to_owned(),
                addr,
                source,
            })
    }
}

/// A leased registration. Heartbeats keep it alive; [`Lease::release`]
/// removes it. Dropping it stops the heartbeats, so the name expires within
/// its time to live, as it does when the process dies.
#[derive(Debug)]
pub struct Lease {
    ns: NameServer,
    name: String,
    stop: Option<oneshot::Sender<()>>,
    heartbeats: JoinHandle<Option<u64>>,
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the heartbeats and removes the name; true if it was still ours.
    pub async fn release(mut self) -> Result<bool> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Ok(Some(id)) = (&mut self.heartbeats).await else {
            return Ok(false);
        };
        self.ns.release(&self.name, id).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

/// What a lease keeps registered.
#[derive(Debug)]
struct Registration {
    name: String,
    addr: SocketAddr,
    ttl: Duration,
}

/// Renews the lease every third of its time to live. If the name expired
/// (say the name server restarted), registers it again; if another server
/// took the name over, gives up. Returns the lease id held when stopped.
async fn heartbeat(
    ns: NameServer,
    held: Registration,
    mut id: u64,
    mut stopped: oneshot::Receiver<()>,
) -> Option<u64> {
    let name = &held.name;
    loop {
        tokio::select! {
            _ = &mut stopped => return Some(id),
            () = tokio::time::sleep(held.ttl / 3) => {}
        }
        match ns.renew(name, id).await {
            Ok(()) => continue,
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
        match ns.lease(name, held.addr, true, held.ttl).await {
            Ok(fresh) => id = fresh,
            Err(Error::Naming(NamingError::AlreadyRegistered(_))) => {
                tracing::warn!(%name, "another server registered this name meanwhile; no longer registered");
                return None;
            }
            Err(err) => tracing::warn!(%name, %err, "registering again failed; will retry"),
        }
    }
}
