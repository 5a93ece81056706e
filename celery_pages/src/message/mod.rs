//! Celery's message protocol v2 and its `rpc://` results, on AMQP.
//!
//! A task message carries its metadata in AMQP headers (`task`, `id`, ...)
//! and its arguments in a JSON body `[args, kwargs, embed]`. A result goes to
//! the caller's `reply_to` queue with the task id as correlation id. The
//! facts followed here, including two places where Celery's own docs are
//! wrong, are in the workspace's `docs/celery-protocol.md`.

pub mod compression;
pub mod pyjson;
pub mod trace;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Value, json};

/// A Python exception, as Celery carries it in a FAILURE result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyException {
    /// The exception's class, e.g. `TypeError`.
    pub exc_type: String,
    /// Its module, e.g. `builtins`.
    pub exc_module: String,
    /// Its message: what Python's `str(exc)` gives.
    pub message: String,
    /// Its `args`, when they are not just the message (Celery sends the
    /// args; `TimeLimitExceeded(1)` has the number 1).
    pub args: Option<Vec<Value>>,
    /// The exception it carries: a `Retry`'s reason (see
    /// [`crate::tasks::TaskContext::retry`]).
    pub cause: Option<Box<PyException>>,
}

impl PyException {
    pub fn builtin(exc_type: &str, message: impl Into<String>) -> Self {
        PyException {
            exc_type: exc_type.to_owned(),
            exc_module: "builtins".to_owned(),
            message: message.into(),
            args: None,
            cause: None,
        }
    }

    /// An exception of Celery's (or its pool's) own, by module and type.
    pub fn celery(exc_module: &str, exc_type: &str, message: impl Into<String>) -> Self {
        PyException {
            exc_type: exc_type.to_owned(),
            exc_module: exc_module.to_owned(),
            message: message.into(),
            args: None,
            cause: None,
        }
    }

    /// The exception's args as Celery sends them (`exc_message`).
    pub fn args(&self) -> Vec<Value> {
        self.args
            .clone()
            .unwrap_or_else(|| vec![Value::String(self.message.clone())])
    }
}

impl PyException {
    /// Python's `repr` of the exception, as Celery's task events carry it:
    /// `TypeError("unsupported operand type(s) for +: 'int' and 'str'")`.
    pub fn repr(&self) -> String {
        match &self.args {
            None => format!("{}({})", self.exc_type, python_text::repr(&self.message)),
            Some(args) => {
                let args: Vec<String> = args.iter().map(python_repr).collect();
                format!("{}({})", self.exc_type, args.join(", "))
            }
        }
    }
}

impl std::fmt::Display for PyException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.exc_type, self.message)
    }
}

pub const CONTENT_TYPE: &str = "application/json";
pub const CONTENT_ENCODING: &str = "utf-8";

/// A task request taken apart and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRequest {
    pub id: String,
    pub task: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    /// Run no earlier than this (`countdown` / `eta`).
    pub eta: Option<DateTime<Utc>>,
    /// Do not run after this; answer REVOKED instead.
    pub expires: Option<DateTime<Utc>>,
    /// The first task of the workflow this one belongs to.
    pub root_id: Option<String>,
    /// How many times it was retried before this run (the `retries`
    /// header).
    pub retries: u32,
    /// Its time limits in seconds, hard and soft, as the `timelimit`
    /// header gives them (`[hard, soft]`, each `None` for the task's own).
    pub time_limits: (Option<f64>, Option<f64>),
    /// Its stamps: each header the `stamped_headers` header names, with
    /// its value.
    pub stamps: Vec<(String, Value)>,
    /// What runs after it: the rest of a chain, callbacks, errbacks.
    pub embed: Embed,
    /// The span it runs in: a child of the trace context its message
    /// carried (none if it carried none). What it sends on carries this.
    pub trace: Option<trace::TraceContext>,
}

