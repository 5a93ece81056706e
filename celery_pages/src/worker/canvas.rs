//! What runs after a task: the rest of a chain, `link` callbacks and
//! `link_error` errbacks, as Celery's worker runs them.
//!
//! Celery sends a chain as ONE message, the first task, whose embed carries
//! the remaining steps as signatures (in reverse: the next step is the last
//! element). When a task succeeds, the worker calls the next signature with
//! the result prepended to its args (unless it is immutable), with its own
//! `task_id` and `reply_to`, `parent_id` set to this task, `root_id` to the
//! workflow's first, and the rest of the chain in its embed. Callbacks are
//! called the same way. A step goes where its signature's options say
//! (`queue`, or `exchange` and `routing_key`), else to the worker's default
//! queue. Errbacks of a task the worker has that takes two arguments or
//! more (as `add`) are called by Celery's worker in place, not sent: see
//! [`errbacks`].

use serde_json::{Map, Value};

use crate::message::{Embed, TaskMessage, TaskRequest};

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A queue, through the default exchange (declared first, as Celery
    /// declares a signature's queue).
    Queue(String),
    /// An exchange and routing key named by the signature.
    Exchange {
        exchange: String,
        routing_key: String,
    },
}

/// A message ready to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub route: Route,
    pub id: String,
    pub task: String,
    pub body: Vec<u8>,
    pub properties: lapin::BasicProperties,
}

/// A list of signatures, or one, or none, as `options.link` may hold.
fn signatures(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Object(_) => vec![value.clone()],
        _ => Vec::new(),
    }
}

/// Where a signature's options send it: its `queue`, or its `exchange` and
/// `routing_key`, else the worker's default queue.
fn route_of(options: &Value, default_queue: &str) -> Route {
    match (
        options["queue"].as_str(),
        options["exchange"].as_str(),
        options["routing_key"].as_str(),
    ) {
        (Some(queue), _, _) => Route::Queue(queue.to_owned()),
        (None, Some(exchange), Some(routing_key)) => Route::Exchange {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
        },
        _ => Route::Queue(default_queue.to_owned()),
    }
}

/// The message that calls signature `sig` with `prefix` prepended to its
/// args (unless it is immutable), sent by task `parent`, with `chain` as
/// the rest of its chain.
pub fn call_signature(
    sig: &Value,
    prefix: &[Value],
    parent: &TaskRequest,
    chain: Vec<Value>,
    default_queue: &str,
    origin: &str,
) -> Result<Outgoing, String> {
    let task = sig["task"]
        .as_str()
        .ok_or_else(|| format!("a signature without a task name: {sig}"))?;
    let own_args = match &sig["args"] {
        Value::Array(args) => args.clone(),
        Value::Null => Vec::new(),
        other => return Err(format!("a signature's args are not a list: {other}")),
    };
    let kwargs = match &sig["kwargs"] {
        Value::Object(kwargs) => kwargs.clone(),
        _ => Map::new(),
    };
    let args: Vec<Value> = if sig["immutable"].as_bool().unwrap_or(false) {
        own_args
    } else {
        prefix.iter().cloned().chain(own_args).collect()
    };
    let options = &sig["options"];
    let id = options["task_id"]
        .as_str()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let route = route_of(options, default_queue);
    let root_id = parent.root_id.as_deref().unwrap_or(&parent.id);
    let (body, properties) = TaskMessage {
        id: &id,
        task,
        args: &args,
        kwargs,
        reply_to: options["reply_to"].as_str(),
        origin,
        root_id: Some(root_id),
        parent_id: Some(&parent.id),
        embed: Embed {
            chain,
            callbacks: signatures(&options["link"]),
            errbacks: signatures(&options["link_error"]),
        },
        // Sent from the span the parent task ran in.
        trace: parent.trace.clone(),
        ..TaskMessage::default()
    }
    .encode();
    Ok(Outgoing {
        route,
        id,
        task: task.to_owned(),
        body,
        properties,
    })
}

