//! The name server's Pyro4 face: the `Pyro.NameServer` object it shows
//! Pyro4 clients on its port (Python's `Pyro4.locateNS()`, `PYRONAME:`
//! proxies, `python -m Pyro4.nsc`): `lookup`, `register`, `list`,
//! `remove`, `count`, `ping`, with Pyro4's arguments and errors, over the
//! same table tarpc clients use. A server of this workspace is shown as
//! `PYRO:<name>@<its address>`.

use pyro4_wire::serpent::Value;
use pyro4_wire::{PyroException, PyroUri};

use crate::table::{NameTable, compile};
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

impl pyro4_wire::daemon::Object for PyroNameService {
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