impl TaskRequest {
    /// A request with nothing but its id to answer with (for a message that
    /// could not be parsed).
    pub fn stub() -> Self {
        TaskRequest {
            id: String::new(),
            task: String::new(),
            args: Vec::new(),
            kwargs: Map::new(),
            eta: None,
            expires: None,
            root_id: None,
            retries: 0,
            time_limits: (None, None),
            stamps: Vec::new(),
            embed: Embed::default(),
            trace: None,
        }
    }

    /// Python's repr of the positional arguments, as `inspect active` shows.
    pub fn args_repr(&self) -> String {
        args_repr(&self.args)
    }

    /// Whether `expires` has passed at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|expires| expires <= now)
    }
}

/// The body's third element: what runs after a task. Each element is a
/// Celery signature (`{"task", "args", "kwargs", "options", "immutable",
/// ...}`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Embed {
    /// The rest of a chain, in reverse: the next step is the last element.
    pub chain: Vec<Value>,
    /// `link`: called with the result prepended to their args.
    pub callbacks: Vec<Value>,
    /// `link_error`: called when the task raises.
    pub errbacks: Vec<Value>,
}

impl Embed {
    fn parse(embed: &Value) -> Self {
        let list = |key: &str| match &embed[key] {
            Value::Array(items) => items.clone(),
            _ => Vec::new(),
        };
        Embed {
            chain: list("chain"),
            callbacks: list("callbacks"),
            errbacks: list("errbacks"),
        }
    }

    fn to_json(&self) -> Value {
        let list = |items: &Vec<Value>| {
            if items.is_empty() {
                Value::Null
            } else {
                Value::Array(items.clone())
            }
        };
        json!({
            "callbacks": list(&self.callbacks),
            "errbacks": list(&self.errbacks),
            "chain": list(&self.chain),
            "chord": null,
        })
    }
}

/// A time header (`eta`, `expires`): ISO 8601 as Celery writes it, with an
/// offset (`2026-11-25T14:23:21.275707+00:00`), or without one, as UTC.
fn header_time(
    headers: &BTreeMap<ShortString, AMQPValue>,
    key: &str,
) -> Result<Option<DateTime<Utc>>, String> {
    let Some(text) = header_str(headers, key) else {
        return Ok(None);
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(&text) {
        return Ok(Some(time.with_timezone(&Utc)));
    }
    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|naive| Some(naive.and_utc()))
        .map_err(|_| format!("the `{key}` header {text:?} is not an ISO 8601 time"))
}

/// Why a message cannot be run, and the id to answer with, if there is one.
#[derive(Clone, Debug, PartialEq)]
pub struct Poison {
    pub reason: String,
    /// The task id to put in a FAILURE result (the `id` header, else the
    /// correlation id); `None` means no result can be addressed.
    pub reply_id: Option<String>,
}

fn header_str(headers: &BTreeMap<ShortString, AMQPValue>, key: &str) -> Option<String> {
    match headers.get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The stamps of a task message: the headers its `stamped_headers` header
/// names, with their values (at most 64).
fn stamps_of(headers: &BTreeMap<ShortString, AMQPValue>) -> Vec<(String, Value)> {
    let Some(AMQPValue::FieldArray(names)) = headers.get("stamped_headers") else {
        return Vec::new();
    };
    names
        .as_slice()
        .iter()
        .take(64)
        .filter_map(|name| match name {
            AMQPValue::LongString(name) => {
                Some(String::from_utf8_lossy(name.as_bytes()).into_owned())
            }
            AMQPValue::ShortString(name) => Some(name.as_str().to_owned()),
            _ => None,
        })
        .filter_map(|name| {
            let value = from_amqp(headers.get(name.as_str())?);
            Some((name, value))
        })
        .collect()
}

/// A header value as JSON: strings, numbers of every width, booleans,
/// lists; anything else null.
fn from_amqp(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Float(n) => {
            serde_json::Number::from_f64(f64::from(*n)).map_or(Value::Null, Value::Number)
        }
        AMQPValue::Double(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(from_amqp).collect())
        }
        _ => Value::Null,
    }
}

