//! A name server for the RPC examples: Pyro4's `Pyro4.naming`, on tarpc and
//! on Pyro4 itself.
//!
//! RPC servers in the chapter do not tell their clients where they are: they
//! register a *name* (`server`, `example.chainTopology.1`) with a name server
//! at a well-known address, and clients look the name up. This crate is that
//! name server ([`server`]), the [`Naming`] service it speaks, and a client
//! helper ([`NameServerClient`]) with which a server registers and a client finds a
//! service in one line each.
//!
//! It keeps Pyro4's semantics: `register` overwrites unless `safe`; `lookup`
//! of an unknown name fails with `unknown name: X`; `remove` counts what it
//! removed (0 for an unknown name); `list` filters by prefix or regex. It adds
//! leases: a server registered through [`NameServerClient::register_lease`]
//! holds its name through its connection, so a crashed server's name is free
//! the moment that connection closes instead of staying until someone
//! removes it (heartbeats keep the lease of a server that hangs with its
//! connection open alive only for its time to live), and [`Lease::release`]
//! removes it on a clean stop.
//!
//! It also speaks Pyro4 (protocol 48, [`pyro4_wire`]) on the same port, as
//! the object `Pyro.NameServer` ([`pyro_server`]), so the chapter's Python programs
//! and `python -m Pyro4.nsc` use it as their name server; and
//! [`NameServerClient`] talks to Python's `python -m Pyro4.naming` as well. A name
//! leads to a [`Location`]: a server of this workspace's address, or a Pyro
//! URI.
//!
//! A name server, a registration and a lookup in one program:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rpc_naming::{Location, NameServerClient};
//!
//! let ns_addr = rpc_naming::server::spawn_local(100).await?;
//! let ns = NameServerClient::connect(&ns_addr).await?;
//! let server_addr = "127.0.0.1:4000".parse()?;
//! let lease = ns.claim("server", server_addr).await?;
//! assert_eq!(ns.lookup("server").await?, Location::Rust(server_addr));
//! assert!(lease.release().await?);
//! assert!(ns.lookup("server").await.is_err());
//! # Ok(())
//! # }
//! ```

pub mod broadcast;
pub mod client;
pub mod commands;
pub mod pyro_client;
pub mod pyro_server;
pub mod server;
pub mod table;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use pyro4_wire::PyroUri;
use serde::{Deserialize, Serialize};

pub use client::{Endpoint, Lease, NameServerClient};

/// Where a name leads.
///
/// A server of this workspace registers its address and answers both
/// tarpc and Pyro4 there (the object id a Python proxy asks for is the name
/// it registered); a Python server registers a Pyro URI and answers Pyro4
/// only. Clients here pick the protocol from the location: tarpc for
/// [`Location::Rust`], Pyro4 for [`Location::Pyro`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    /// A server of this workspace at this address.
    Rust(SocketAddr),
    /// A Pyro4 object (registered from Python, or by hand).
    Pyro(PyroUri),
}

