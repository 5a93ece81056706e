//! The client side of a Python name server (`python -m Pyro4.naming`), over
//! Pyro4: what [`crate::NameServerClient`] uses when the name server it
//! connects to turns out to be one.

use plumbing::tls::ClientTls;
use pyro4_wire::serpent::Value;
use pyro4_wire::{Proxy, ProxyError, PyroUri};
use tokio::sync::Mutex;

use crate::{Error, Location, NamingError, Result, validate_name};

/// A connection to a Python name server: a proxy for its
/// `Pyro.NameServer`, connected again once when a call finds it broken.
#[derive(Debug)]
pub struct PyroNameServerClient {
    uri: PyroUri,
    proxy: Mutex<Option<Proxy>>,
    tls: Option<ClientTls>,
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
    Error::PyroNameServerRpc {
        addr: addr.to_owned(),
        source: err,
    }
}

/// Strings as the list Python takes them as.
fn strings(items: &[String]) -> Value {
    Value::List(items.iter().map(|item| Value::str(item)).collect())
}

impl PyroNameServerClient {
    /// Wraps `proxy`, connected to `Pyro.NameServer` (with `tls`, which it
    /// connects again with).
    pub fn new(proxy: Proxy, tls: Option<ClientTls>) -> Self {
        PyroNameServerClient {
            uri: proxy.uri().clone(),
            proxy: Mutex::new(Some(proxy)),
            tls,
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
            Proxy::connect_with(&self.uri, self.tls.as_ref())
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
            crate::ListFilter::MetadataAll(tags) => vec![("metadata_all", strings(tags))],
            crate::ListFilter::MetadataAny(tags) => vec![("metadata_any", strings(tags))],
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

    pub async fn set_metadata(&self, name: &str, metadata: &[String]) -> Result<()> {
        self.call(
            "set_metadata",
            vec![Value::str(name), strings(metadata)],
            vec![],
        )
        .await
        .map(drop)
    }

    /// Where `name` leads, and its metadata, sorted: one `lookup` with
    /// `return_metadata`.
    pub async fn lookup_with_metadata(&self, name: &str) -> Result<(Location, Vec<String>)> {
        let found = self
            .call(
                "lookup",
                vec![Value::str(name)],
                vec![("return_metadata", Value::Bool(true))],
            )
            .await?;
        let not_a_pair = || self.protocol("lookup did not answer (uri, metadata)".into());
        let (uri, tags) = match &found {
            Value::Tuple(pair) | Value::List(pair) => match pair.as_slice() {
                [
                    uri,
                    Value::List(tags) | Value::Tuple(tags) | Value::Set(tags),
                ] => (uri, tags),
                _ => return Err(not_a_pair()),
            },
            _ => return Err(not_a_pair()),
        };
        let location = PyroUri::from_value(uri)
            .map(Location::Pyro)
            .map_err(|err| self.protocol(err.to_string()))?;
        let mut tags: Vec<String> = tags
            .iter()
            .map(|tag| tag.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| self.protocol("metadata that is not strings".into()))?;
        tags.sort();
        Ok((location, tags))
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
