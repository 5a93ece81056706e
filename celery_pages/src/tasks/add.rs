//! The task itself: `add(x, y)` with Python's `+` on JSON values.
//!
//! The chapter's task is `return x + y`, and its real call passes two
//! strings (`add("Kamu sudah membaca 4", " halaman")`), so a port that only
//! added numbers would break it. Python's `+` adds numbers (a bool counts as
//! an int), concatenates strings and lists, and raises `TypeError` for
//! anything else, with messages Python users know; those messages travel to
//! Python callers, who re-raise them.

use num_bigint::BigInt;
use serde_json::Value;

use crate::message::{PyException, pyjson};
use crate::tasks::registry::{TaskContext, TaskOptions, TaskResult};

/// An integer as Python sees it (a bool is 0 or 1), of any size, if the
/// value is one. JSON numbers are read without loss (serde_json's
/// `arbitrary_precision`), so `2**70` arrives as the integer it is.
fn as_int(value: &Value) -> Option<BigInt> {
    match value {
        Value::Bool(b) => Some(BigInt::from(u8::from(*b))),
        Value::Number(n) if pyjson::float(value).is_none() => n.to_string().parse().ok(),
        _ => None,
    }
}

/// A number as a Python float; an integer too large for one is Python's
/// `OverflowError`.
fn as_float(value: &Value) -> Option<Result<f64, PyException>> {
    match pyjson::float(value) {
        Some(float) => Some(Ok(float)),
        None => as_int(value).map(|i| {
            // Decimal text to f64 rounds correctly, as Python's int -> float does.
            let float = i.to_string().parse::<f64>().ok();
            float.filter(|f| f.is_finite()).ok_or_else(|| {
                PyException::builtin("OverflowError", "int too large to convert to float")
            })
        }),
    }
}

/// An integer as a JSON number, exactly (Python reads it back as an int).
fn int_value(i: &BigInt) -> Value {
    serde_json::from_str(&i.to_string()).expect("an integer is a JSON number")
}

/// `x + y` as Python computes it, for values that JSON can carry.
///
/// Integers add exactly, of any size, as Python's do; floats add as
/// Python's, to `inf` past the largest and `nan` from a `nan` (carried as
/// [`crate::message::pyjson`] describes).
///
/// ```
/// use serde_json::json;
/// use celery_pages::tasks::add::python_add;
/// assert_eq!(python_add(&json!(4), &json!(10)).unwrap(), json!(14));
/// assert_eq!(python_add(&json!("Kamu "), &json!("4")).unwrap(), json!("Kamu 4"));
/// let err = python_add(&json!(4), &json!("halaman")).unwrap_err();
/// assert_eq!(err.exc_type, "TypeError");
/// ```
pub fn python_add(x: &Value, y: &Value) -> Result<Value, PyException> {
    match (x, y) {
        (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
        (Value::Array(a), Value::Array(b)) => {
            Ok(Value::Array(a.iter().chain(b).cloned().collect()))
        }
        (Value::String(_), other) => Err(PyException::builtin(
            "TypeError",
            format!(
                "can only concatenate str (not \"{}\") to str",
                pyjson::python_type(other)
            ),
        )),
        (Value::Array(_), other) => Err(PyException::builtin(
            "TypeError",
            format!(
                "can only concatenate list (not \"{}\") to list",
                pyjson::python_type(other)
            ),
        )),
        _ => {
            if let (Some(a), Some(b)) = (as_int(x), as_int(y)) {
                return Ok(int_value(&(a + b)));
            }
            if let (Some(a), Some(b)) = (as_float(x), as_float(y)) {
                // A float sum past the largest float is inf, as in Python.
                return Ok(pyjson::float_value(a? + b?));
            }
            Err(PyException::builtin(
                "TypeError",
                format!(
                    "unsupported operand type(s) for +: '{}' and '{}'",
                    pyjson::python_type(x),
                    pyjson::python_type(y)
                ),
            ))
        }
    }
}

/// The chapter's task, `addTask.add(x, y)`: `return x + y`.
pub fn add(x: Value, y: Value) -> TaskResult<Value> {
    python_add(&x, &y)
}

/// A teaching task, `addTask.slow_add(x, y, seconds)`: `x + y`, after
/// waiting `seconds` (on a timer: no thread is held meanwhile), for time
/// limits and stopping a running task.
pub async fn slow_add(x: Value, y: Value, seconds: f64) -> TaskResult<Value> {
    let wait = std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyException::builtin("ValueError", "sleep length must be non-negative"))?;
    tokio::time::sleep(wait).await;
    python_add(&x, &y)
}

/// A teaching task, `addTask.flaky_add(x, y, failures)`: bound, it raises
/// `ValueError("attempt N failed")` while it has been retried fewer than
/// `failures` times, then returns `x + y`. Registered to retry on
/// `ValueError`, at most 3 times, a second apart ([`flaky_options`]).
pub fn flaky_add(task: TaskContext, x: Value, y: Value, failures: u32) -> TaskResult<Value> {
    if task.retries < failures {
        let attempt = task.retries + 1;
        return Err(PyException::builtin(
            "ValueError",
            format!("attempt {attempt} failed"),
        ));
    }
    python_add(&x, &y)
}

