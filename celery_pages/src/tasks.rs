//! The tasks this worker runs, looked up by name in one place: the
//! chapter's `addTask.add`, and the built-in tasks of Celery that a caller
//! reaches through the canvas (`add.map(...)` sends `celery.map`,
//! `add.starmap(...)` and `add.chunks(...)` send `celery.starmap`), which a
//! Python worker registers in every app. A task is added here and nowhere
//! else.
//!
//! ```
//! use celery_pages::tasks::{self, Failure};
//! use serde_json::{Map, json};
//! let pairs = json!([[1, 2], [3, 4]]);
//! let sum = tasks::run("celery.starmap", &[json!("addTask.add"), pairs], &Map::new());
//! assert_eq!(sum.unwrap(), json!([3, 7]));
//! assert!(matches!(tasks::run("other.task", &[], &Map::new()), Err(Failure::NotRegistered(_))));
//! ```

use serde_json::{Map, Value};

use crate::ADD_TASK;
use crate::add::{bind_add_arguments, bind_arguments, python_add};
use crate::protocol::PyException;

/// The tasks `celery inspect registered` lists (Celery leaves its built-ins
/// out of that list).
pub const USER_TASKS: &[&str] = &[ADD_TASK];

/// Every task this worker runs.
pub const ALL_TASKS: &[&str] = &[
    ADD_TASK,
    "celery.accumulate",
    "celery.backend_cleanup",
    "celery.map",
    "celery.starmap",
];

/// Why a task gave no value.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// No task of that name here: the message can never run.
    NotRegistered(PyException),
    /// The arguments do not fit the task: the message can never run.
    BadCall(PyException),
    /// The task ran and raised.
    Raised(PyException),
}

/// Runs task `name` with `args` and `kwargs`, as a Python worker would.
pub fn run(name: &str, args: &[Value], kwargs: &Map<String, Value>) -> Result<Value, Failure> {
    match name {
        ADD_TASK => {
            let (x, y) = bind_add_arguments(args, kwargs).map_err(Failure::BadCall)?;
            python_add(&x, &y).map_err(Failure::Raised)
        }
        // `accumulate(self, *args, **kwargs)`: the arguments, or one of them.
        "celery.accumulate" => accumulate(args, kwargs).map_err(Failure::Raised),
        // The rpc:// backend keeps nothing to clean up.
        "celery.backend_cleanup" => {
            bind_arguments::<0>("backend_cleanup", &[], args, kwargs).map_err(Failure::BadCall)?;
            Ok(Value::Null)
        }
        "celery.map" => {
            let [task, items] =
                bind_arguments("xmap", &["task", "it"], args, kwargs).map_err(Failure::BadCall)?;
            each(&task, &items, |item| vec![item.clone()])
        }
        "celery.starmap" => {
            let [task, items] = bind_arguments("xstarmap", &["task", "it"], args, kwargs)
                .map_err(Failure::BadCall)?;
            each(&task, &items, |item| match item {
                Value::Array(args) => args.clone(),
                other => vec![other.clone()],
            })
        }
        other => Err(Failure::NotRegistered(not_registered(other))),
    }
}

fn not_registered(name: &str) -> PyException {
    PyException {
        exc_type: "NotRegistered".into(),
        exc_module: "celery.exceptions".into(),
        message: name.to_owned(),
    }
}

/// Calls the task a signature names (`task`, a signature or a task name)
/// in this process once per element of `items`, with the arguments
/// `arguments` makes of it; the list of results, or the first exception.
fn each(
    task: &Value,
    items: &Value,
    arguments: impl Fn(&Value) -> Vec<Value>,
) -> Result<Value, Failure> {
    let name = match task {
        Value::String(name) => name.as_str(),
        signature => signature["task"].as_str().unwrap_or_default(),
    };
    if !ALL_TASKS.contains(&name) {
        return Err(Failure::Raised(not_registered(name)));
    }
    let Value::Array(items) = items else {
        return Err(Failure::Raised(PyException::builtin(
            "TypeError",
            format!(
                "'{}' object is not iterable",
                crate::add::python_type(items)
            ),
        )));
    };
    items
        .iter()
        .map(|item| {
            // Inside the task, a wrong call is the task's own exception.
            run(name, &arguments(item), &Map::new()).map_err(|failure| match failure {
                Failure::BadCall(exc) | Failure::Raised(exc) | Failure::NotRegistered(exc) => {
                    Failure::Raised(exc)
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn accumulate(args: &[Value], kwargs: &Map<String, Value>) -> Result<Value, PyException> {
    match kwargs.get("index") {
        None | Some(Value::Null) => Ok(Value::Array(args.to_vec())),
        Some(Value::Number(n)) if n.as_i64().is_some() => {
            let index = n.as_i64().unwrap_or_default();
            let at = if index < 0 {
                usize::try_from(-index)
                    .ok()
                    .and_then(|back| args.len().checked_sub(back))
            } else {
                usize::try_from(index).ok()
            };
            at.and_then(|i| args.get(i))
                .cloned()
                .ok_or_else(|| PyException::builtin("IndexError", "tuple index out of range"))
        }
        Some(other) => Err(PyException::builtin(
            "TypeError",
            format!(
                "tuple indices must be integers or slices, not {}",
                crate::add::python_type(other)
            ),
        )),
    }
}