impl Location {
    /// The URI a Pyro4 client is given for `name` at this location.
    ///
    /// ```
    /// use rpc_naming::Location;
    /// let rust = Location::Rust("127.0.0.1:4000".parse().unwrap());
    /// assert_eq!(rust.pyro_uri("server").to_string(), "PYRO:server@127.0.0.1:4000");
    /// ```
    pub fn pyro_uri(&self, name: &str) -> PyroUri {
        match self {
            Location::Rust(addr) => PyroUri {
                object: name.to_owned(),
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            Location::Pyro(uri) => uri.clone(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Rust(addr) => addr.fmt(f),
            Location::Pyro(uri) => uri.fmt(f),
        }
    }
}

impl From<SocketAddr> for Location {
    fn from(addr: SocketAddr) -> Self {
        Location::Rust(addr)
    }
}

impl FromStr for Location {
    type Err = String;

    /// `IP:PORT` (a server of this workspace) or `PYRO:objectid@host:port`.
    fn from_str(text: &str) -> Result<Self, String> {
        if text.starts_with("PYRO") {
            return PyroUri::parse(text)
                .map(Location::Pyro)
                .map_err(|err| err.to_string());
        }
        text.parse().map(Location::Rust).map_err(|_| {
            format!("{text:?} is neither IP:PORT nor a Pyro URI (PYRO:objectid@host:port)")
        })
    }
}

/// The object id of a name server, in Python and here.
pub const NAME_SERVER_ID: &str = "Pyro.NameServer";
/// Where the name server listens by default (Pyro4's port).
pub const DEFAULT_NS_ADDR: &str = "127.0.0.1:9090";
/// The environment variable that overrides it, beside `--ns`.
pub const NS_ENV: &str = "RPC_NAMESERVER";
/// Longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Longest regex pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 256;
/// Most names the table holds by default.
pub const DEFAULT_MAX_NAMES: usize = 10_000;

/// The name server's operations.
#[tarpc::service]
pub trait Naming {
    /// Registers `name` at `addr` for good (until removed). Overwrites an
    /// existing registration unless `safe`.
    async fn register(name: String, location: Location, safe: bool) -> Result<(), NamingError>;
    /// Registers `name` with a lease that expires unless renewed within
    /// `ttl_ms`; returns the lease id to renew and release it with.
    async fn register_lease(
        name: String,
        addr: SocketAddr,
        safe: bool,
        ttl_ms: u64,
    ) -> Result<u64, NamingError>;
    /// Extends the lease `lease` on `name` by its time to live.
    async fn renew(name: String, lease: u64) -> Result<(), NamingError>;
    /// Removes `name` if it is still held by `lease`; true if it was.
    async fn release(name: String, lease: u64) -> bool;
    /// Where `name` leads.
    async fn lookup(name: String) -> Result<Location, NamingError>;
    /// Up to [`LIST_PAGE`] registrations that pass `filter`, sorted by name,
    /// starting after the name `after` (from the start without it). A table
    /// of any size is listed page by page, each page well inside a frame.
    async fn list_page(
        filter: ListFilter,
        after: Option<String>,
    ) -> Result<Vec<(String, Location)>, NamingError>;
    /// Removes `name`; returns how many were removed (0 or 1).
    async fn remove(name: String) -> usize;
    /// Removes every name matching `pattern`; returns how many.
    async fn remove_matching(pattern: String) -> Result<usize, NamingError>;
    /// Answers if the name server is up.
    async fn ping();
    // Later methods go last, so that the earlier ones keep their numbers on
    // the wire.
    /// Replaces the metadata of `name` (Pyro4's `set_metadata`).
    async fn set_metadata(name: String, metadata: Vec<String>) -> Result<(), NamingError>;
    /// Where `name` leads, and its metadata, sorted.
    async fn lookup_with_metadata(name: String) -> Result<(Location, Vec<String>), NamingError>;
}

/// Registrations a page holds at most: 1,000 names of at most 200 bytes and
/// their addresses come to about 240 KB, a quarter of the frame limit.
pub const LIST_PAGE: usize = 1_000;

/// Which names a listing shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListFilter {
    /// Names starting with this (every name for an empty prefix).
    Prefix(String),
    /// Names matching this regex, anchored at the start like Python's
    /// `re.match`.
    Regex(String),
    /// Names whose metadata holds every one of these (Pyro4's
    /// `metadata_all`; every name when empty).
    MetadataAll(Vec<String>),
    /// Names whose metadata holds one of these at least (`metadata_any`;
    /// every name when empty).
    MetadataAny(Vec<String>),
}

/// What the name server can refuse, as it travels back to the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum NamingError {
    #[error("unknown name: {0}")]
    UnknownName(String),
    #[error("name already registered: {0}")]
    AlreadyRegistered(String),
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("the name table is full ({0} names); remove some first")]
    TableFull(usize),
    #[error("too much metadata: at most {MAX_METADATA} strings of at most {MAX_NAME_LEN} bytes each", MAX_METADATA = table::MAX_METADATA)]
    TooMuchMetadata,
    #[error("lease time {0} ms is out of range (100 ms to 1 h)")]
    InvalidLease(u64),
    #[error("{0} was taken over by another registration; this lease is void")]
    LeaseLost(String),
}

