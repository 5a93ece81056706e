//! Typed task functions: any `fn(A, B, ...) -> TaskResult<R>` or
//! `async fn(A, B, ...) -> TaskResult<R>` (up to seven parameters, each
//! `A: DeserializeOwned`, and `R: Serialize`), optionally with a
//! [`TaskContext`] first (a bound task), becomes a task body.
//!
//! The arguments are first bound to the parameter names as Python binds
//! them (a call that does not fit is CPython's `TypeError`, and the message
//! can never run), then each is deserialized into its type (a value of the
//! wrong type is the task raising `TypeError`, as it would inside a Python
//! task), and the result is serialized as the task's value.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::registry::{Body, Call, Done, Failure, TaskContext, TaskResult, bind_arguments};
use crate::message::PyException;

/// A function that can be a task body; `Marker` tells sync from async
/// functions and carries the parameter types, so that both kinds of
/// function implement it without overlapping.
/// `N` is its number of parameters, so a list of names of another length
/// does not compile.
pub trait Handler<Marker, const N: usize>: Send + Sync + 'static {
    /// The body that binds, deserializes, runs and serializes.
    fn into_body(self, function: Arc<str>, names: [&'static str; N]) -> Body;
}

/// Marks a plain function, `fn(A, ...) -> TaskResult<R>`.
pub struct Plain<Args>(std::marker::PhantomData<Args>);
/// Marks an async function, `async fn(A, ...) -> TaskResult<R>`.
pub struct Awaited<Args>(std::marker::PhantomData<Args>);
/// Marks a bound plain function, `fn(TaskContext, A, ...) -> TaskResult<R>`.
pub struct BoundPlain<Args>(std::marker::PhantomData<Args>);
/// Marks a bound async function, `async fn(TaskContext, A, ...) -> TaskResult<R>`.
pub struct BoundAwaited<Args>(std::marker::PhantomData<Args>);

/// Argument `value`, bound to parameter `name` of `function`, as a `T`;
/// else a `TypeError` worded as CPython words a builtin's
/// (`multiply() argument 'pages' must be int, not str`).
fn argument<T: DeserializeOwned>(function: &str, name: &str, value: Value) -> Result<T, Failure> {
    let given = crate::message::pyjson::python_type(&value);
    serde_json::from_value(value).map_err(|err| {
        let wanted = python_name::<T>();
        let message = if wanted == given {
            // Of the right kind, but not in the type's range.
            format!("{function}() argument '{name}': {err}")
        } else {
            format!("{function}() argument '{name}' must be {wanted}, not {given}")
        };
        Failure::Raised(PyException::builtin("TypeError", message))
    })
}

/// What Python calls the values a `T` reads: `int` for Rust's integers,
/// `str` for strings, ...; the Rust type's own name for anything else.
fn python_name<T>() -> &'static str {
    let rust = std::any::type_name::<T>();
    match rust {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "int",
        "f32" | "f64" => "float",
        "bool" => "bool",
        "alloc::string::String" | "char" => "str",
        "()" => "NoneType",
        _ if rust.starts_with("alloc::vec::Vec<") => "list",
        _ if rust.starts_with("std::collections::hash::map::HashMap<")
            || rust.starts_with("alloc::collections::btree::map::BTreeMap<") =>
        {
            "dict"
        }
        _ => rust,
    }
}

/// A task's return value as JSON.
fn value<R: Serialize>(result: TaskResult<R>) -> Result<Done, Failure> {
    let result = result.map_err(Failure::Raised)?;
    serde_json::to_value(result).map(Done::from).map_err(|err| {
        Failure::Raised(PyException::celery(
            "kombu.exceptions",
            "EncodeError",
            err.to_string(),
        ))
    })
}

