//! The name server's Pyro4 face: the `Pyro.NameServer` object it shows
//! Pyro4 clients on its port (Python's `Pyro4.locateNS()`, `PYRONAME:`
//! proxies, `python -m Pyro4.nsc`): `lookup`, `register`, `list`,
//! `remove`, `count`, `ping`, with Pyro4's arguments and errors, over the
//! same table tarpc clients use. A server of this workspace is shown as
//! `PYRO:<name>@<its address>`.

use pyro4_wire::serpent::Value;
use pyro4_wire::{PyroException, PyroUri};

use crate::table::{Metadata, NameTable, compile};
use crate::{Location, NamingError};

/// Methods of `Pyro.NameServer` served here: Pyro4's (the transport marks
/// the handshake with [`rpc_transport::TARPC_MARK`]).
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
pub struct PyroNameService(pub NameTable);

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

/// A metadata argument as Python's name server takes it: absent or None is
/// none; any iterable of strings (a set, a list, a tuple); a str is
/// Python's `TypeError` (it would be taken letter by letter).
fn metadata_arg(
    call: &pyro4_wire::Call,
    index: usize,
    name: &str,
) -> Result<Option<Metadata>, PyroException> {
    let items = match call.arg(index, name) {
        None | Some(Value::None) => return Ok(None),
        Some(Value::Str(_)) => {
            return Err(type_error(&format!(
                "{name} should not be a str, but another iterable (set, list, etc)"
            )));
        }
        Some(Value::Set(items) | Value::List(items) | Value::Tuple(items)) => items,
        Some(Value::Dict(items)) => {
            return collect_metadata(items.iter().map(|(key, _)| key));
        }
        Some(other) => {
            return Err(type_error(&format!(
                "'{}' object is not iterable",
                other.python_type()
            )));
        }
    };
    collect_metadata(items.iter())
}

/// Metadata strings (this name server keeps strings only).
fn collect_metadata<'a>(
    items: impl Iterator<Item = &'a Value>,
) -> Result<Option<Metadata>, PyroException> {
    items
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| type_error("metadata must be strings"))
        })
        .collect::<Result<Metadata, _>>()
        .map(Some)
}

/// Metadata as Python's name server returns it: a list.
fn metadata_value(metadata: &Metadata) -> Value {
    Value::List(metadata.iter().map(|m| Value::str(m)).collect())
}

/// The `PyroError` Python's `core.URI(text)` raises for a URI it cannot
/// read, word for word; a URI Python reads but this name server does not
/// keep (`PYRONAME:`, `PYROMETA:`, a Unix socket) says so.
fn invalid_uri(text: &str, err: &pyro4_wire::uri::UriError) -> PyroException {
    static PYTHON_URI: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^(?P<protocol>[Pp][Yy][Rr][Oo][a-zA-Z]*):(?P<object>\S+?)(@(?P<location>.+))?$",
        )
        .expect("a valid pattern")
    });
    let message = match PYTHON_URI.captures(text) {
        None => "invalid uri".to_owned(),
        Some(parts) => {
            let protocol = parts["protocol"].to_uppercase();
            let location = parts.name("location").map(|l| l.as_str());
            let port = location
                .and_then(|l| l.rsplit_once(':'))
                .map(|(_, port)| port);
            match (protocol.as_str(), location, port) {
                ("PYRO", None, _) => "invalid uri".to_owned(),
                ("PYRO" | "PYRONAME" | "PYROMETA", _, Some(port))
                    if !port.is_empty() && port.parse::<i64>().is_err() =>
                {
                    format!("invalid port in uri, port={port}")
                }
                ("PYRO" | "PYRONAME" | "PYROMETA", ..) => format!("invalid uri: {err}"),
                _ => "invalid uri (protocol)".to_owned(),
            }
        }
    };
    PyroException::new("Pyro4.errors.PyroError", message)
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

