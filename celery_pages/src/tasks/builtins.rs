//! Celery's built-in tasks, which a Python worker registers in every app
//! and a caller reaches through the canvas: `add.map(...)` sends
//! `celery.map`, `add.starmap(...)` and `add.chunks(...)` send
//! `celery.starmap`, a chunks signature that is itself a canvas step sends
//! `celery.chunks`; `celery.accumulate` and `celery.backend_cleanup` are
//! there too. Each is registered as any user task is, with the name and
//! parameters of its Python function (`xmap(task, it)`, ...), so a call
//! that does not fit fails with Python's own message.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use celery_pages::tasks::Registry;
//! use serde_json::{Map, json};
//! let tasks = Arc::new(Registry::chapter());
//! let pairs = json!([[1, 2], [3, 4]]);
//! let sums = tasks.run("celery.starmap", vec![json!("addTask.add"), pairs], Map::new()).await;
//! assert_eq!(sums.unwrap().value, json!([3, 7]));
//! # }
//! ```

use serde_json::{Map, Value};

use crate::message::PyException;
use crate::message::pyjson::python_type;
use crate::tasks::registry::{
    Done, Failure, Registry, Signature, Task, TaskResult, bind_arguments, not_registered,
};

/// The Python functions behind the built-ins that take arguments.
const CHUNKS: (&str, [&str; 3]) = ("chunks", ["task", "it", "n"]);
const XMAP: (&str, [&str; 2]) = ("xmap", ["task", "it"]);
const XSTARMAP: (&str, [&str; 2]) = ("xstarmap", ["task", "it"]);

/// Registers Celery's built-in tasks on `tasks`.
pub fn register(tasks: Registry) -> Registry {
    tasks
        // `accumulate(self, *args, **kwargs)`: the arguments, or one of them.
        .register(Task::from_call(
            "celery.accumulate",
            Signature::variadic("accumulate"),
            |call| {
                accumulate(call.args, &call.kwargs)
                    .map(Done::from)
                    .map_err(Failure::Raised)
            },
        ))
        // The rpc:// backend keeps nothing to clean up.
        .register(Task::new(
            "celery.backend_cleanup",
            [],
            || -> TaskResult<()> { Ok(()) },
        ))
        .register(Task::from_call(
            "celery.chunks",
            Signature::new(CHUNKS.0, &CHUNKS.1),
            |call| {
                let [task, items, n] = bind_arguments(CHUNKS.0, &CHUNKS.1, call.args, call.kwargs)
                    .map_err(Failure::BadCall)?;
                chunks(&task, &items, &n).map_err(Failure::Raised)
            },
        ))
        .register(each_item("celery.map", XMAP, |item| vec![item]))
        .register(each_item("celery.starmap", XSTARMAP, |item| match item {
            Value::Array(args) => args,
            other => vec![other],
        }))
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
            format!("'{}' object is not iterable", python_type(items)),
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

/// `name`, the Python function `python(task, it)`: runs `task` on each
/// element of `it`, with the arguments `arguments` makes of it.
fn each_item(
    name: &str,
    python: (&'static str, [&'static str; 2]),
    arguments: fn(Value) -> Vec<Value>,
) -> Task {
    let (function, params) = python;
    Task::from_async_call(
        name,
        Signature::new(function, &params),
        move |call| async move {
            let [task, items] = bind_arguments(function, &params, call.args, call.kwargs)
                .map_err(Failure::BadCall)?;
            each(&call.tasks, &task, items, arguments).await
        },
    )
}

/// Calls the task a signature names (`task`, a signature or a task name)
/// in this process once per element of `items`, with the arguments
/// `arguments` makes of it; the list of results, or the first exception.
async fn each(
    tasks: &std::sync::Arc<Registry>,
    task: &Value,
    items: Value,
    arguments: impl Fn(Value) -> Vec<Value>,
) -> Result<Done, Failure> {
    let name = match task {
        Value::String(name) => name.as_str(),
        signature => signature["task"].as_str().unwrap_or_default(),
    };
    if tasks.get(name).is_none() {
        return Err(Failure::Raised(not_registered(name)));
    }
    let Value::Array(items) = items else {
        return Err(Failure::Raised(PyException::builtin(
            "TypeError",
            format!("'{}' object is not iterable", python_type(&items)),
        )));
    };
    let mut values = Vec::with_capacity(items.len());
    for item in items {
        // Inside the task, a wrong call is the task's own exception.
        let done = tasks.run(name, arguments(item), Map::new()).await;
        values.push(
            done.map_err(|failure| Failure::Raised(failure.exception()))?
                .value,
        );
    }
    Ok(Done::from(Value::Array(values)))
}

fn accumulate(args: Vec<Value>, kwargs: &Map<String, Value>) -> Result<Value, PyException> {
    match kwargs.get("index") {
        None | Some(Value::Null) => Ok(Value::Array(args)),
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
                python_type(other)
            ),
        )),
    }
}