/// Arguments bound to `N` parameter names as Python binds them, then each
/// read as its type.
trait Arguments<const N: usize>: Sized {
    fn read(function: &str, names: &[&'static str; N], call: Call) -> Result<Self, Failure>;
}

macro_rules! handler {
    ($n:literal $(, $ty:ident $var:ident)*) => {
        impl<$($ty: DeserializeOwned,)*> Arguments<$n> for ($($ty,)*) {
            #[allow(unused_mut, unused_variables)]
            fn read(function: &str, names: &[&'static str; $n], call: Call) -> Result<Self, Failure> {
                let bound = bind_arguments(function, names, call.args, call.kwargs)
                    .map_err(Failure::BadCall)?;
                let mut bound = names.iter().zip(bound);
                Ok(($({
                    let (name, raw) = bound.next().expect("one value per name");
                    argument::<$ty>(function, name, raw)?
                },)*))
            }
        }

        impl<F, R, $($ty,)*> Handler<Plain<($($ty,)*)>, $n> for F
        where
            F: Fn($($ty),*) -> TaskResult<R> + Send + Sync + 'static,
            R: Serialize,
            $($ty: DeserializeOwned,)*
        {
            fn into_body(self, function: Arc<str>, names: [&'static str; $n]) -> Body {
                Body::Sync(Box::new(move |call: Call| {
                    let ($($var,)*) = <($($ty,)*)>::read(&function, &names, call)?;
                    value(self($($var),*))
                }))
            }
        }

        impl<F, Fut, R, $($ty,)*> Handler<Awaited<($($ty,)*)>, $n> for F
        where
            F: Fn($($ty),*) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = TaskResult<R>> + Send + 'static,
            R: Serialize,
            $($ty: DeserializeOwned,)*
        {
            fn into_body(self, function: Arc<str>, names: [&'static str; $n]) -> Body {
                Body::Async(Box::new(move |call: Call| {
                    match <($($ty,)*)>::read(&function, &names, call) {
                        Ok(($($var,)*)) => {
                            let running = self($($var),*);
                            Box::pin(async move { value(running.await) })
                        }
                        Err(failure) => Box::pin(std::future::ready(Err(failure))),
                    }
                }))
            }
        }

        impl<F, R, $($ty,)*> Handler<BoundPlain<($($ty,)*)>, $n> for F
        where
            F: Fn(TaskContext, $($ty),*) -> TaskResult<R> + Send + Sync + 'static,
            R: Serialize,
            $($ty: DeserializeOwned,)*
        {
            fn into_body(self, function: Arc<str>, names: [&'static str; $n]) -> Body {
                Body::Sync(Box::new(move |mut call: Call| {
                    let context = std::mem::take(&mut call.context);
                    let ($($var,)*) = <($($ty,)*)>::read(&function, &names, call)?;
                    value(self(context, $($var),*))
                }))
            }
        }

        impl<F, Fut, R, $($ty,)*> Handler<BoundAwaited<($($ty,)*)>, $n> for F
        where
            F: Fn(TaskContext, $($ty),*) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = TaskResult<R>> + Send + 'static,
            R: Serialize,
            $($ty: DeserializeOwned,)*
        {
            fn into_body(self, function: Arc<str>, names: [&'static str; $n]) -> Body {
                Body::Async(Box::new(move |mut call: Call| {
                    let context = std::mem::take(&mut call.context);
                    match <($($ty,)*)>::read(&function, &names, call) {
                        Ok(($($var,)*)) => {
                            let running = self(context, $($var),*);
                            Box::pin(async move { value(running.await) })
                        }
                        Err(failure) => Box::pin(std::future::ready(Err(failure))),
                    }
                }))
            }
        }
    };
}

handler!(0);
handler!(1, A a);
handler!(2, A a, B b);
handler!(3, A a, B b, C c);
handler!(4, A a, B b, C c, D d);
handler!(5, A a, B b, C c, D d, E e);
handler!(6, A a, B b, C c, D d, E e, G g);
handler!(7, A a, B b, C c, D d, E e, G g, H h);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Map, Value, json};

    use crate::tasks::{Failure, Registry, Task, TaskResult};

    fn multiply(pages: i64, books: i64) -> TaskResult<i64> {
        Ok(pages * books)
    }

    async fn shout(text: String) -> TaskResult<String> {
        Ok(text.to_uppercase())
    }

    fn tasks() -> Arc<Registry> {
        Arc::new(
            Registry::empty()
                .register(Task::new("pages.multiply", ["pages", "books"], multiply))
                .register(Task::new("pages.shout", ["text"], shout)),
        )
    }

    async fn run(name: &str, args: Value, kwargs: Value) -> Result<Value, Failure> {
        let Value::Array(args) = args else { panic!() };
        let kwargs: Map<String, Value> = serde_json::from_value(kwargs).unwrap();
        tasks().run(name, args, kwargs).await.map(|done| done.value)
    }

    fn raised(message: &str) -> Failure {
        Failure::Raised(crate::PyException::builtin("TypeError", message))
    }

    fn refused(message: &str) -> Failure {
        Failure::BadCall(crate::PyException::builtin("TypeError", message))
    }

    #[tokio::test]
    async fn typed_arguments_bind_as_python_then_read_as_their_types() {
        let none = json!({});
        assert_eq!(
            run("pages.multiply", json!([3, 120]), none.clone()).await,
            Ok(json!(360))
        );
        assert_eq!(
            run("pages.multiply", json!([3]), json!({"books": 120})).await,
            Ok(json!(360))
        );
        assert_eq!(
            run("pages.shout", json!(["buku"]), none.clone()).await,
            Ok(json!("BUKU"))
        );
        assert_eq!(
            run("pages.multiply", json!([3]), none.clone()).await,
            Err(refused(
                "multiply() missing 1 required positional argument: 'books'"
            ))
        );
        assert_eq!(
            run("pages.multiply", json!([3, 4]), json!({"pages": 1})).await,
            Err(refused(
                "multiply() got multiple values for argument 'pages'"
            ))
        );
        assert_eq!(
            run("pages.multiply", json!(["a", 4]), none.clone()).await,
            Err(raised("multiply() argument 'pages' must be int, not str"))
        );
        assert_eq!(
            run("pages.shout", json!([null]), none.clone()).await,
            Err(raised("shout() argument 'text' must be str, not NoneType"))
        );
        let Err(Failure::Raised(exc)) =
            run("pages.multiply", json!([1, 1e300]), none.clone()).await
        else {
            panic!("a float is not an i64");
        };
        assert_eq!(
            exc.message,
            "multiply() argument 'books' must be int, not float"
        );
        let Err(Failure::Raised(exc)) = run("pages.multiply", json!([1, u64::MAX]), none).await
        else {
            panic!("too large for an i64");
        };
        assert!(
            exc.message.starts_with("multiply() argument 'books': "),
            "{exc}"
        );
    }
}