/// A header value that is a number of seconds, more than 0.
fn seconds(value: &AMQPValue) -> Option<f64> {
    from_amqp(value)
        .as_f64()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
}

/// A non-negative integer header that fits a `u32`, of whichever width
/// the sender wrote it.
fn header_u32(headers: &BTreeMap<ShortString, AMQPValue>, key: &str) -> Option<u32> {
    let number = from_amqp(headers.get(key)?).as_u64()?;
    u32::try_from(number).ok()
}

/// The message that runs a task again: `properties` as they came (every
/// header kept, known or not, so tracing headers travel on), with the
/// `retries` header set to `retries` and the `eta` header to `eta`, as
/// Celery's `Task.retry` resends a task (same id, same `reply_to` and
/// correlation id); sent from the span `trace` when the task is traced.
pub fn retry_properties(
    properties: &BasicProperties,
    retries: u32,
    eta: DateTime<Utc>,
    trace: Option<&trace::TraceContext>,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert("retries".into(), to_amqp(&json!(retries)));
    headers.insert("eta".into(), to_amqp(&iso(Some(eta))));
    if let Some(trace) = trace {
        trace.write(&mut headers);
    }
    properties.clone().with_headers(headers)
}

/// The `task` header of a task message: which task it runs.
pub fn task_name(properties: &BasicProperties) -> Option<String> {
    header_str(properties.headers().as_ref()?.inner(), "task")
}

/// The `eta` header of a task message, if it has a readable one.
pub fn eta_of(properties: &BasicProperties) -> Option<DateTime<Utc>> {
    let headers = properties.headers().as_ref()?.inner();
    header_time(headers, "eta").ok().flatten()
}

/// Parses a task message. Missing optional headers and unknown extra ones
/// are fine; what makes a message impossible to run is a [`Poison`].
pub fn parse_task(properties: &BasicProperties, body: &[u8]) -> Result<TaskRequest, Poison> {
    let empty = BTreeMap::new();
    let headers = properties
        .headers()
        .as_ref()
        .map_or(&empty, FieldTable::inner);
    let correlation = properties
        .correlation_id()
        .as_ref()
        .map(|c| c.as_str().to_owned());
    let id = header_str(headers, "id");
    let poison = |reason: String| Poison {
        reason,
        reply_id: id.clone().or_else(|| correlation.clone()),
    };
    match properties.content_type().as_ref().map(ShortString::as_str) {
        None => return Err(poison("no content type (expected application/json)".into())),
        Some(CONTENT_TYPE) => {}
        Some(other) => {
            return Err(poison(format!(
                "content type {other:?} is not supported (only application/json)"
            )));
        }
    }
    let Some(task) = header_str(headers, "task") else {
        return Err(poison(
            "no `task` header (not a Celery protocol v2 message)".into(),
        ));
    };
    let Some(id) = id.clone() else {
        return Err(poison(format!("task {task} has no `id` header")));
    };
    let inflated;
    let body = match header_str(headers, "compression") {
        Some(method) => {
            inflated = crate::message::compression::decompress(&method, body).map_err(&poison)?;
            inflated.as_slice()
        }
        None => body,
    };
    let (args, kwargs, embed) = split_body(body).map_err(&poison)?;
    let eta = header_time(headers, "eta").map_err(&poison)?;
    let expires = header_time(headers, "expires").map_err(&poison)?;
    let root_id = header_str(headers, "root_id");
    let retries = header_u32(headers, "retries").unwrap_or(0);
    let time_limits = match headers.get("timelimit") {
        Some(AMQPValue::FieldArray(limits)) => match limits.as_slice() {
            [hard, soft] => (seconds(hard), seconds(soft)),
            _ => (None, None),
        },
        _ => (None, None),
    };
    Ok(TaskRequest {
        id,
        task,
        args,
        kwargs,
        eta,
        expires,
        root_id,
        retries,
        time_limits,
        stamps: stamps_of(headers),
        embed: Embed::parse(&embed),
        trace: trace::TraceContext::from_headers(headers).map(|parent| parent.child()),
    })
}

