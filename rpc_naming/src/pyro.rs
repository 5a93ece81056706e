//! The name server as Pyro4 sees it, both ways.
//!
//! - [`PyroNameServer`]: the `Pyro.NameServer` object this name server shows
//!   Pyro4 clients on its port (Python's `Pyro4.locateNS()`, `PYRONAME:`
//!   proxies, `python -m Pyro4.nsc`): `lookup`, `register`, `list`,
//!   `remove`, `count`, `ping`, with Pyro4's arguments and errors, over the
//!   same table tarpc clients use. A server of this workspace is shown as
//!   `PYRO:<name>@<its address>`.
//! - [`PyroNaming`]: this workspace's side of a Python name server
//!   (`python -m Pyro4.naming`), what [`crate::NameServer`] uses when the
//!   name server it connects to turns out to be one.
//!
//! Which one a name server is: both answer Pyro4, and this one's
//! `Pyro.NameServer` offers one method more, [`TARPC_MARK`], which a Python
//! name server does not have. Every server of this workspace offers it
//! (see [`crate::transport::PyroObject`]), so that a Rust client given a
//! Pyro URI can tell a Rust server and speak tarpc to it.

use pyro4_wire::serpent::Value;
use pyro4_wire::{Proxy, ProxyError, PyroException, PyroUri};
use tokio::sync::Mutex;

use crate::server::{NamingServer, compile};
use crate::{Error, Location, NamingError, Result, validate_name};

/// The object id of a name server, in Python and here.
pub const NAME_SERVER_ID: &str = "Pyro.NameServer";
/// The extra method that marks a server of this workspace (name server or
/// not) to Pyro4 clients: it also speaks tarpc, on the same port.
pub const TARPC_MARK: &str = "speaks_tarpc";

/// Methods of `Pyro.NameServer` served here: Pyro4's (the transport adds
/// [`TARPC_MARK`]).
const METHODS: &[&str] = &[
    "lookup",
    "register",
    "list",
    "remove",
    "count",
    "ping",
    "set_metadata",
];

/// The `Pyro.NameServer` object over the name table.
pub struct PyroNameServer(pub NamingServer);

fn naming_error(err: NamingError) -> PyroException {
    PyroException::new("Pyro4.errors.NamingError", err.to_string())
}

fn type_error(what: &str) -> PyroException {
    PyroException::new("builtins.TypeError", what)
}

/// An optional string argument (absent or None: `None`).
fn optional_str<'a>(
    call: &'a pyro4_wire::Call,
    index: usize,
    name: &str,
) -> Result<Option<&'a str>, PyroException> {
    match call.arg(index, name) {
        None | Some(Value::None) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(type_error(&format!("{name} must be a str"))),
    }
}

fn required_str<'a>(
    call: &'a pyro4_wire::Call,
    index: usize,
    name: &str,
) -> Result<&'a str, PyroException> {
    optional_str(call, index, name)?.ok_or_else(|| type_error(&format!("missing argument: {name}")))
}

/// Python's truth value of an optional argument.
fn flag(call: &pyro4_wire::Call, index: usize, name: &str) -> bool {
    match call.arg(index, name) {
        None | Some(Value::None | Value::Bool(false)) => false,
        Some(Value::Int(i)) => *i != 0.into(),
        Some(Value::Str(s)) => !s.is_empty(),
        Some(Value::List(v) | Value::Tuple(v) | Value::Set(v)) => !v.is_empty(),
        Some(Value::Dict(v)) => !v.is_empty(),
        Some(_) => true,
    }
}

impl PyroNameServer {
    fn lookup(&self, call: &pyro4_wire::Call) -> Result<Value, PyroException> {
        let name = required_str(call, 0, "name")?;
        let location = self
            .0
            .location(name)
            .ok_or_else(|| naming_error(NamingError::UnknownName(name.to_owned())))?;
        let uri = location.pyro_uri(name).to_value();
        Ok(if flag(call, 1, "return_metadata") {
            Value::Tuple(vec![uri, Value::List(vec![])])
        } else {
            uri
        })
    }

