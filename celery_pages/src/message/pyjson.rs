//! JSON as Python's `json` module (and so kombu) writes and reads it: with
//! `NaN`, `Infinity` and `-Infinity` for the floats JSON has no number
//! for. `add(1e308, 1e308)` is `inf` in Python, and `float("nan")` is a
//! valid task argument there, so a worker that read only strict JSON would
//! refuse messages a Python worker runs.
//!
//! serde_json's values cannot hold those floats, so this module carries
//! each one as a number whose text no float writer produces, one with an
//! exponent of a hundred million ([`nan`], [`infinity`]): reading turns the
//! three bare words into those numbers, writing turns them back. Only
//! tokens outside strings are touched, so a string `"NaN"` stays a string.
//! Were one of these numbers ever read by Python, `1e+100000000` and
//! `-1e+100000000` would still be its infinities.
//!
//! ```
//! use celery_pages::message::pyjson;
//! let value = pyjson::from_slice(br#"[NaN, -Infinity, "NaN"]"#).unwrap();
//! assert!(pyjson::float(&value[0]).unwrap().is_nan());
//! assert_eq!(pyjson::float(&value[1]), Some(f64::NEG_INFINITY));
//! assert_eq!(pyjson::to_string(&value), r#"[NaN,-Infinity,"NaN"]"#);
//! ```

use serde_json::{Number, Value};

const NAN: &str = "-0e-100000000";
const INFINITY: &str = "1e+100000000";
const NEG_INFINITY: &str = "-1e+100000000";
/// The bare words Python writes, and what this module carries them as.
const WORDS: [(&str, &str); 3] = [
    ("NaN", NAN),
    ("Infinity", INFINITY),
    ("-Infinity", NEG_INFINITY),
];

fn number(text: &str) -> Value {
    Value::Number(text.parse::<Number>().expect("a valid JSON number"))
}

/// Python's `float("nan")`.
pub fn nan() -> Value {
    number(NAN)
}

/// Python's `float("inf")` (or `-inf`, for `negative`).
pub fn infinity(negative: bool) -> Value {
    number(if negative { NEG_INFINITY } else { INFINITY })
}

/// A float as a value: finite ones as JSON numbers, the others as above.
pub fn float_value(float: f64) -> Value {
    match Number::from_f64(float) {
        Some(n) => Value::Number(n),
        None if float.is_nan() => nan(),
        None => infinity(float < 0.0),
    }
}

/// The float a value holds, non-finite ones included; `None` for an
/// integer or anything else.
pub fn float(value: &Value) -> Option<f64> {
    let Value::Number(n) = value else {
        return None;
    };
    match n.as_str() {
        NAN => Some(f64::NAN),
        INFINITY => Some(f64::INFINITY),
        NEG_INFINITY => Some(f64::NEG_INFINITY),
        _ if n.is_f64() => n.as_f64(),
        _ => None,
    }
}

/// Python's `repr` of a non-finite float, if `value` is one.
pub fn non_finite_repr(value: &Value) -> Option<&'static str> {
    let Value::Number(n) = value else {
        return None;
    };
    match n.as_str() {
        NAN => Some("nan"),
        INFINITY => Some("inf"),
        NEG_INFINITY => Some("-inf"),
        _ => None,
    }
}

/// Reads JSON as Python writes it.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice(&replace_outside_strings(bytes, false))
}

/// Writes JSON as Python does.
pub fn to_string(value: &Value) -> String {
    let text = value.to_string();
    let bytes = replace_outside_strings(text.as_bytes(), true);
    String::from_utf8(bytes.into_owned()).expect("only ASCII words are swapped")
}

/// `bytes` with each bare word (reading) or each stand-in number (writing)
/// outside JSON strings replaced by the other.
fn replace_outside_strings(bytes: &[u8], writing: bool) -> std::borrow::Cow<'_, [u8]> {
    let finds = |rest: &[u8]| {
        WORDS.iter().find_map(|(word, stand_in)| {
            let (from, to) = if writing {
                (stand_in, word)
            } else {
                (word, stand_in)
            };
            rest.starts_with(from.as_bytes())
                .then_some((from.len(), to))
        })
    };
    // A token starts after a byte that cannot be part of one.
    let token_start = |i: usize| {
        i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b".+-".contains(&bytes[i - 1]))
    };
    // Most bodies hold none of them: no copy then.
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if let Some((len, to)) = (b"-NI1".contains(&byte) && token_start(i))
            .then(|| finds(&bytes[i..]))
            .flatten()
            .filter(|(len, _)| !bytes.get(i + len).is_some_and(u8::is_ascii_alphanumeric))
        {
            let out = out.get_or_insert_with(|| bytes[..i].to_vec());
            out.extend_from_slice(to.as_bytes());
            i += len;
            continue;
        }
        if let Some(out) = out.as_mut() {
            out.push(byte);
        }
        i += 1;
    }
    match out {
        Some(out) => std::borrow::Cow::Owned(out),
        None => std::borrow::Cow::Borrowed(bytes),
    }
}

/// Python's name for the type of a JSON value.
pub fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(_) if float(value).is_some() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// A number of seconds as Python holds it: an int when it is whole (a
/// `time_limit=1` is the int 1), else a float.
pub fn seconds_value(seconds: f64) -> Value {
    if seconds.fract() == 0.0 && seconds.abs() < 9e15 {
        Value::from(seconds as i64)
    } else {
        float_value(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn words_in_strings_and_keys_stay_words() {
        let text = br#"{"NaN": "Infinity", "a\"NaN": [NaN, 1.5, -Infinity, Infinity]}"#;
        let value = from_slice(text).unwrap();
        assert_eq!(value["NaN"], json!("Infinity"));
        assert_eq!(float(&value["a\"NaN"][2]), Some(f64::NEG_INFINITY));
        assert_eq!(
            to_string(&value),
            r#"{"NaN":"Infinity","a\"NaN":[NaN,1.5,-Infinity,Infinity]}"#
        );
    }

    #[test]
    fn finite_floats_and_integers_are_untouched() {
        assert_eq!(float(&json!(1.5)), Some(1.5));
        assert_eq!(float(&json!(3)), None);
        assert_eq!(float(&float_value(f64::INFINITY)), Some(f64::INFINITY));
        assert_eq!(to_string(&json!([1, -1, 1e5])), "[1,-1,100000.0]");
        // A stand-in's text inside a longer number is that number.
        let long = from_slice(b"[21e+100000000, -21e+100000000]").unwrap();
        assert_eq!(to_string(&long), "[21e+100000000,-21e+100000000]");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        /// Whatever a peer sends, reading gives a value or an error, and
        /// what reads writes back to JSON Python reads the same way.
        #[test]
        fn any_bytes_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(value) = from_slice(&bytes) {
                let again = from_slice(to_string(&value).as_bytes()).unwrap();
                prop_assert_eq!(to_string(&again), to_string(&value));
            }
        }

        /// Values built from words and numbers round-trip.
        #[test]
        fn python_floats_round_trip(floats in proptest::collection::vec(
            prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), any::<f64>()], 0..8)
        ) {
            let value = Value::Array(floats.iter().map(|f| float_value(*f)).collect());
            let back = from_slice(to_string(&value).as_bytes()).unwrap();
            for (f, v) in floats.iter().zip(back.as_array().unwrap()) {
                let read = float(v).unwrap();
                prop_assert!(read == *f || (read.is_nan() && f.is_nan()));
            }
        }
    }
}