/// A task body's three parts: args, kwargs, embed.
type BodyParts = (Vec<Value>, Map<String, Value>, Value);

/// The body `[args, kwargs, embed]`: a list, an object, and an object or
/// null.
fn split_body(body: &[u8]) -> Result<BodyParts, String> {
    let body: Value = crate::message::pyjson::from_slice(body)
        .map_err(|err| format!("body is not valid JSON: {err}"))?;
    let shape = || "body is not [args, kwargs, embed]".to_owned();
    let Value::Array(parts) = body else {
        return Err(shape());
    };
    let Ok([args, kwargs, embed]) = <[Value; 3]>::try_from(parts) else {
        return Err(shape());
    };
    match (args, kwargs, embed) {
        (Value::Array(args), Value::Object(kwargs), embed @ (Value::Object(_) | Value::Null)) => {
            Ok((args, kwargs, embed))
        }
        _ => Err(shape()),
    }
}

/// A JSON value as py-amqp writes it into a header: strings as long
/// strings, integers as 32- or 64-bit ints (never 16-bit, which py-amqp
/// would misread), `None` as void.
pub fn to_amqp(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i32::try_from(i).map_or(AMQPValue::LongLongInt(i), AMQPValue::LongInt),
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => AMQPValue::Void,
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(to_amqp).collect::<Vec<_>>(),
        )),
        Value::Object(map) => {
            let mut table = FieldTable::default();
            for (k, v) in map {
                table.insert(ShortString::from(k.as_str()), to_amqp(v));
            }
            AMQPValue::FieldTable(table)
        }
    }
}