    fn register(&self, call: &pyro4_wire::Call) -> Result<Value, PyroException> {
        let name = required_str(call, 0, "name")?;
        let uri = call
            .arg(1, "uri")
            .ok_or_else(|| type_error("missing argument: uri"))?;
        let uri = PyroUri::from_value(uri).map_err(|err| type_error(&err.to_string()))?;
        if flag(call, 3, "metadata") {
            return Err(naming_error(NamingError::Metadata));
        }
        self.0
            .insert(name.to_owned(), Location::Pyro(uri), flag(call, 2, "safe"))
            .map_err(naming_error)?;
        Ok(Value::None)
    }

    fn list(&self, call: &pyro4_wire::Call) -> Result<Value, PyroException> {
        let prefix = optional_str(call, 0, "prefix")?;
        let regex = optional_str(call, 1, "regex")?;
        let by_metadata = [(2, "metadata_all"), (3, "metadata_any")]
            .iter()
            .filter(|(i, name)| !matches!(call.arg(*i, name), None | Some(Value::None)))
            .count();
        let filters = usize::from(prefix.is_some()) + usize::from(regex.is_some()) + by_metadata;
        if filters > 1 {
            return Err(PyroException::new(
                "builtins.ValueError",
                "you can only filter on one thing at a time",
            ));
        }
        let found = match (prefix, regex) {
            // No name carries metadata here, so no name matches a metadata filter.
            _ if by_metadata > 0 => Vec::new(),
            (Some(prefix), _) => self.0.all(|name| name.starts_with(prefix)),
            (_, Some(pattern)) => {
                let regex = compile(pattern).map_err(naming_error)?;
                self.0.all(|name| regex.is_match(name))
            }
            _ => self.0.all(|_| true),
        };
        let with_metadata = flag(call, 4, "return_metadata");
        Ok(Value::Dict(
            found
                .into_iter()
                .map(|(name, location)| {
                    let uri = Value::Str(location.pyro_uri(&name).to_string());
                    let entry = if with_metadata {
                        Value::Tuple(vec![uri, Value::List(vec![])])
                    } else {
                        uri
                    };
                    (Value::Str(name), entry)
                })
                .collect(),
        ))
    }

    fn remove(&self, call: &pyro4_wire::Call) -> Result<Value, PyroException> {
        let removed = if let Some(name) = optional_str(call, 0, "name")?.filter(|n| !n.is_empty()) {
            self.0.remove_where(|n| n == name)
        } else if let Some(prefix) = optional_str(call, 1, "prefix")?.filter(|p| !p.is_empty()) {
            self.0.remove_where(|n| n.starts_with(prefix))
        } else if let Some(pattern) = optional_str(call, 2, "regex")?.filter(|p| !p.is_empty()) {
            let regex = compile(pattern).map_err(naming_error)?;
            self.0.remove_where(|n| regex.is_match(n))
        } else {
            0
        };
        Ok(Value::Int(removed.into()))
    }
}

impl pyro4_wire::daemon::Object for PyroNameServer {
    fn methods(&self) -> &[&'static str] {
        METHODS
    }

    async fn invoke(&self, call: pyro4_wire::Call) -> Result<Value, PyroException> {
        match call.method.as_str() {
            "lookup" => self.lookup(&call),
            "register" => self.register(&call),
            "list" => self.list(&call),
            "remove" => self.remove(&call),
            "count" => Ok(Value::Int(self.0.all(|_| true).len().into())),
            "set_metadata" => Err(naming_error(NamingError::Metadata)),
            "ping" => Ok(Value::None),
            other => Err(PyroException::new(
                "builtins.AttributeError",
                format!("no method {other}"),
            )),
        }
    }
}

/// A connection to a Python name server: a proxy for its
/// `Pyro.NameServer`, connected again once when a call finds it broken.
#[derive(Debug)]
pub struct PyroNaming {
    uri: PyroUri,
    proxy: Mutex<Option<Proxy>>,
}

/// What to make of a Python name server's answer.
fn from_remote(addr: &str, err: ProxyError) -> Error {
    if let ProxyError::Remote(exception) = &err
        && exception.class == "Pyro4.errors.NamingError"
    {
        let message = &exception.message;
        if let Some(name) = message.strip_prefix("unknown name: ") {
            return Error::Naming(NamingError::UnknownName(name.to_owned()));
        }
        if let Some(name) = message.strip_prefix("name already registered: ") {
            return Error::Naming(NamingError::AlreadyRegistered(name.to_owned()));
        }
    }
    Error::PyroNameServer {
        addr: addr.to_owned(),
        source: err,
    }
}

