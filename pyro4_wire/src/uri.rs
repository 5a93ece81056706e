//! Pyro URIs: `PYRO:objectid@host:port`, where an object lives.
//!
//! A name server hands URIs out; on the wire they travel as a class dict
//! (`{'__class__':'Pyro4.core.URI','state':('PYRO',objid,None,host,port)}`),
//! and as plain strings in listings and `register` calls.

use std::fmt;

use crate::serpent::Value;

/// Where a Pyro object lives: its id and the daemon's TCP address.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PyroUri {
    pub object: String,
    pub host: String,
    pub port: u16,
}

/// Why text or a value is not a URI this program can connect to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid Pyro URI {uri:?}: {reason}")]
pub struct UriError {
    pub uri: String,
    pub reason: &'static str,
}

impl PyroUri {
    /// Reads `PYRO:objectid@host:port` (an IPv6 host in brackets).
    ///
    /// ```
    /// use pyro4_wire::PyroUri;
    /// let uri = PyroUri::parse("PYRO:obj_1@localhost:45678").unwrap();
    /// assert_eq!((uri.object.as_str(), uri.host.as_str(), uri.port), ("obj_1", "localhost", 45678));
    /// assert_eq!(uri.to_string(), "PYRO:obj_1@localhost:45678");
    /// assert!(PyroUri::parse("PYRONAME:server").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<PyroUri, UriError> {
        let invalid = |reason| UriError {
            uri: text.chars().take(300).collect(),
            reason,
        };
        let rest = text
            .strip_prefix("PYRO:")
            .ok_or_else(|| invalid("only PYRO:objectid@host:port is supported"))?;
        let (object, location) = rest
            .rsplit_once('@')
            .ok_or_else(|| invalid("no @host:port"))?;
        if object.is_empty() {
            return Err(invalid("no object id"));
        }
        if location.starts_with("./u:") {
            return Err(invalid("Unix domain sockets are not supported"));
        }
        let (host, port) = location
            .rsplit_once(':')
            .ok_or_else(|| invalid("no port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = port
            .parse()
            .map_err(|_| invalid("the port is not a number"))?;
        Ok(PyroUri {
            object: object.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// The URI as Pyro sends it in a reply: a class dict.
    pub fn to_value(&self) -> Value {
        Value::Dict(vec![
            (Value::str("__class__"), Value::str("Pyro4.core.URI")),
            (
                Value::str("state"),
                Value::Tuple(vec![
                    Value::str("PYRO"),
                    Value::str(&self.object),
                    Value::None,
                    Value::str(&self.host),
                    Value::Int(self.port.into()),
                ]),
            ),
        ])
    }

    /// Reads a URI from a reply or an argument: a class dict or a string.
    pub fn from_value(value: &Value) -> Result<PyroUri, UriError> {
        if let Some(text) = value.as_str() {
            return PyroUri::parse(text);
        }
        let invalid = |reason| UriError {
            uri: String::from_utf8_lossy(&crate::serpent::dumps(value))
                .chars()
                .take(300)
                .collect(),
            reason,
        };
        if value.get("__class__").and_then(Value::as_str) != Some("Pyro4.core.URI") {
            return Err(invalid("neither a string nor a Pyro4.core.URI"));
        }
        let state = match value.get("state") {
            Some(Value::Tuple(items) | Value::List(items)) => items.as_slice(),
            _ => return Err(invalid("no state")),
        };
        let [protocol, object, _socket, host, port] = state else {
            return Err(invalid("its state is not 5 items"));
        };
        let (Some("PYRO"), Some(object), Some(host), Value::Int(port)) =
            (protocol.as_str(), object.as_str(), host.as_str(), port)
        else {
            return Err(invalid("only PYRO:objectid@host:port is supported"));
        };
        let port = u16::try_from(port).map_err(|_| invalid("the port is out of range"))?;
        Ok(PyroUri {
            object: object.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for PyroUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "PYRO:{}@[{}]:{}", self.object, self.host, self.port)
        } else {
            write!(f, "PYRO:{}@{}:{}", self.object, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// URIs come from peers (replies, `register` arguments): any text
        /// is read or refused, never a panic; what is read writes back the
        /// same.
        #[test]
        fn any_text_is_read_or_refused(text in "(PYRO:)?[a-z_.@:\\[\\]0-9/ ]{0,40}") {
            if let Ok(uri) = PyroUri::parse(&text) {
                prop_assert_eq!(PyroUri::parse(&uri.to_string()), Ok(uri));
            }
        }

        #[test]
        fn uris_round_trip(object in "[a-zA-Z0-9_.]{1,30}", host in "[a-z0-9.]{1,20}", port in any::<u16>()) {
            let uri = PyroUri { object, host, port };
            prop_assert_eq!(PyroUri::parse(&uri.to_string()), Ok(uri.clone()));
            prop_assert_eq!(PyroUri::from_value(&uri.to_value()), Ok(uri));
        }
    }

    #[test]
    fn uris_read_and_write() {
        let uri = PyroUri::parse("PYRO:Pyro.NameServer@[::1]:9090").unwrap();
        assert_eq!(uri.host, "::1");
        assert_eq!(uri.to_string(), "PYRO:Pyro.NameServer@[::1]:9090");
        assert_eq!(PyroUri::from_value(&uri.to_value()).unwrap(), uri);
        for bad in [
            "PYRO:@h:1",
            "PYRO:x@h",
            "PYRO:x@h:99999",
            "PYRO:x@:1",
            "PYRO:x@./u:/tmp/s",
            "x@h:1",
        ] {
            assert!(PyroUri::parse(bad).is_err(), "{bad}");
        }
    }
}