/// Python's repr of a tuple of positional arguments.
fn args_repr(args: &[Value]) -> String {
    match args {
        [one] => format!("({},)", python_repr(one)),
        args => format!(
            "({})",
            args.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Python's `repr` of JSON arguments, for the `argsrepr` header.
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => crate::message::pyjson::non_finite_repr(value)
            .map_or_else(|| n.to_string(), str::to_owned),
        Value::String(s) => python_text::repr(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", python_text::repr(k), python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A task message to send: what Celery's `apply_async` puts in one.
#[derive(Clone, Debug, Default)]
pub struct TaskMessage<'a> {
    pub id: &'a str,
    pub task: &'a str,
    pub args: &'a [Value],
    pub kwargs: Map<String, Value>,
    /// Where the result goes (the caller's reply queue); none, no result.
    pub reply_to: Option<&'a str>,
    /// `<pid>@<host>` of the sender.
    pub origin: &'a str,
    /// The workflow's first task (this one's id when it is the first).
    pub root_id: Option<&'a str>,
    /// The task that sent this one (a chain's previous step).
    pub parent_id: Option<&'a str>,
    pub eta: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub embed: Embed,
    /// How the body is compressed (kombu's `compression=`), if at all.
    pub compression: Option<crate::message::compression::Compression>,
    /// The span it is sent from (`traceparent`, ...), if traced.
    pub trace: Option<trace::TraceContext>,
}

fn iso(time: Option<DateTime<Utc>>) -> Value {
    time.map_or(Value::Null, |t| {
        Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string())
    })
}

impl TaskMessage<'_> {
    /// The body and properties, as Python Celery 5 sends them.
    pub fn encode(&self) -> (Vec<u8>, BasicProperties) {
        let args_repr = args_repr(self.args);
        let kwargs = Value::Object(self.kwargs.clone());
        let mut headers = json!({
            "lang": "py",
            "task": self.task,
            "id": self.id,
            "shadow": null,
            "eta": iso(self.eta),
            "expires": iso(self.expires),
            "group": null,
            "group_index": null,
            "retries": 0,
            "timelimit": [null, null],
            "root_id": self.root_id.unwrap_or(self.id),
            "parent_id": self.parent_id,
            "argsrepr": args_repr,
            "kwargsrepr": python_repr(&kwargs),
            "origin": self.origin,
            "ignore_result": false,
            "replaced_task_nesting": 0,
            "stamped_headers": null,
            "stamps": {},
        });
        if let Some(method) = self.compression {
            headers["compression"] = json!(method.content_type());
        }
        let AMQPValue::FieldTable(mut headers) = to_amqp(&headers) else {
            unreachable!("an object converts to a table");
        };
        if let Some(trace) = &self.trace {
            trace.write(&mut headers);
        }
        let body = json!([self.args, kwargs, self.embed.to_json()]);
        let mut properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_content_encoding(CONTENT_ENCODING.into())
            .with_delivery_mode(2)
            .with_priority(0)
            .with_correlation_id(self.id.into())
            .with_headers(headers);
        if let Some(reply_to) = self.reply_to {
            properties = properties.with_reply_to(reply_to.into());
        }
        let body = crate::message::pyjson::to_string(&body).into_bytes();
        let body = match self.compression {
            Some(method) => method.compress(&body),
            None => body,
        };
        (body, properties)
    }
}

/// The body and properties of a plain task message, as Python Celery 5
/// sends `task.delay(*args)`.
pub fn task_message(
    id: &str,
    task: &str,
    args: &[Value],
    reply_to: &str,
    origin: &str,
) -> (Vec<u8>, BasicProperties) {
    TaskMessage {
        id,
        task,
        args,
        reply_to: Some(reply_to),
        origin,
        ..TaskMessage::default()
    }
    .encode()
}

/// The properties of a result message for task `id`.
pub fn result_properties(correlation_id: &str) -> BasicProperties {
    transient_json(FieldTable::default()).with_correlation_id(correlation_id.into())
}

/// The properties of a message Celery does not keep on disk (a result, an
/// event, a remote-control command or reply): a JSON body, delivery mode
/// 1, and `headers`.
pub fn transient_json(headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_content_encoding(CONTENT_ENCODING.into())
        .with_delivery_mode(1)
        .with_headers(headers)
}

fn now_iso() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

/// A SUCCESS result body.
pub fn success_body(id: &str, result: &Value) -> Vec<u8> {
    let body = json!({
        "task_id": id,
        "status": "SUCCESS",
        "result": result,
        "traceback": null,
        "children": [],
        "date_done": now_iso(),
    });
    crate::message::pyjson::to_string(&body).into_bytes()
}

/// A FAILURE result body, which a Python caller re-raises as `exception`.
pub fn failure_body(id: &str, exception: &PyException) -> Vec<u8> {
    exception_body(id, "FAILURE", exception)
}

/// A RETRY state message: the task raised `exception` and was sent again;
/// a caller's `.get()` goes on waiting.
pub fn retry_body(id: &str, exception: &PyException) -> Vec<u8> {
    exception_body(id, "RETRY", exception)
}

fn exception_body(id: &str, status: &str, exception: &PyException) -> Vec<u8> {
    let traceback = format!(
        "Traceback (most recent call last):\n  (raised by the Rust worker celery_pages)\n{}.{}: {}\n",
        exception.exc_module, exception.exc_type, exception.message
    );
    json!({
        "task_id": id,
        "status": status,
        "result": {
            "exc_type": exception.exc_type,
            "exc_message": exception.args(),
            "exc_module": exception.exc_module,
        },
        "traceback": traceback,
        "children": [],
        "date_done": now_iso(),
    })
    .to_string()
    .into_bytes()
}

/// A REVOKED result body (an expired or revoked task), which a Python
/// caller's `.get()` raises as `TaskRevokedError`.
pub fn revoked_body(id: &str, reason: &str) -> Vec<u8> {
    json!({
        "task_id": id,
        "status": "REVOKED",
        "result": {
            "exc_type": "TaskRevokedError",
            "exc_message": [reason],
            "exc_module": "celery.exceptions",
        },
        "traceback": null,
        "children": [],
        "date_done": now_iso(),
    })
    .to_string()
    .into_bytes()
}

/// What a result message says about a task.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskOutcome {
    Success(Value),
    Failure(PyException),
    /// STARTED, RETRY and the like: not the end yet.
    Pending(String),
}