/// `flaky_add`'s options: `autoretry_for=(ValueError,)`, `max_retries=3`,
/// `default_retry_delay=1`.
pub fn flaky_options() -> TaskOptions {
    TaskOptions {
        autoretry_for: vec!["ValueError".into()],
        max_retries: Some(3),
        default_retry_delay: 1.0,
        ..TaskOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    fn add(x: Value, y: Value) -> Result<Value, String> {
        python_add(&x, &y).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_add_like_python() {
        assert_eq!(add(json!(4), json!(10)), Ok(json!(14)));
        assert_eq!(add(json!(-4), json!(1)), Ok(json!(-3)));
        assert_eq!(add(json!(1.5), json!(2)), Ok(json!(3.5)));
        assert_eq!(add(json!(true), json!(1)), Ok(json!(2)));
        assert_eq!(
            add(json!(i64::MAX), json!(1)),
            Ok(json!(9_223_372_036_854_775_808u64))
        );
        let big = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        assert_eq!(
            add(json!(u64::MAX), json!(1)),
            Ok(big("18446744073709551616"))
        );
        assert_eq!(
            add(big("1180591620717411303424"), json!(1)),
            Ok(big("1180591620717411303425"))
        );
        assert_eq!(
            add(
                big("-1180591620717411303424"),
                big("1180591620717411303424")
            ),
            Ok(json!(0))
        );
        assert_eq!(
            add(big("1180591620717411303424"), json!("a")),
            Err("TypeError: unsupported operand type(s) for +: 'int' and 'str'".into())
        );
        assert_eq!(
            add(big("1180591620717411303424"), json!(0.5)),
            Ok(json!(1.1805916207174113e21))
        );
        assert_eq!(
            add(big(&format!("1{}", "0".repeat(400))), json!(0.5)),
            Err("OverflowError: int too large to convert to float".into())
        );
        let inf = add(json!(f64::MAX), json!(f64::MAX)).unwrap();
        assert_eq!(pyjson::float(&inf), Some(f64::INFINITY));
        let nan = add(pyjson::nan(), json!(1)).unwrap();
        assert!(pyjson::float(&nan).unwrap().is_nan());
        assert_eq!(pyjson::python_type(&nan), "float");
    }

    #[test]
    fn strings_and_lists_concatenate() {
        assert_eq!(
            add(json!("Kamu sudah membaca 4"), json!(" halaman")),
            Ok(json!("Kamu sudah membaca 4 halaman"))
        );
        assert_eq!(add(json!([1]), json!([2, "a"])), Ok(json!([1, 2, "a"])));
    }

    #[test]
    fn mixed_types_raise_pythons_type_error() {
        assert_eq!(
            add(json!("a"), json!(1)),
            Err("TypeError: can only concatenate str (not \"int\") to str".into())
        );
        assert_eq!(
            add(json!([1]), json!("a")),
            Err("TypeError: can only concatenate list (not \"str\") to list".into())
        );
        assert_eq!(
            add(json!(4), json!("halaman")),
            Err("TypeError: unsupported operand type(s) for +: 'int' and 'str'".into())
        );
        assert_eq!(
            add(json!(null), json!({})),
            Err("TypeError: unsupported operand type(s) for +: 'NoneType' and 'dict'".into())
        );
    }

    fn bind_add_arguments(
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> Result<(Value, Value), PyException> {
        let [x, y] =
            crate::tasks::bind_arguments("add", &["x", "y"], args.to_vec(), kwargs.clone())?;
        Ok((x, y))
    }

    #[test]
    fn arguments_bind_like_python() {
        let none = Map::new();
        let kw = |pairs: Value| pairs.as_object().cloned().unwrap_or_default();
        assert_eq!(
            bind_add_arguments(&[json!(4), json!(10)], &none),
            Ok((json!(4), json!(10)))
        );
        assert_eq!(
            bind_add_arguments(&[], &kw(json!({"x": 4, "y": 10}))),
            Ok((json!(4), json!(10)))
        );
        assert_eq!(
            bind_add_arguments(&[json!(4)], &kw(json!({"y": 10}))),
            Ok((json!(4), json!(10)))
        );
        let err = |args: &[Value], kwargs: Value| {
            bind_add_arguments(args, &kw(kwargs)).unwrap_err().message
        };
        assert_eq!(
            err(&[json!(1)], json!({})),
            "add() missing 1 required positional argument: 'y'"
        );
        assert_eq!(
            err(&[json!(1), json!(2), json!(3)], json!({})),
            "add() takes 2 positional arguments but 3 were given"
        );
        assert_eq!(
            err(&[json!(1)], json!({"x": 2})),
            "add() got multiple values for argument 'x'"
        );
        assert_eq!(
            err(&[], json!({"z": 2})),
            "add() got an unexpected keyword argument 'z'"
        );
    }
}