impl PyroNameService {
    fn lookup(&self, call: &pyro4_wire::Call) -> Result<Value, PyroException> {
        let name = required_str(call, 0, "name")?;
        let (location, metadata) = self
            .0
            .lookup(name)
            .ok_or_else(|| naming_error(NamingError::UnknownName(name.to_owned())))?;
        let uri = location.pyro_uri(name).to_value();
        Ok(if flag(call, 1, "return_metadata") {
            Value::Tuple(vec![uri, metadata_value(&metadata)])
        } else {
            uri
        })
    }

    fn register(&self, call: &pyro4_wire::Call) -> Result<Value, PyroException> {
        let name = required_str(call, 0, "name")?;
        let uri = call
            .arg(1, "uri")
            .ok_or_else(|| type_error("missing argument: uri"))?;
        let uri = match uri {
            Value::Str(text) => PyroUri::parse(text).map_err(|err| invalid_uri(text, &err))?,
            Value::Dict(_) => PyroUri::from_value(uri)
                .map_err(|err| PyroException::new("Pyro4.errors.PyroError", err.to_string()))?,
            _ => return Err(type_error("only URIs or strings can be registered")),
        };
        let metadata = metadata_arg(call, 3, "metadata")?.unwrap_or_default();
        self.0
            .insert(
                name.to_owned(),
                Location::Pyro(uri),
                flag(call, 2, "safe"),
                metadata,
            )
            .map_err(naming_error)?;
        Ok(Value::None)
    }

    fn set_metadata(&self, call: &pyro4_wire::Call) -> Result<Value, PyroException> {
        let name = required_str(call, 0, "name")?;
        let metadata = metadata_arg(call, 1, "metadata")?.unwrap_or_default();
        self.0.set_metadata(name, metadata).map_err(naming_error)?;
        Ok(Value::None)
    }

    fn list(&self, call: &pyro4_wire::Call) -> Result<Value, PyroException> {
        let prefix = optional_str(call, 0, "prefix")?;
        let regex = optional_str(call, 1, "regex")?;
        let given = |i: usize, name: &str| !matches!(call.arg(i, name), None | Some(Value::None));
        let filters = [
            prefix.is_some(),
            regex.is_some(),
            given(2, "metadata_all"),
            given(3, "metadata_any"),
        ];
        if filters.iter().filter(|given| **given).count() > 1 {
            return Err(PyroException::new(
                "builtins.ValueError",
                "you can only filter on one thing at a time",
            ));
        }
        let all = metadata_arg(call, 2, "metadata_all")?;
        let any = metadata_arg(call, 3, "metadata_any")?;
        // Python tests each filter for truth in this order: an empty one
        // filters nothing.
        let found = match (prefix, regex, all, any) {
            (Some(prefix), ..) if !prefix.is_empty() => {
                self.0.all_with_metadata(|name, _| name.starts_with(prefix))
            }
            (_, Some(pattern), ..) if !pattern.is_empty() => {
                let regex = compile(pattern).map_err(naming_error)?;
                self.0.all_with_metadata(|name, _| regex.is_match(name))
            }
            (_, _, Some(all), _) if !all.is_empty() => {
                self.0.all_with_metadata(|_, tags| all.is_subset(tags))
            }
            (.., Some(any)) if !any.is_empty() => {
                self.0.all_with_metadata(|_, tags| !any.is_disjoint(tags))
            }
            _ => self.0.all_with_metadata(|_, _| true),
        };
        let with_metadata = flag(call, 4, "return_metadata");
        Ok(Value::Dict(
            found
                .into_iter()
                .map(|(name, location, metadata)| {
                    let uri = Value::Str(location.pyro_uri(&name).to_string());
                    let entry = if with_metadata {
                        Value::Tuple(vec![uri, metadata_value(&metadata)])
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

impl pyro4_wire::daemon::Object for PyroNameService {
    fn class_name(&self) -> &'static str {
        "NameServer"
    }

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
            "set_metadata" => self.set_metadata(&call),
            "ping" => Ok(Value::None),
            other => Err(PyroException::new(
                "builtins.AttributeError",
                format!("no method {other}"),
            )),
        }
    }
}
