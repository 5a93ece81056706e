//! Pyro4's JSON serializer, the other one a default daemon accepts.
//!
//! A JSON payload carries the same Python values as serpent, without tuples
//! and sets (both become arrays) and with string keys only. A call is an
//! object `{"object", "method", "params", "kwargs"}` instead of serpent's
//! 4-tuple. Numbers of any size are read exactly (serde_json's
//! `arbitrary_precision`).

use num_bigint::BigInt;

use crate::serpent::{MAX_DEPTH, Value};

/// Why a payload is not JSON Pyro4 could have sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("{0}")]
    Syntax(String),
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Reads a JSON payload as a [`Value`] (arrays become lists).
///
/// ```
/// use pyro4_wire::{json, serpent::Value};
/// assert_eq!(json::loads(br#"["a", 1, null]"#).unwrap(),
///            Value::List(vec![Value::str("a"), Value::Int(1.into()), Value::None]));
/// ```
pub fn loads(payload: &[u8]) -> Result<Value, JsonError> {
    // serde_json has its own recursion limit (128), below MAX_DEPTH, so a
    // deep document is an error here rather than a stack overflow.
    let parsed: serde_json::Value =
        serde_json::from_slice(payload).map_err(|err| JsonError::Syntax(err.to_string()))?;
    from_json(parsed, 0)
}

fn from_json(json: serde_json::Value, depth: usize) -> Result<Value, JsonError> {
    if depth > MAX_DEPTH {
        return Err(JsonError::TooDeep);
    }
    Ok(match json {
        serde_json::Value::Null => Value::None,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            let text = n.to_string();
            match text.parse::<BigInt>() {
                Ok(int) => Value::Int(int),
                Err(_) => Value::Float(text.parse().map_err(|_| {
                    JsonError::Syntax(format!("{text} is not a number Python reads"))
                })?),
            }
        }
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(items) => Value::List(
            items
                .into_iter()
                .map(|item| from_json(item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => Value::Dict(
            map.into_iter()
                .map(|(k, v)| Ok((Value::Str(k), from_json(v, depth + 1)?)))
                .collect::<Result<_, JsonError>>()?,
        ),
    })
}

/// Writes `value` as Python's `json.dumps(value, ensure_ascii=False)` does:
/// tuples and sets as arrays, non-string dict keys as their text, and
/// non-finite floats as Python writes them (`NaN`, `Infinity`).
///
/// ```
/// use pyro4_wire::{json, serpent::Value};
/// let value = Value::Tuple(vec![Value::str("é"), Value::Float(1.5)]);
/// assert_eq!(json::dumps(&value), "[\"é\", 1.5]".as_bytes());
/// ```
pub fn dumps(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    write(value, &mut out);
    out.into_bytes()
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::None => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f.is_infinite() => {
            out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Value::Float(f) => out.push_str(&format!("{f:?}")),
        Value::Str(s) => write_str(s, out),
        Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Dict(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match k {
                    Value::Str(s) => write_str(s, out),
                    other => write_str(&String::from_utf8_lossy(&dumps(other)), out),
                }
                out.push_str(": ");
                write(v, out);
            }
            out.push('}');
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_json_call() {
        let call =
            br#"{"object": "server", "method": "welcomeMessage", "params": ["GO"], "kwargs": {}}"#;
        let value = loads(call).unwrap();
        assert_eq!(value.get("method"), Some(&Value::str("welcomeMessage")));
        assert_eq!(
            value.get("params"),
            Some(&Value::List(vec![Value::str("GO")]))
        );
    }

    #[test]
    fn huge_integers_and_deep_nesting() {
        let big = "9".repeat(400);
        assert_eq!(
            loads(big.as_bytes()).unwrap(),
            Value::Int(big.parse().unwrap())
        );
        let deep = "[".repeat(100_000);
        assert!(loads(deep.as_bytes()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = loads(&bytes);
        }

        #[test]
        fn strings_round_trip(text in any::<String>()) {
            let value = Value::List(vec![Value::Str(text)]);
            prop_assert_eq!(loads(&dumps(&value)).unwrap(), value);
        }
    }
}