/// What a task that returned `result` sends next: its callbacks, then the
/// next step of its chain.
pub fn after_success(
    request: &TaskRequest,
    result: &Value,
    default_queue: &str,
    origin: &str,
) -> Result<Vec<Outgoing>, String> {
    let prefix = std::slice::from_ref(result);
    let mut next = Vec::new();
    for callback in &request.embed.callbacks {
        next.push(call_signature(
            callback,
            prefix,
            request,
            Vec::new(),
            default_queue,
            origin,
        )?);
    }
    if let Some((step, rest)) = request.embed.chain.split_last() {
        next.push(call_signature(
            step,
            prefix,
            request,
            rest.to_vec(),
            default_queue,
            origin,
        )?);
    }
    Ok(next)
}

/// What to do with an errback.
#[derive(Clone, Debug, PartialEq)]
pub enum Errback {
    /// Run it here, now, with these arguments.
    Run {
        task: String,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    },
    /// Send it as a task, with the failed task's id as its argument.
    Send(Box<Outgoing>),
}

impl PartialEq for Outgoing {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.route == other.route && self.body == other.body
    }
}

/// The errbacks of `request`, which raised, as Celery's worker treats them.
///
/// Celery calls an errback whose task is registered on the worker and
/// takes more than one argument (`in_place` says which) in place, as
/// `errback(request, exc, traceback)`: an immutable signature
/// (`add.si(0, 0)`) runs with its own args, and a mutable one gets those
/// three arguments first (`add` then raises `TypeError`, which Celery
/// logs). Any other errback is sent as a task with the failed task's id as
/// its first argument.
pub fn errbacks(
    request: &TaskRequest,
    in_place: impl Fn(&str) -> bool,
    default_queue: &str,
    origin: &str,
) -> Vec<Result<Errback, String>> {
    request
        .embed
        .errbacks
        .iter()
        .map(|sig| {
            let task = sig["task"].as_str().unwrap_or_default();
            if !in_place(task) {
                let id = Value::String(request.id.clone());
                return call_signature(sig, &[id], request, Vec::new(), default_queue, origin)
                    .map(|message| Errback::Send(Box::new(message)));
            }
            let own: Vec<Value> = match &sig["args"] {
                Value::Array(args) => args.clone(),
                _ => Vec::new(),
            };
            let kwargs = match &sig["kwargs"] {
                Value::Object(kwargs) => kwargs.clone(),
                _ => Map::new(),
            };
            let args = if sig["immutable"].as_bool().unwrap_or(false) {
                own
            } else {
                // request, exception, traceback: what Celery passes first.
                let mut args = vec![Value::Null, Value::Null, Value::Null];
                args.extend(own);
                args
            };
            Ok(Errback::Run {
                task: task.to_owned(),
                args,
                kwargs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ADD_TASK;
    use serde_json::json;

    fn request(embed: Embed) -> TaskRequest {
        TaskRequest {
            id: "t1".into(),
            task: ADD_TASK.into(),
            args: vec![json!(1), json!(2)],
            kwargs: Map::new(),
            eta: None,
            expires: None,
            root_id: Some("root".into()),
            retries: 0,
            time_limits: (None, None),
            stamps: Vec::new(),
            embed,
            trace: None,
        }
    }

    fn body(out: &Outgoing) -> Value {
        serde_json::from_slice(&out.body).unwrap()
    }

    #[test]
    fn the_next_step_of_a_chain_gets_the_result_and_the_rest() {
        let last = json!({"task": ADD_TASK, "args": ["!"], "kwargs": {}, "options": {"task_id": "t3", "reply_to": "r"}, "immutable": false});
        let next = json!({"task": ADD_TASK, "args": [" halaman"], "kwargs": {}, "options": {"task_id": "t2", "reply_to": "r", "queue": "q"}, "immutable": false});
        let req = request(Embed {
            chain: vec![last.clone(), next],
            ..Embed::default()
        });
        let out = after_success(&req, &json!("Kamu 4"), "celery", "1@h").unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, "t2");
        assert_eq!(out[0].route, Route::Queue("q".into()));
        let body = body(&out[0]);
        assert_eq!(body[0], json!(["Kamu 4", " halaman"]));
        assert_eq!(body[2]["chain"], json!([last]));
        let headers = out[0].properties.headers().as_ref().unwrap().inner();
        let text = |key: &str| match headers.get(key) {
            Some(lapin::types::AMQPValue::LongString(s)) => {
                String::from_utf8_lossy(s.as_bytes()).into_owned()
            }
            other => format!("{other:?}"),
        };
        assert_eq!(text("parent_id"), "t1");
        assert_eq!(text("root_id"), "root");
        assert_eq!(out[0].properties.reply_to().as_ref().unwrap().as_str(), "r");
    }

    /// Everything a traced task sends on (a chain step, a callback, the
    /// signatures `chunks` and `map` send: all made here) is sent from the
    /// task's span; an untraced task's carry no trace context.
    #[test]
    fn what_a_traced_task_sends_names_its_span() {
        let sig =
            json!({"task": ADD_TASK, "args": [1], "kwargs": {}, "options": {}, "immutable": false});
        let parent = crate::message::trace::TraceContext::parse(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .unwrap();
        let mut req = request(Embed::default());
        req.trace = Some(parent.child());
        let out = call_signature(&sig, &[], &req, Vec::new(), "celery", "w@h").unwrap();
        let headers = out.properties.headers().as_ref().unwrap().inner();
        let sent = crate::message::trace::TraceContext::from_headers(headers).unwrap();
        let task_span = req.trace.as_ref().unwrap();
        assert_eq!(sent.trace_id, parent.trace_id);
        assert_eq!(sent.span_id, task_span.span_id);
        req.trace = None;
        let out = call_signature(&sig, &[], &req, Vec::new(), "celery", "w@h").unwrap();
        let headers = out.properties.headers().as_ref().unwrap().inner();
        assert!(!headers.contains_key("traceparent"));
    }

    #[test]
    fn callbacks_get_the_result_unless_immutable_and_route_by_default() {
        let req = request(Embed {
            callbacks: vec![
                json!({"task": ADD_TASK, "args": [10], "options": {}, "immutable": false}),
                json!({"task": ADD_TASK, "args": [7, 8], "options": {}, "immutable": true}),
            ],
            ..Embed::default()
        });
        let out = after_success(&req, &json!(3), "tasks", "1@h").unwrap();
        assert_eq!(body(&out[0])[0], json!([3, 10]));
        assert_eq!(body(&out[1])[0], json!([7, 8]));
        assert_eq!(out[0].route, Route::Queue("tasks".into()));
        assert!(out[0].properties.reply_to().is_none());
    }

    #[test]
    fn errbacks_run_in_place_as_celery_runs_them() {
        let req = request(Embed {
            errbacks: vec![
                json!({"task": ADD_TASK, "args": [100, 1], "options": {}, "immutable": true}),
                json!({"task": ADD_TASK, "args": [10], "options": {}, "immutable": false}),
                json!({"task": "other.task", "args": [], "options": {"task_id": "e1"}, "immutable": false}),
            ],
            ..Embed::default()
        });
        let done = errbacks(&req, |task| task == ADD_TASK, "celery", "1@h");
        let run = |args: Vec<Value>| {
            Ok(Errback::Run {
                task: ADD_TASK.into(),
                args,
                kwargs: Map::new(),
            })
        };
        assert_eq!(done[0], run(vec![json!(100), json!(1)]));
        assert_eq!(
            done[1],
            run(vec![json!(null), json!(null), json!(null), json!(10)])
        );
        let Ok(Errback::Send(sent)) = &done[2] else {
            panic!("{:?}", done[2]);
        };
        assert_eq!(body(sent)[0], json!(["t1"]));
    }
}