/// Python's `str()` of an exception of type `exc_type` made of `args`: the
/// one argument (a string as it is), else the tuple of them; billiard's
/// time-limit exceptions put their name in front (`TimeLimitExceeded(1,)`).
fn python_str(exc_type: &str, args: &[Value]) -> String {
    let tuple = || {
        let items: Vec<String> = args.iter().map(python_repr).collect();
        match items.as_slice() {
            [one] => format!("({one},)"),
            _ => format!("({})", items.join(", ")),
        }
    };
    match (exc_type, args) {
        ("TimeLimitExceeded" | "SoftTimeLimitExceeded", _) => format!("{exc_type}{}", tuple()),
        (_, [Value::String(message)]) => message.clone(),
        (_, [other]) => python_repr(other),
        _ => tuple(),
    }
}

/// Parses a result body sent by any Celery 5 worker.
pub fn parse_result(body: &[u8]) -> Result<(String, TaskOutcome), String> {
    let value: Value = crate::message::pyjson::from_slice(body)
        .map_err(|err| format!("result is not JSON: {err}"))?;
    let id = value["task_id"]
        .as_str()
        .ok_or("result has no task_id")?
        .to_owned();
    let status = value["status"].as_str().ok_or("result has no status")?;
    let outcome = match status {
        "SUCCESS" => TaskOutcome::Success(value["result"].clone()),
        "FAILURE" | "REVOKED" => {
            let result = &value["result"];
            let exc_type = result["exc_type"].as_str().unwrap_or("Exception");
            let args = match &result["exc_message"] {
                Value::Array(args) => args.clone(),
                other => vec![other.clone()],
            };
            let message = python_str(exc_type, &args);
            // One string argument is the message itself: no args kept.
            let plain = matches!(args.as_slice(), [Value::String(only)] if *only == message);
            TaskOutcome::Failure(PyException {
                exc_type: exc_type.to_owned(),
                exc_module: result["exc_module"]
                    .as_str()
                    .unwrap_or("builtins")
                    .to_owned(),
                message,
                args: (!plain).then_some(args),
                cause: None,
            })
        }
        other => TaskOutcome::Pending(other.to_owned()),
    };
    Ok((id, outcome))
}

/// This machine's name, as Celery puts it in node names.
pub fn host_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
    host.trim().to_owned()
}