impl PyroNaming {
    /// Wraps `proxy`, connected to `Pyro.NameServer`.
    pub fn new(proxy: Proxy) -> Self {
        PyroNaming {
            uri: proxy.uri().clone(),
            proxy: Mutex::new(Some(proxy)),
        }
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.uri.host, self.uri.port)
    }

    /// Calls `method` on the name server, connecting again once if the
    /// connection is found broken.
    async fn call(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(&str, Value)>,
    ) -> Result<Value> {
        let kwargs: Vec<(String, Value)> =
            kwargs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let mut slot = self.proxy.lock().await;
        if let Some(proxy) = slot.as_mut() {
            match proxy.call(method, args.clone(), kwargs.clone()).await {
                Err(err) if err.is_broken() => {
                    tracing::debug!(%err, "Pyro4 name server connection broken; reconnecting");
                }
                done => return done.map_err(|err| from_remote(&self.addr(), err)),
            }
        }
        *slot = None;
        let proxy = slot.insert(
            Proxy::connect(&self.uri)
                .await
                .map_err(|err| from_remote(&self.addr(), err))?,
        );
        proxy
            .call(method, args, kwargs)
            .await
            .map_err(|err| from_remote(&self.addr(), err))
    }

    pub async fn ping(&self) -> Result<()> {
        self.call("ping", vec![], vec![]).await.map(drop)
    }

    pub async fn lookup(&self, name: &str) -> Result<Location> {
        let found = self.call("lookup", vec![Value::str(name)], vec![]).await?;
        PyroUri::from_value(&found)
            .map(Location::Pyro)
            .map_err(|err| self.protocol(err.to_string()))
    }

    pub async fn register(&self, name: &str, location: &Location, safe: bool) -> Result<()> {
        validate_name(name)?;
        let uri = Value::Str(location.pyro_uri(name).to_string());
        self.call(
            "register",
            vec![Value::str(name), uri],
            vec![("safe", Value::Bool(safe))],
        )
        .await
        .map(drop)
    }

    /// Every registration, filtered by `prefix` or `regex`, sorted by name.
    /// A name whose URI this program cannot use (a Unix socket, say) is
    /// listed with the reason instead of failing the whole listing.
    pub async fn list(&self, filter: &crate::ListFilter) -> Result<Vec<(String, Location)>> {
        let kwargs = match filter {
            crate::ListFilter::Prefix(p) if p.is_empty() => vec![],
            crate::ListFilter::Prefix(p) => vec![("prefix", Value::str(p))],
            crate::ListFilter::Regex(r) => vec![("regex", Value::str(r))],
        };
        let Value::Dict(entries) = self.call("list", vec![], kwargs).await? else {
            return Err(self.protocol("list did not answer with a dict".into()));
        };
        let mut all = Vec::with_capacity(entries.len());
        for (name, uri) in entries {
            let (Value::Str(name), Value::Str(uri)) = (name, uri) else {
                return Err(self.protocol("list answered with a non-string entry".into()));
            };
            let location = PyroUri::parse(&uri)
                .map(Location::Pyro)
                .map_err(|err| self.protocol(err.to_string()))?;
            all.push((name, location));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    pub async fn remove(&self, name: &str) -> Result<usize> {
        self.count_of(self.call("remove", vec![Value::str(name)], vec![]).await?)
    }

    pub async fn remove_matching(&self, pattern: &str) -> Result<usize> {
        let removed = self
            .call("remove", vec![], vec![("regex", Value::str(pattern))])
            .await?;
        self.count_of(removed)
    }

    fn count_of(&self, value: Value) -> Result<usize> {
        match value {
            Value::Int(n) => {
                usize::try_from(n).map_err(|_| self.protocol("a count out of range".into()))
            }
            _ => Err(self.protocol("remove did not answer with a count".into())),
        }
    }

    fn protocol(&self, reason: String) -> Error {
        Error::Protocol {
            addr: self.addr(),
            reason,
        }
    }
}