/// Checks a name: non-empty, at most [`MAX_NAME_LEN`] bytes, printable, no
/// white space.
///
/// Printable means no character of Unicode's "Other" categories (control,
/// format, surrogate, private use, unassigned) nor its separators: a name
/// with a zero-width space (`ser\u{200b}ver`) or a right-to-left override
/// would list exactly like another name and fool whoever reads the list.
///
/// ```
/// use rpc_naming::validate_name;
/// assert!(validate_name("example.chainTopology.1").is_ok());
/// assert!(validate_name("ser\u{200b}ver").is_err());
/// assert!(validate_name("buku-ñ").is_ok());
/// ```
pub fn validate_name(name: &str) -> Result<(), NamingError> {
    let invalid = |reason: &str| {
        Err(NamingError::InvalidName {
            name: name.chars().take(MAX_NAME_LEN).collect(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return invalid("a name cannot be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid(&format!("longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(c) = name.chars().find(|&c| !printable(c)) {
        return invalid(&format!(
            "{} is not allowed: only printable characters without spaces",
            c.escape_unicode()
        ));
    }
    Ok(())
}

/// Whether `c` may appear in a name: visible, and not a space.
fn printable(c: char) -> bool {
    python_text::is_printable(c) && !c.is_whitespace()
}

/// Everything a user of this library can meet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no name server at {addr}. Start one with `rpc_naming serve --addr {addr}`, \
         or point --ns (or {NS_ENV}) at a running one"
    )]
    NoNameServer {
        addr: String,
        source: std::io::Error,
    },
    #[error("the name server at {addr} failed to answer")]
    NameServerRpc {
        addr: String,
        source: tarpc::client::RpcError,
    },
    #[error(
        "the name server at {addr} sent a reply larger than the {} MiB frame limit",
        rpc_transport::MAX_FRAME >> 20
    )]
    ReplyTooLarge {
        addr: String,
        source: tarpc::client::RpcError,
    },
    #[error("the Pyro4 name server at {addr} failed to answer")]
    PyroNameServerRpc {
        addr: String,
        source: pyro4_wire::ProxyError,
    },
    #[error("TLS to the name server at {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("the name server at {addr} turned the connection away: {reason}")]
    Refused { addr: String, reason: String },
    #[error("the name server at {addr} broke the protocol: {reason}")]
    Protocol { addr: String, reason: String },
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error(
        "{name} is registered at {location}, but nothing answers there ({})",
        stale_hint(location)
    )]
    DeadServer {
        name: String,
        location: Location,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{name} is already registered by a live server at {holder}; stop that one first, \
         or choose another name (a crashed server's name expires within seconds)"
    )]
    NameTaken { name: String, holder: Location },
    #[error("{name} refused the connection")]
    PyroServer {
        name: String,
        source: pyro4_wire::ProxyError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a user should know about a registration nothing answers at.
fn stale_hint(location: &Location) -> &'static str {
    match location {
        Location::Rust(_) => "the server may have crashed; its registration expires within seconds",
        Location::Pyro(_) => {
            "the server may have crashed; a Pyro4 registration stays until removed: \
             `rpc_naming remove NAME`"
        }
    }
}

/// Removes a stopping server's name. If the name server is gone too, says
/// so and carries on: the lease expires by itself.
pub async fn release_on_exit(lease: Lease) {
    let name = lease.name().to_owned();
    if let Err(err) = lease.release().await {
        tracing::warn!(%name, %err, "could not remove the name; it expires within seconds");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("example.chainTopology.1").is_ok());
        assert!(validate_name("server").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("two words").is_err());
        assert!(validate_name("bell\u{7}").is_err());
        for invisible in [
            '\u{200b}', '\u{202e}', '\u{feff}', '\u{2060}', '\u{ad}', '\u{e000}', '\u{a0}',
            '\u{2028}',
        ] {
            let name = format!("ser{invisible}ver");
            let err = validate_name(&name).unwrap_err().to_string();
            assert!(err.contains("is not allowed"), "{name:?}: {err}");
        }
        assert!(validate_name("Buku-ñ-é-日本").is_ok());
        assert!(validate_name(&"n".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_name(&"n".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