/// `<pid>@<host>`: the `origin` of the messages this process sends.
pub fn origin() -> String {
    format!("{}@{}", std::process::id(), host_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(content_type: Option<&str>, headers: Value) -> BasicProperties {
        let AMQPValue::FieldTable(table) = to_amqp(&headers) else {
            unreachable!()
        };
        let props = BasicProperties::default().with_headers(table);
        match content_type {
            Some(ct) => props.with_content_type(ct.into()),
            None => props,
        }
    }

    #[test]
    fn a_python_message_parses() {
        let p = props(
            Some(CONTENT_TYPE),
            json!({"task": "addTask.add", "id": "abc", "eta": null, "extra": 1}),
        );
        let body = br#"[[4, 10], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
        let task = parse_task(&p, body).unwrap();
        assert_eq!(task.id, "abc");
        assert_eq!(task.task, "addTask.add");
        assert_eq!(task.args, vec![json!(4), json!(10)]);
        assert!(parse_task(&p, br#"[[], {"x": 4, "y": 10}, null]"#).is_ok());
    }

    #[test]
    fn bad_messages_are_poison_with_a_reason() {
        let good = props(
            Some(CONTENT_TYPE),
            json!({"task": "addTask.add", "id": "abc"}),
        );
        let reason = |p: &BasicProperties, body: &[u8]| parse_task(p, body).unwrap_err().reason;
        assert!(
            reason(&props(None, json!({"task": "t", "id": "i"})), b"[]")
                .contains("no content type")
        );
        assert!(
            reason(&props(Some(CONTENT_TYPE), json!({"id": "i"})), b"[]").contains("no `task`")
        );
        assert!(
            reason(&props(Some(CONTENT_TYPE), json!({"task": "t"})), b"[]").contains("no `id`")
        );
        assert!(reason(&good, b"{not json").contains("not valid JSON"));
        assert!(reason(&good, b"[[1, 2], {}]").contains("not [args, kwargs, embed]"));
        assert!(reason(&good, b"{\"args\": []}").contains("not [args, kwargs, embed]"));
    }

    #[test]
    fn integers_never_go_out_as_short_ints() {
        assert_eq!(to_amqp(&json!(0)), AMQPValue::LongInt(0));
        assert_eq!(
            to_amqp(&json!(5_000_000_000i64)),
            AMQPValue::LongLongInt(5_000_000_000)
        );
        assert!(matches!(to_amqp(&json!("s")), AMQPValue::LongString(_)));
        assert_eq!(to_amqp(&json!(null)), AMQPValue::Void);
    }

    #[test]
    fn argsrepr_looks_like_python() {
        let (_, p) = task_message("id", "addTask.add", &[json!("Kamu"), json!(4)], "q", "1@h");
        let headers = p.headers().as_ref().unwrap().inner();
        assert_eq!(
            header_str(headers, "argsrepr").as_deref(),
            Some("('Kamu', 4)")
        );
        assert_eq!(header_str(headers, "root_id").as_deref(), Some("id"));
    }

    #[test]
    fn numeric_headers_read_whatever_width_the_sender_wrote() {
        let seconds_of = |value| seconds(&value);
        assert_eq!(seconds_of(AMQPValue::ShortShortUInt(3)), Some(3.0));
        assert_eq!(seconds_of(AMQPValue::LongLongInt(5)), Some(5.0));
        assert_eq!(seconds_of(AMQPValue::Float(1.5)), Some(1.5));
        assert_eq!(seconds_of(AMQPValue::Double(0.25)), Some(0.25));
        assert_eq!(seconds_of(AMQPValue::Double(f64::INFINITY)), None);
        assert_eq!(seconds_of(AMQPValue::LongInt(0)), None);
        assert_eq!(seconds_of(AMQPValue::LongInt(-1)), None);
        assert_eq!(seconds_of(AMQPValue::Boolean(true)), None);
        assert_eq!(seconds_of(AMQPValue::LongString("1".into())), None);
        let retries_of = |value| {
            let headers = BTreeMap::from([(ShortString::from("retries"), value)]);
            header_u32(&headers, "retries")
        };
        assert_eq!(retries_of(AMQPValue::ShortShortInt(2)), Some(2));
        assert_eq!(retries_of(AMQPValue::LongUInt(7)), Some(7));
        assert_eq!(
            retries_of(AMQPValue::LongLongInt(i64::from(u32::MAX))),
            Some(u32::MAX)
        );
        assert_eq!(
            retries_of(AMQPValue::LongLongInt(i64::from(u32::MAX) + 1)),
            None
        );
        assert_eq!(retries_of(AMQPValue::LongInt(-1)), None);
        assert_eq!(retries_of(AMQPValue::Double(2.0)), None);
        assert_eq!(retries_of(AMQPValue::Void), None);
    }

    #[test]
    fn results_round_trip() {
        let (id, outcome) = parse_result(&success_body("t1", &json!(14))).unwrap();
        assert_eq!(
            (id.as_str(), outcome),
            ("t1", TaskOutcome::Success(json!(14)))
        );
        let exc =
            PyException::builtin("TypeError", "can only concatenate str (not \"int\") to str");
        let (_, outcome) = parse_result(&failure_body("t2", &exc)).unwrap();
        assert_eq!(outcome, TaskOutcome::Failure(exc));
        let limit = PyException {
            message: "TimeLimitExceeded(1,)".into(),
            args: Some(vec![json!(1)]),
            ..PyException::celery("billiard.exceptions", "TimeLimitExceeded", "")
        };
        let (_, outcome) = parse_result(&failure_body("t3", &limit)).unwrap();
        assert_eq!(outcome, TaskOutcome::Failure(limit));
        let numbers = PyException {
            message: "(1, 'a')".into(),
            args: Some(vec![json!(1), json!("a")]),
            ..PyException::builtin("ValueError", "")
        };
        let (_, outcome) = parse_result(&failure_body("t4", &numbers)).unwrap();
        assert_eq!(outcome, TaskOutcome::Failure(numbers));
    }

    /// Any header value a peer may send, nested a little.
    fn any_header() -> impl proptest::strategy::Strategy<Value = AMQPValue> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(AMQPValue::Void),
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i8>().prop_map(AMQPValue::ShortShortInt),
            any::<u8>().prop_map(AMQPValue::ShortShortUInt),
            any::<i16>().prop_map(AMQPValue::ShortInt),
            any::<i32>().prop_map(AMQPValue::LongInt),
            any::<u32>().prop_map(AMQPValue::LongUInt),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<f32>().prop_map(AMQPValue::Float),
            any::<f64>().prop_map(AMQPValue::Double),
            ".{0,12}".prop_map(|s| AMQPValue::LongString(s.as_str().into())),
            prop_oneof![Just("k"), Just("retries"), Just("timelimit")]
                .prop_map(|s| AMQPValue::LongString(s.into())),
        ];
        leaf.prop_recursive(2, 16, 4, |inner| {
            proptest::collection::vec(inner, 0..4)
                .prop_map(|items| AMQPValue::FieldArray(items.into()))
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// Whatever a peer puts in the headers the worker reads beyond the
        /// task's name and id (`retries`, `timelimit`, `stamped_headers`
        /// and the stamps they name, `eta`, `expires`), parsing a task and
        /// making its retry never panic.
        #[test]
        fn no_header_value_makes_the_task_parser_panic(
            retries in any_header(),
            timelimit in any_header(),
            stamped in any_header(),
            stamp in any_header(),
            eta in any_header(),
        ) {
            let AMQPValue::FieldTable(mut headers) = to_amqp(&json!({"task": "addTask.add", "id": "abc"})) else {
                unreachable!()
            };
            for (key, value) in [("retries", retries), ("timelimit", timelimit),
                                 ("stamped_headers", stamped), ("k", stamp), ("eta", eta.clone()), ("expires", eta)] {
                headers.insert(key.into(), value);
            }
            let p = BasicProperties::default()
                .with_content_type(CONTENT_TYPE.into())
                .with_headers(headers);
            if let Ok(request) = parse_task(&p, b"[[1, 2], {}, {}]") {
                let _ = retry_properties(&p, request.retries.saturating_add(1), Utc::now(), request.trace.as_ref());
            }
        }

        #[test]
        fn no_body_makes_the_task_or_result_parser_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
            text in ".{0,64}",
        ) {
            let p = props(Some(CONTENT_TYPE), json!({"task": "addTask.add", "id": "abc"}));
            let _ = parse_task(&p, &body);
            let _ = parse_task(&p, text.as_bytes());
            let _ = parse_result(&body);
            let _ = parse_result(text.as_bytes());
        }
    }
}
