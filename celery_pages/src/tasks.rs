//! The tasks this worker runs, looked up by name in one place: the
//! chapter's `addTask.add`, and the built-in tasks of Celery that a caller
//! reaches through the canvas (`add.map(...)` sends `celery.map`,
//! `add.starmap(...)` and `add.chunks(...)` send `celery.starmap`; a
//! chunks signature that is itself a canvas step sends `celery.chunks`),
//! which a Python worker registers in every app. A task is added here and
//! nowhere else.
//!
//! ```
//! use celery_pages::tasks::{self, Failure};
//! use serde_json::{Map, json};
//! let pairs = json!([[1, 2], [3, 4]]);
//! let sum = tasks::run("celery.starmap", &[json!("addTask.add"), pairs], &Map::new());
//! assert_eq!(sum.unwrap().value, json!([3, 7]));
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
    "celery.chunks",
    "celery.map",
    "celery.starmap",
];

/// What a task that ran came to: its value, and the signatures of the tasks
/// it sends on (as `celery.chunks` sends its group of starmaps).
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    pub value: Value,
    pub sends: Vec<Value>,
}

impl From<Value> for Done {
    fn from(value: Value) -> Self {
        Done {
            value,
            sends: Vec::new(),
        }
    }
}

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
pub fn run(name: &str, args: &[Value], kwargs: &Map<String, Value>) -> Result<Done, Failure> {
    match name {
        ADD_TASK => {
            let (x, y) = bind_add_arguments(args, kwargs).map_err(Failure::BadCall)?;
            python_add(&x, &y).map(Done::from).map_err(Failure::Raised)
        }
        // `accumulate(self, *args, **kwargs)`: the arguments, or one of them.
        "celery.accumulate" => accumulate(args, kwargs)
            .map(Done::from)
            .map_err(Failure::Raised),
        // The rpc:// backend keeps nothing to clean up.
        "celery.backend_cleanup" => {
            bind_arguments::<0>("backend_cleanup", &[], args, kwargs).map_err(Failure::BadCall)?;
            Ok(Done::from(Value::Null))
        }
        "celery.chunks" => {
            let [task, items, n] = bind_arguments("chunks", &["task", "it", "n"], args, kwargs)
                .map_err(Failure::BadCall)?;
            chunks(&task, &items, &n).map_err(Failure::Raised)
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

/// `chunks(task, it, n)`: `it` cut into parts of `n`, each sent as a
/// `celery.starmap` of `task` in one group, as Celery's `chunks.group()`
/// does; the value is the group's result as a tuple,
/// `((group_id, None), [((task_id, None), None), ...])`. The parts ask for
/// no result: Python's worker sends theirs to its own address, where, with
/// `rpc://`, nobody reads them.
fn chunks(task: &Value, items: &Value, n: &Value) -> Result<Done, PyException> {
    let size = match n {
        Value::Number(n) => n.as_u64().filter(|n| *n >= 1),
        _ => None,
    };
    let Some(size) = size.and_then(|n| usize::try_from(n).ok()) else {
        return Err(PyException::builtin(
            "ValueError",
            "Stop argument for islice() must be None or an integer: 0 <= x <= sys.maxsize.",
        ));
    };
    let Value::Array(items) = items else {
        return Err(PyException::builtin(
            "TypeError",
            format!(
                "'{}' object is not iterable",
                crate::add::python_type(items)
            ),
        ));
    };
    let group = uuid::Uuid::new_v4().to_string();
    let mut sends = Vec::new();
    let mut results = Vec::new();
    for part in items.chunks(size) {
        let id = uuid::Uuid::new_v4().to_string();
        sends.push(serde_json::json!({
            "task": "celery.starmap",
            "args": [],
            "kwargs": {"task": task, "it": part},
            "options": {"task_id": id, "group_id": group},
            "subtask_type": null,
            "immutable": true,
        }));
        results.push(serde_json::json!([[id, null], null]));
    }
    Ok(Done {
        value: serde_json::json!([[group, null], results]),
        sends,
    })
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
) -> Result<Done, Failure> {
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
            run(name, &arguments(item), &Map::new())
                .map(|done| done.value)
                .map_err(|failure| match failure {
                    Failure::BadCall(exc) | Failure::Raised(exc) | Failure::NotRegistered(exc) => {
                        Failure::Raised(exc)
                    }
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|values| Done::from(Value::Array(values)))
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
