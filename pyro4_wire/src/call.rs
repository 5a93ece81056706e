//! What a payload means: calls, results and exceptions, in each serializer
//! a Pyro4 daemon accepts by default (serpent, JSON, marshal).
//!
//! Pyro4 sends a call as serpent's `(objectid, method, args, kwargs)`,
//! marshal's `(objectid, method, [args], kwargs)` or JSON's
//! `{"object", "method", "params", "kwargs"}`, and answers in the
//! serializer of the request (a default Python client refuses any other).
//! An exception travels as a class dict; Python rebuilds it only for
//! `builtins.*` and `Pyro4.errors.*` classes.

use std::fmt;

use crate::message::{SERIALIZER_JSON, SERIALIZER_MARSHAL, SERIALIZER_SERPENT};
use crate::serpent::Value;
use crate::{json, marshal, serpent};

/// A serializer this crate reads and writes. Pickle, dill, cloudpickle and
/// msgpack are refused by id, never deserialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serializer {
    Serpent,
    Json,
    Marshal,
}

/// Why a payload cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("serializer {0} is not accepted here (only serpent, 1, json, 2, and marshal, 3)")]
    Serializer(u16),
    #[error("bad marshal: {0}")]
    Marshal(#[from] marshal::MarshalError),
    #[error("bad serpent: {0}")]
    Serpent(#[from] serpent::SerpentError),
    #[error("bad json: {0}")]
    Json(#[from] json::JsonError),
    #[error("not a Pyro call: {0}")]
    NotACall(&'static str),
}

impl Serializer {
    /// The serializer with Pyro's id `id`, if it is one spoken here.
    pub fn from_id(id: u16) -> Result<Serializer, PayloadError> {
        match id {
            SERIALIZER_SERPENT => Ok(Serializer::Serpent),
            SERIALIZER_JSON => Ok(Serializer::Json),
            SERIALIZER_MARSHAL => Ok(Serializer::Marshal),
            other => Err(PayloadError::Serializer(other)),
        }
    }

    pub fn id(self) -> u16 {
        match self {
            Serializer::Serpent => SERIALIZER_SERPENT,
            Serializer::Json => SERIALIZER_JSON,
            Serializer::Marshal => SERIALIZER_MARSHAL,
        }
    }

    pub fn loads(self, payload: &[u8]) -> Result<Value, PayloadError> {
        Ok(match self {
            Serializer::Serpent => serpent::loads(payload)?,
            Serializer::Json => json::loads(payload)?,
            Serializer::Marshal => marshal::loads(payload)?,
        })
    }

    pub fn dumps(self, value: &Value) -> Vec<u8> {
        match self {
            Serializer::Serpent => serpent::dumps(value),
            Serializer::Json => json::dumps(value),
            Serializer::Marshal => marshal::dumps(value),
        }
    }

    /// Reads a call (an INVOKE's payload).
    pub fn loads_call(self, payload: &[u8]) -> Result<Call, PayloadError> {
        let value = self.loads(payload)?;
        let (object, method, args, kwargs) = match (self, value) {
            (Serializer::Serpent | Serializer::Marshal, Value::Tuple(items)) => {
                match <[Value; 4]>::try_from(items) {
                    Ok([object, method, args, kwargs]) => (object, method, args, kwargs),
                    Err(_) => return Err(PayloadError::NotACall("not a 4-tuple")),
                }
            }
            (Serializer::Json, Value::Dict(pairs)) => {
                let take = |key: &str| {
                    pairs
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(key))
                        .map(|(_, v)| v.clone())
                        .ok_or(PayloadError::NotACall("a key is missing"))
                };
                (
                    take("object")?,
                    take("method")?,
                    take("params")?,
                    take("kwargs")?,
                )
            }
            _ => return Err(PayloadError::NotACall("not a tuple or object")),
        };
        let (Value::Str(object), Value::Str(method)) = (object, method) else {
            return Err(PayloadError::NotACall("object and method must be strings"));
        };
        let (Value::Tuple(args) | Value::List(args)) = args else {
            return Err(PayloadError::NotACall("the arguments are not a sequence"));
        };
        // A batch (`<batch>`) sends None for its keyword arguments.
        let pairs = match kwargs {
            Value::Dict(pairs) => pairs,
            Value::None => Vec::new(),
            _ => {
                return Err(PayloadError::NotACall(
                    "the keyword arguments are not a dict",
                ));
            }
        };
        let kwargs = pairs
            .into_iter()
            .map(|(k, v)| match k {
                Value::Str(k) => Ok((k, v)),
                _ => Err(PayloadError::NotACall("a keyword is not a string")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Call {
            object,
            method,
            args,
            kwargs,
        })
    }

    /// Writes a call as Python's Pyro4 does.
    pub fn dumps_call(self, call: &Call) -> Vec<u8> {
        let kwargs = Value::Dict(
            call.kwargs
                .iter()
                .map(|(k, v)| (Value::str(k), v.clone()))
                .collect(),
        );
        match self {
            Serializer::Serpent => serpent::dumps(&Value::Tuple(vec![
                Value::str(&call.object),
                Value::str(&call.method),
                Value::Tuple(call.args.clone()),
                kwargs,
            ])),
            Serializer::Marshal => marshal::dumps(&Value::Tuple(vec![
                Value::str(&call.object),
                Value::str(&call.method),
                Value::List(call.args.clone()),
                kwargs,
            ])),
            Serializer::Json => json::dumps(&Value::Dict(vec![
                (Value::str("object"), Value::str(&call.object)),
                (Value::str("method"), Value::str(&call.method)),
                (Value::str("params"), Value::List(call.args.clone())),
                (Value::str("kwargs"), kwargs),
            ])),
        }
    }
}

/// One remote call.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub object: String,
    pub method: String,
    pub args: Vec<Value>,
    pub kwargs: Vec<(String, Value)>,
}

impl Call {
    /// The argument at `index`, or the keyword argument `name`.
    pub fn arg(&self, index: usize, name: &str) -> Option<&Value> {
        self.args
            .get(index)
            .or_else(|| self.kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| v))
    }

    /// The arguments bound to a Python method's parameters `params` (after
    /// `self`, none with a default), in their order; or the `TypeError`
    /// Python 3 raises, word for word, for a call that does not fit.
    /// `qualname` is the method's, `Class.method`.
    ///
    /// ```
    /// use pyro4_wire::Call;
    /// use pyro4_wire::serpent::Value;
    /// let call = Call { object: "o".into(), method: "m".into(), args: vec![], kwargs: vec![] };
    /// let err = call.bind("Server.welcomeMessage", &["name"]).unwrap_err();
    /// assert_eq!(err.message, "Server.welcomeMessage() missing 1 required positional argument: 'name'");
    /// ```
    pub fn bind(&self, qualname: &str, params: &[&str]) -> Result<Vec<&Value>, PyroException> {
        let keywords: Vec<&str> = self.kwargs.iter().map(|(key, _)| key.as_str()).collect();
        let sources = python_text::bind(qualname, params, self.args.len(), &keywords)
            .map_err(|message| PyroException::new("builtins.TypeError", message))?;
        Ok(sources
            .into_iter()
            .filter_map(|source| match source {
                python_text::Source::Positional(i) => self.args.get(i),
                python_text::Source::Keyword(i) => self.kwargs.get(i).map(|(_, value)| value),
            })
            .collect())
    }
}

/// An exception as it crosses the wire: its Python class and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub struct PyroException {
    /// The qualified class, `builtins.ValueError` or `Pyro4.errors.NamingError`.
    pub class: String,
    pub message: String,
}

impl PyroException {
    pub fn new(class: &str, message: impl Into<String>) -> Self {
        PyroException {
            class: class.to_owned(),
            message: message.into(),
        }
    }

    /// The class dict Python rebuilds the exception from.
    pub fn to_value(&self) -> Value {
        Value::Dict(vec![
            (Value::str("__class__"), Value::str(&self.class)),
            (Value::str("__exception__"), Value::Bool(true)),
            (
                Value::str("args"),
                Value::Tuple(vec![Value::str(&self.message)]),
            ),
            (Value::str("attributes"), Value::Dict(vec![])),
        ])
    }

    /// Reads an exception payload; its message is what Python's `str()`
    /// would print (the one argument, or the tuple of them).
    pub fn from_value(value: &Value) -> PyroException {
        let class = value
            .get("__class__")
            .and_then(Value::as_str)
            .unwrap_or("builtins.Exception")
            .to_owned();
        let message = match value.get("args") {
            Some(Value::Tuple(args) | Value::List(args)) => match args.as_slice() {
                [] => String::new(),
                [Value::Str(one)] => one.clone(),
                [one] => display(one),
                many => display(&Value::Tuple(many.to_vec())),
            },
            _ => String::new(),
        };
        PyroException { class, message }
    }
}

fn display(value: &Value) -> String {
    let text = serpent::dumps(value);
    String::from_utf8_lossy(&text[serpent::HEADER.len()..]).into_owned()
}

impl fmt::Display for PyroException {
    /// `ValueError: bad` (builtins unqualified, as Python prints them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.class.strip_prefix("builtins.").unwrap_or(&self.class);
        if self.message.is_empty() {
            write!(f, "{class}")
        } else {
            write!(f, "{class}: {}", self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPython 3.11's own messages for `def m(self, a, b, c)` called badly.
    #[test]
    fn arguments_bind_as_python_binds_them() {
        let call = |args: Vec<Value>, kwargs: Vec<(&str, Value)>| Call {
            object: "o".into(),
            method: "m".into(),
            args,
            kwargs: kwargs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        };
        let message = |call: Call, params: &[&str]| call.bind("C.m", params).unwrap_err().message;
        let one = || Value::Int(1.into());
        assert_eq!(
            message(call(vec![one(), one()], vec![]), &["a"]),
            "C.m() takes 2 positional arguments but 3 were given"
        );
        assert_eq!(
            message(call(vec![one()], vec![]), &[]),
            "C.m() takes 1 positional argument but 2 were given"
        );
        assert_eq!(
            message(call(vec![], vec![("x", one())]), &["a"]),
            "C.m() got an unexpected keyword argument 'x'"
        );
        assert_eq!(
            message(call(vec![one()], vec![("a", one())]), &["a"]),
            "C.m() got multiple values for argument 'a'"
        );
        assert_eq!(
            message(call(vec![], vec![]), &["a", "b"]),
            "C.m() missing 2 required positional arguments: 'a' and 'b'"
        );
        assert_eq!(
            message(call(vec![], vec![("b", one())]), &["a", "b", "c", "d"]),
            "C.m() missing 3 required positional arguments: 'a', 'c', and 'd'"
        );
        let fits = call(vec![Value::str("x")], vec![("b", one())]);
        assert_eq!(
            fits.bind("C.m", &["a", "b"]).unwrap(),
            vec![&Value::str("x"), &one()]
        );
    }

    #[test]
    fn the_captured_call_reads() {
        let payload = b"# serpent utf-8 python3.2\n('obj_7f28517ef9434be6805b645f52deda0a','welcomeMessage',('Programming GO',),{})";
        let call = Serializer::Serpent.loads_call(payload).unwrap();
        assert_eq!(call.object, "obj_7f28517ef9434be6805b645f52deda0a");
        assert_eq!(call.method, "welcomeMessage");
        assert_eq!(call.arg(0, "name"), Some(&Value::str("Programming GO")));
        assert_eq!(Serializer::Serpent.dumps_call(&call), payload);
    }

    #[test]
    fn json_calls_round_trip() {
        let call = Call {
            object: "Pyro.NameServer".into(),
            method: "list".into(),
            args: vec![],
            kwargs: vec![("return_metadata".into(), Value::Bool(true))],
        };
        let bytes = Serializer::Json.dumps_call(&call);
        assert_eq!(Serializer::Json.loads_call(&bytes).unwrap(), call);
        assert_eq!(call.arg(0, "return_metadata"), Some(&Value::Bool(true)));
    }

    #[test]
    fn bad_calls_and_serializers_are_refused() {
        assert_eq!(Serializer::from_id(4), Err(PayloadError::Serializer(4)));
        for bad in [
            "('a','b',(),{},5)",
            "['a','b',(),{}]",
            "(1,'b',(),{})",
            "('a','b',5,{})",
            "('a','b',(),{1:2})",
        ] {
            assert!(
                Serializer::Serpent.loads_call(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn exceptions_round_trip() {
        let err = PyroException::new("Pyro4.errors.NamingError", "unknown name: x");
        assert_eq!(PyroException::from_value(&err.to_value()), err);
        assert_eq!(err.to_string(), "Pyro4.errors.NamingError: unknown name: x");
        let value = serpent::loads(
            b"{'__class__':'builtins.ValueError','__exception__':True,'args':('bad',2),'attributes':{}}",
        )
        .unwrap();
        assert_eq!(
            PyroException::from_value(&value).to_string(),
            "ValueError: ('bad',2)"
        );
    }
}
