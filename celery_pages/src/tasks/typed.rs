//! Typed task functions: any `fn(A, B, ...) -> TaskResult<R>` or
//! `async fn(A, B, ...) -> TaskResult<R>` (up to eight parameters, each
//! `A: DeserializeOwned`, and `R: Serialize`) becomes a task body.
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

use super::registry::{Body, Call, Done, Failure, TaskResult, bind_arguments};
use crate::message::PyException;

/// A function that can be a task body; `Marker` tells sync from async
/// functions and carries the parameter types, so that both kinds of
/// function implement it without overlapping.
pub trait Handler<Marker>: Send + Sync + 'static {
    /// The parameter names: `[&'static str; N]` for a function of `N`
    /// parameters, so a wrong count does not compile.
    type Names;

    /// The names as a list.
    fn names(names: &Self::Names) -> Vec<&'static str>;

    /// The body that binds, deserializes, runs and serializes.
    fn into_body(self, function: Arc<str>, names: Self::Names) -> Body;
}

/// Marks a plain function, `fn(A, ...) -> TaskResult<R>`.
pub struct Plain<Args>(std::marker::PhantomData<Args>);
/// Marks an async function, `async fn(A, ...) -> TaskResult<R>`.
pub struct Awaited<Args>(std::marker::PhantomData<Args>);

/// Argument `value`, bound to parameter `name` of `function`, as a `T`.
fn argument<T: DeserializeOwned>(function: &str, name: &str, value: Value) -> Result<T, Failure> {
    let shown = crate::message::pyjson::python_type(&value);
    serde_json::from_value(value).map_err(|err| {
        Failure::Raised(PyException::builtin(
            "TypeError",
            format!("{function}() argument '{name}' cannot be a {shown}: {err}"),
        ))
    })
}

/// A task's return value as JSON.
fn value<R: Serialize>(result: TaskResult<R>) -> Result<Done, Failure> {
    let result = result.map_err(Failure::Raised)?;
    serde_json::to_value(result).map(Done::from).map_err(|err| {
        Failure::Raised(PyException {
            exc_type: "EncodeError".into(),
            exc_module: "kombu.exceptions".into(),
            message: err.to_string(),
        })
    })
}

macro_rules! handler {
    ($n:literal $(, $ty:ident $var:ident)*) => {
        impl<F, R, $($ty,)*> Handler<Plain<($($ty,)*)>> for F
        where
            F: Fn($($ty),*) -> TaskResult<R> + Send + Sync + 'static,
            R: Serialize,
            $($ty: DeserializeOwned,)*
        {
            type Names = [&'static str; $n];

            fn names(names: &Self::Names) -> Vec<&'static str> {
                names.to_vec()
            }

            #[allow(unused_mut, unused_variables)]
            fn into_body(self, function: Arc<str>, names: Self::Names) -> Body {
                Body::Sync(Box::new(move |call: Call| {
                    let bound = bind_arguments(&function, &names, call.args, call.kwargs)
                        .map_err(Failure::BadCall)?;
                    let mut bound = names.iter().zip(bound);
                    $(
                        let (name, raw) = bound.next().expect("one value per name");
                        let $var: $ty = argument(&function, name, raw)?;
                    )*
                    value(self($($var),*))
                }))
            }
        }

        impl<F, Fut, R, $($ty,)*> Handler<Awaited<($($ty,)*)>> for F
        where
            F: Fn($($ty),*) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = TaskResult<R>> + Send + 'static,
            R: Serialize,
            $($ty: DeserializeOwned,)*
        {
            type Names = [&'static str; $n];

            fn names(names: &Self::Names) -> Vec<&'static str> {
                names.to_vec()
            }

            #[allow(unused_mut, unused_variables)]
            fn into_body(self, function: Arc<str>, names: Self::Names) -> Body {
                Body::Async(Box::new(move |call: Call| {
                    let started = (|| {
                        let bound = bind_arguments(&function, &names, call.args, call.kwargs)
                            .map_err(Failure::BadCall)?;
                        let mut bound = names.iter().zip(bound);
                        $(
                            let (name, raw) = bound.next().expect("one value per name");
                            let $var: $ty = argument(&function, name, raw)?;
                        )*
                        Ok(self($($var),*))
                    })();
                    Box::pin(async move { value(started?.await) })
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
handler!(8, A a, B b, C c, D d, E e, G g, H h, I i);
