//! The name server's tarpc face, and [`serve`], which runs it beside the
//! Pyro4 face ([`crate::pyro_server`]) on one port.

use std::future::Future;

use futures::StreamExt;
use plumbing::bench::{ServerThread, spawn_server_thread};
use rpc_transport::tls::{ServerTls, SslArgs};
use rpc_transport::{Listener, PyroObject, ServerChannel, Service, spawn_request};
use tarpc::context::Context;
use tarpc::server::Channel;
use tokio::net::TcpListener;

use crate::client::NameServerClient;
use crate::pyro_server::PyroNameService;
use crate::table::{ConnectionId, NameTable, compile};
use crate::{
    LIST_PAGE, ListFilter, Location, NAME_SERVER_ID, Naming, NamingError, NamingRequest,
    NamingResponse,
};

/// The [`Naming`] service over the name table, as one tarpc connection
/// sees it: the leases it takes end when the connection closes.
#[derive(Clone, Debug)]
pub struct TarpcNameService {
    table: NameTable,
    connection: ConnectionId,
}

impl TarpcNameService {
    /// The service for a new connection to `table`.
    pub fn new(table: NameTable) -> Self {
        let connection = table.connection_id();
        TarpcNameService { table, connection }
    }
}

impl Naming for TarpcNameService {
    async fn register(
        self,
        _: Context,
        name: String,
        location: Location,
        safe: bool,
    ) -> Result<(), NamingError> {
        self.table
            .insert(name, location, safe, crate::table::Metadata::new())
    }

    async fn register_lease(
        self,
        _: Context,
        name: String,
        addr: std::net::SocketAddr,
        safe: bool,
        ttl_ms: u64,
    ) -> Result<u64, NamingError> {
        self.table
            .insert_leased(name, addr, safe, ttl_ms, self.connection)
    }

    async fn renew(self, _: Context, name: String, lease: u64) -> Result<(), NamingError> {
        self.table.renew(name, lease)
    }

    async fn release(self, _: Context, name: String, lease: u64) -> bool {
        self.table.release(&name, lease)
    }

    async fn lookup(self, _: Context, name: String) -> Result<Location, NamingError> {
        self.table
            .location(&name)
            .ok_or(NamingError::UnknownName(name))
    }

    async fn list_page(
        self,
        _: Context,
        filter: ListFilter,
        after: Option<String>,
    ) -> Result<Vec<(String, Location)>, NamingError> {
        let after = after.as_deref();
        Ok(match filter {
            ListFilter::Prefix(prefix) => self
                .table
                .page(after, LIST_PAGE, |name, _| name.starts_with(&prefix)),
            ListFilter::Regex(pattern) => {
                let regex = compile(&pattern)?;
                self.table
                    .page(after, LIST_PAGE, |name, _| regex.is_match(name))
            }
            ListFilter::MetadataAll(tags) => self.table.page(after, LIST_PAGE, |_, metadata| {
                tags.iter().all(|tag| metadata.contains(tag))
            }),
            ListFilter::MetadataAny(tags) => self.table.page(after, LIST_PAGE, |_, metadata| {
                tags.is_empty() || tags.iter().any(|tag| metadata.contains(tag))
            }),
        })
    }

    async fn set_metadata(
        self,
        _: Context,
        name: String,
        metadata: Vec<String>,
    ) -> Result<(), NamingError> {
        self.table
            .set_metadata(&name, metadata.into_iter().collect())
    }

    async fn lookup_with_metadata(
        self,
        _: Context,
        name: String,
    ) -> Result<(Location, Vec<String>), NamingError> {
        self.table
            .lookup(&name)
            .map(|(location, metadata)| (location, metadata.into_iter().collect()))
            .ok_or(NamingError::UnknownName(name))
    }

    async fn remove(self, _: Context, name: String) -> usize {
        self.table.remove_where(|n| n == name)
    }

    async fn remove_matching(self, _: Context, pattern: String) -> Result<usize, NamingError> {
        let regex = compile(&pattern)?;
        Ok(self.table.remove_where(|name| regex.is_match(name)))
    }

    async fn ping(self, _: Context) {}
}

/// The name table served over tarpc: each connection gets a
/// [`TarpcNameService`] of its own.
impl Service for NameTable {
    type Req = NamingRequest;
    type Resp = NamingResponse;

    /// Serves one connection (its leases are its own), and releases its
    /// leases when it closes: the server that held them is gone, or has
    /// lost its link (its heartbeats then register it again).
    fn run(
        self,
        channel: ServerChannel<NamingRequest, NamingResponse>,
    ) -> impl Future<Output = ()> + Send {
        let this = TarpcNameService::new(self);
        async move {
            channel
                .execute(this.clone().serve())
                .for_each(spawn_request)
                .await;
            this.table.release_held_by(this.connection);
        }
    }
}

/// Serves a name server holding at most `max_names` names on `listener`
/// (plain, or TLS) until `shutdown` completes: tarpc and, as
/// `Pyro.NameServer`, Pyro4.
pub async fn serve(
    listener: impl Into<Listener>,
    max_names: usize,
    shutdown: impl Future<Output = ()>,
) {
    let listener = listener.into();
    let table = NameTable::new(max_names);
    if let Ok(addr) = listener.tcp.local_addr() {
        table.insert_name_server(addr);
    }
    let pyro = PyroObject::new(NAME_SERVER_ID, PyroNameService(table.clone()));
    rpc_transport::serve(listener, "name server", shutdown, table, pyro).await;
}

/// Starts a name server on an ephemeral loopback port in this process (for
/// demos, benches and tests) that runs as long as the runtime does. Returns
/// its address.
pub async fn spawn_local(max_names: usize) -> std::io::Result<String> {
    spawn_local_with(max_names, None).await
}

/// [`spawn_local`], over TLS with `tls`.
pub async fn spawn_local_with(max_names: usize, tls: Option<ServerTls>) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(serve(
        Listener::new(listener, tls),
        max_names,
        std::future::pending(),
    ));
    Ok(addr)
}

/// Starts a name server with [`DEFAULT_MAX_NAMES`](crate::DEFAULT_MAX_NAMES)
/// on a thread (and runtime) of its own, as a separate process would run;
/// it stops when the returned handle is dropped.
pub fn spawn_thread() -> std::io::Result<ServerThread> {
    spawn_thread_with(None)
}

/// [`spawn_thread`], over TLS with `tls`.
pub fn spawn_thread_with(tls: Option<ServerTls>) -> std::io::Result<ServerThread> {
    spawn_server_thread(|listener, stopped| {
        serve(
            Listener::new(listener, tls),
            crate::DEFAULT_MAX_NAMES,
            async {
                let _ = stopped.await;
            },
        )
    })
}

/// The name server at `ns`, or, without it, one started in this process
/// (on this runtime); also says whether it was started here, and so
/// whether the caller must start the servers it wants to find there (as
/// the welcome and ring benches do).
///
/// With `ssl` on, the connection is TLS, and so is a name server started
/// here.
pub async fn connect_or_spawn(
    ns: Option<String>,
    ssl: &SslArgs,
) -> anyhow::Result<(NameServerClient, bool)> {
    let own = ns.is_none();
    let addr = match ns {
        Some(ns) => ns,
        None => spawn_local_with(crate::DEFAULT_MAX_NAMES, ssl.server()?).await?,
    };
    Ok((
        NameServerClient::connect_with(&addr, ssl.client()?).await?,
        own,
    ))
}
