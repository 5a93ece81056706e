//! Running one delivery to the end: the task run (or not: revoked,
//! expired, unknown), its result answered to the caller and confirmed, what
//! comes next sent (chain steps, callbacks, errbacks), and only then the
//! message acked, or rejected if it can never run.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, BasicRejectOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::amqp::declare_task_queue;
use crate::message::{
    Poison, PyException, TaskRequest, failure_body, parse_task, result_properties, retry_body,
    retry_properties, revoked_body, success_body,
};
use crate::tasks::{Failure, SoftLimit, TaskContext, TaskOptions};
use crate::telemetry;
use crate::worker::canvas;
use crate::worker::control::{Node, TimeLimits};
use crate::worker::events::Events;
use crate::{Registry, TaskQueue};
use opentelemetry::trace::SpanKind;

/// The longest wait a time limit or a retry's countdown can ask for.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Longest wait for a result's confirm, an ack or a reject: on a connection
/// that died mid-call, lapin may never answer.
pub(super) const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the deliveries of one consuming session share.
pub(super) struct Session {
    /// What the worker reports to Celery's tools, and its revoked ids.
    pub(super) node: Arc<Node>,
    pub(super) events: Events,
    pub(super) channel: Channel,
    /// The queue the worker consumes: where a chain step without a queue of
    /// its own goes, and how a step's queue is declared.
    pub(super) task_queue: TaskQueue,
    /// `<pid>@<host>`, the `origin` of the messages this worker sends.
    pub(super) origin: String,
    /// Tasks held for their eta.
    pub(super) held: tokio::sync::Mutex<u32>,
    /// Cancelled when the session ends.
    pub(super) ended: CancellationToken,
}

/// What a delivery came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The task returned a value: answered SUCCESS, then acked.
    Succeeded(Value),
    /// The task raised: answered FAILURE, then acked (a normal failure).
    Raised(PyException),
    /// The message can never run (malformed, unknown task, wrong
    /// arguments): answered FAILURE where an answer can be addressed, then
    /// rejected without requeue.
    Refused(PyException),
    /// Not run, for this reason (`expired`): answered REVOKED, then acked.
    Revoked(String),
    /// Stopped while running (`revoke(terminate=True)`) with this signal:
    /// answered REVOKED (`terminated`), then acked.
    Terminated(i32),
    /// The task raised an exception its options retry on: sent again to
    /// run in so many seconds (confirmed), answered RETRY, then acked.
    Retry { exc: PyException, countdown: f64 },
}

/// Runs one delivery to the end: run (or not), answer, send what comes
/// next (chain, callbacks, errbacks), then ack or reject.
pub(super) async fn handle(session: &Session, delivery: Delivery) {
    let channel = &session.channel;
    let properties = &delivery.properties;
    let reply_to = properties
        .reply_to()
        .as_ref()
        .map(|r| r.as_str().to_owned());
    let correlation = properties
        .correlation_id()
        .as_ref()
        .map(|c| c.as_str().to_owned());
    let (request, outcome, sends) = match parse_task(properties, &delivery.data) {
        Ok(request) => {
            let (outcome, sends) = run_reported(session, &request).await;
            log_outcome(&request, &outcome);
            (Some(request), outcome, sends)
        }
        Err(Poison { reason, reply_id }) => {
            tracing::error!(%reason, "rejecting a message that cannot run");
            let exception = PyException::celery("celery.exceptions", "InvalidTaskError", reason);
            let stub = reply_id.map(|id| TaskRequest {
                id,
                ..TaskRequest::stub()
            });
            (stub, Outcome::Refused(exception), Vec::new())
        }
    };
    // A retry goes out (confirmed) before anything is said of it, as
    // Celery's `Task.retry` sends the message before the state; if it does
    // not, the message stays unacked and the broker hands it out again.
    if let (Some(request), Outcome::Retry { countdown, .. }) = (&request, &outcome)
        && !send_retry(session, &delivery, request, *countdown).await
    {
        return;
    }
    // A result goes to the correlation id the caller waits on (Celery sets
    // it to the task id); a message with neither cannot be answered.
    let replied = match (&request, reply_to) {
        (Some(request), Some(reply_to)) => {
            let answer_to = correlation.unwrap_or_else(|| request.id.clone());
            let body = result_body(&request.id, &outcome);
            reply(channel, &reply_to, &answer_to, &body).await
        }
        _ => true,
    };
    let sent_on = match (&request, &outcome) {
        (Some(request), Outcome::Succeeded(value)) => {
            send_signatures(session, request, &sends).await
                && send_next(session, request, value).await
        }
        (Some(request), Outcome::Raised(_)) => run_errbacks(session, request).await,
        _ => true,
    };
    match outcome {
        Outcome::Refused(_) => reject(&delivery).await,
        _ if replied && sent_on => ack(&delivery).await,
        // No confirmed result, or the next step not sent: leave the message
        // unacked, so the broker redelivers it when this channel goes.
        _ => {}
    }
}

/// Runs a request unless it was revoked or has expired, keeping the node's
/// books (`inspect active`, `stats`) and sending its task events. Returns
/// the outcome and the signatures of the tasks it sends on.
async fn run_reported(session: &Session, request: &TaskRequest) -> (Outcome, Vec<Value>) {
    let (node, events) = (&session.node, &session.events);
    let args = request.args_repr();
    events.task_event("task-received", || {
        json!({"uuid": request.id, "name": request.task, "args": args, "kwargs": "{}",
               "root_id": request.root_id, "parent_id": null, "retries": request.retries,
               "eta": request.eta.map(|t| t.to_rfc3339()),
               "expires": request.expires.map(|t| t.to_rfc3339())})
    });
    let revoked = if node.is_revoked(&request.id) || node.is_revoked_by_stamp(&request.stamps) {
        Some("revoked")
    } else if request.expired(chrono::Utc::now()) {
        Some("expired")
    } else {
        None
    };
    if let Some(reason) = revoked {
        events.task_event("task-revoked", || {
            json!({"uuid": request.id, "terminated": false, "signum": null,
                   "expired": reason == "expired"})
        });
        return (Outcome::Revoked(reason.into()), Vec::new());
    }
    let stop = node.start_task(&request.id, &request.task, &args, "{}");
    events.task_event("task-started", || json!({"uuid": request.id}));
    let started = std::time::Instant::now();
    let (outcome, sends) = tokio::select! {
        done = run_task(node, request) => done,
        signum = stop.requested() => (Outcome::Terminated(signum), Vec::new()),
    };
    node.finish_task(&request.id);
    match &outcome {
        Outcome::Succeeded(value) => events.task_event("task-succeeded", || {
            json!({"uuid": request.id, "result": crate::message::python_repr(value),
                   "runtime": started.elapsed().as_secs_f64()})
        }),
        Outcome::Raised(exc) | Outcome::Refused(exc) => events.task_event("task-failed", || {
            json!({"uuid": request.id, "exception": exc.repr(),
                   "traceback": ""})
        }),
        Outcome::Retry { exc, .. } => events.task_event(
            "task-retried",
            || json!({"uuid": request.id, "exception": exc.repr(), "traceback": ""}),
        ),
        Outcome::Terminated(signum) => events.task_event(
            "task-revoked",
            || json!({"uuid": request.id, "terminated": true, "signum": signum, "expired": false}),
        ),
        Outcome::Revoked(_) => {}
    }
    (outcome, sends)
}

/// Sends `request` again, as Celery's `Task.retry`: the same body and
/// properties (so the same id, `reply_to` and correlation id, and every
/// header, known or not), with `retries` one more and an `eta` `countdown`
/// seconds from now, to where the delivery came from; waits for the
/// broker's confirm. True if it went out.
async fn send_retry(
    session: &Session,
    delivery: &Delivery,
    request: &TaskRequest,
    countdown: f64,
) -> bool {
    // At most a century away, however the countdown was computed.
    let wait = Duration::try_from_secs_f64(countdown.max(0.0))
        .unwrap_or(CENTURY)
        .min(CENTURY);
    let now = chrono::Utc::now();
    let eta = chrono::Duration::from_std(wait)
        .ok()
        .and_then(|wait| now.checked_add_signed(wait))
        .unwrap_or(now);
    let properties = retry_properties(
        &delivery.properties,
        request.retries + 1,
        eta,
        request.trace.as_ref(),
    );
    let message = canvas::Outgoing {
        route: canvas::Route::Exchange {
            exchange: delivery.exchange.as_str().to_owned(),
            routing_key: delivery.routing_key.as_str().to_owned(),
        },
        id: request.id.clone(),
        task: request.task.clone(),
        body: delivery.data.clone(),
        properties,
    };
    publish_task(session, message).await
}

/// The result message for task `id` that came to `outcome`.
fn result_body(id: &str, outcome: &Outcome) -> Vec<u8> {
    match outcome {
        Outcome::Succeeded(value) => success_body(id, value),
        Outcome::Raised(exc) | Outcome::Refused(exc) => failure_body(id, exc),
        Outcome::Revoked(reason) => revoked_body(id, reason),
        Outcome::Terminated(_) => revoked_body(id, "terminated"),
        Outcome::Retry { exc, .. } => retry_body(id, exc),
    }
}

/// Sends the tasks a task sent on as it ran (the group of a
/// `celery.chunks`), each confirmed. True if all went out.
async fn send_signatures(session: &Session, request: &TaskRequest, sends: &[Value]) -> bool {
    for signature in sends {
        let queue = &session.task_queue.name;
        match canvas::call_signature(signature, &[], request, Vec::new(), queue, &session.origin) {
            Ok(message) => {
                if !publish_task(session, message).await {
                    return false;
                }
            }
            Err(reason) => tracing::error!(id = %request.id, %reason, "cannot send a task on"),
        }
    }
    true
}

/// Sends what comes after a task that succeeded (its callbacks and the
/// next step of its chain), each confirmed. True if all went out.
async fn send_next(session: &Session, request: &TaskRequest, result: &Value) -> bool {
    match canvas::after_success(request, result, &session.task_queue.name, &session.origin) {
        Ok(next) => {
            for message in next {
                if !publish_task(session, message).await {
                    return false;
                }
            }
            true
        }
        Err(reason) => {
            tracing::error!(id = %request.id, %reason, "cannot continue the workflow");
            true
        }
    }
}

/// Runs the errbacks of a task that raised, as Celery's worker does (see
/// [`canvas::errbacks`]): in place when the task is registered here and
/// takes more than one argument, else sent. True unless one that had to be
/// sent was not.
async fn run_errbacks(session: &Session, request: &TaskRequest) -> bool {
    let tasks = session.node.tasks();
    let in_place = |name: &str| {
        tasks
            .get(name)
            .is_some_and(|task| task.signature().takes_more_than(1))
    };
    let mut sent = true;
    let queue = &session.task_queue.name;
    for errback in canvas::errbacks(request, in_place, queue, &session.origin) {
        match errback {
            Ok(canvas::Errback::Run { task, args, kwargs }) => {
                let shown = crate::message::python_repr(&Value::Array(args.clone()));
                match tasks.run(&task, args, kwargs).await {
                    Ok(done) => {
                        tracing::info!(id = %request.id, "errback {task}{shown} returned {}", crate::message::python_repr(&done.value))
                    }
                    Err(failure) => {
                        tracing::error!(id = %request.id, "errback {task} raised an exception: {}", failure.exception())
                    }
                }
            }
            Ok(canvas::Errback::Send(message)) => sent &= publish_task(session, *message).await,
            Err(reason) => tracing::error!(id = %request.id, %reason, "cannot run an errback"),
        }
    }
    sent
}

/// Publishes a task message where it is routed, declaring a queue first as
/// Celery does, and waits for the broker's confirm.
async fn publish_task(session: &Session, message: canvas::Outgoing) -> bool {
    let channel = &session.channel;
    let (exchange, routing_key) = match &message.route {
        canvas::Route::Queue(queue) => {
            if let Err(err) = declare_task_queue(channel, &session.task_queue.named(queue)).await {
                tracing::warn!(%err, %queue, "cannot declare the next task's queue");
                return false;
            }
            (String::new(), queue.clone())
        }
        canvas::Route::Exchange {
            exchange,
            routing_key,
        } => (exchange.clone(), routing_key.clone()),
    };
    let published = async {
        channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &message.body,
                message.properties,
            )
            .await?
            .await
    };
    match tokio::time::timeout(SETTLE_TIMEOUT, published).await {
        Ok(Ok(confirm)) if confirm.is_ack() => {
            tracing::info!(task = %message.task, id = %message.id, %routing_key, "sent the next task");
            true
        }
        _ => {
            tracing::warn!(id = %message.id, "the next task was not confirmed; the task will be redelivered");
            false
        }
    }
}

fn log_outcome(request: &TaskRequest, outcome: &Outcome) {
    let (task, id) = (&request.task, &request.id);
    match outcome {
        Outcome::Succeeded(value) => {
            tracing::info!(target: "celery_pages::task", "Task {task}[{id}] succeeded: {}", crate::message::python_repr(value));
        }
        Outcome::Raised(exc) => {
            tracing::warn!(target: "celery_pages::task", "Task {task}[{id}] raised {exc}");
        }
        Outcome::Refused(exc) => tracing::error!(%task, %id, "rejecting: {exc}"),
        Outcome::Revoked(reason) => {
            tracing::warn!(target: "celery_pages::task", "Task {task}[{id}] revoked: {reason}");
        }
        Outcome::Retry { exc, countdown } => {
            tracing::info!(target: "celery_pages::task", "Task {task}[{id}] retry: Retry in {countdown}s: {}", exc.repr());
        }
        Outcome::Terminated(signum) => {
            tracing::warn!(target: "celery_pages::task", "Task {task}[{id}] terminated by signal {signum}");
        }
    }
}

/// Runs a request: an unknown task or arguments that do not fit are
/// refused; otherwise the task runs within its time limits (the message's
/// `timelimit`, else those `control time_limit` set or the task's options,
/// else the worker's) and returns, raises, or, raising an exception its
/// options retry on (or asking to) with retries left, is retried.
async fn run_task(node: &Node, request: &TaskRequest) -> (Outcome, Vec<Value>) {
    let tasks = node.tasks();
    let Some(task) = tasks.get(&request.task) else {
        let exc = crate::tasks::not_registered(&request.task);
        return (Outcome::Refused(exc), Vec::new());
    };
    // The message's own limits first (Celery's `timelimit` header).
    let (header_hard, header_soft) = request.time_limits;
    let (hard, soft) = node.time_limits(task);
    let limits = (header_hard.or(hard), header_soft.or(soft));
    let options = task.options();
    // Within the task's span: a task that calls others continues its trace.
    let _span = request.trace.as_ref().map(|context| {
        let name = format!("run/{}", request.task);
        telemetry::span(
            &name,
            SpanKind::Consumer,
            context,
            &request.id,
            &request.task,
        )
    });
    let run = run_limited(tasks, request, limits, task.is_plain());
    match crate::message::trace::scope(request.trace.clone(), run).await {
        Ok(done) => (Outcome::Succeeded(done.value), done.sends),
        Err(Failure::Raised(exc)) if TaskContext::is_retry(&exc) => {
            (asked_retry(options, request, exc), Vec::new())
        }
        Err(Failure::Raised(exc)) => {
            let jitter = uuid::Uuid::new_v4().as_u64_pair().0;
            match options.retry_after(&exc, request.retries, jitter) {
                Some(countdown) => (Outcome::Retry { exc, countdown }, Vec::new()),
                None => (Outcome::Raised(exc), Vec::new()),
            }
        }
        Err(Failure::NotRegistered(exc) | Failure::BadCall(exc)) => {
            (Outcome::Refused(exc), Vec::new())
        }
    }
}

/// What follows a task's own request to run again (`task.retry(...)`, as
/// Celery's `self.retry`): a retry while it has retries left, else its
/// exception, or Celery's `MaxRetriesExceededError` without one.
fn asked_retry(options: &TaskOptions, request: &TaskRequest, retry: PyException) -> Outcome {
    let countdown = retry
        .args
        .as_ref()
        .and_then(|args| args.first())
        .and_then(Value::as_f64)
        .unwrap_or(options.default_retry_delay);
    let mut retry = retry;
    match (options.retries_left(request.retries), retry.cause.take()) {
        (true, cause) => Outcome::Retry {
            exc: cause.map_or(retry, |cause| *cause),
            countdown,
        },
        (false, Some(cause)) => Outcome::Raised(*cause),
        (false, None) => {
            let kwargs = crate::message::python_repr(&Value::Object(request.kwargs.clone()));
            Outcome::Raised(PyException::celery(
                "celery.exceptions",
                "MaxRetriesExceededError",
                format!(
                    "Can't retry {}[{}] args:{} kwargs:{kwargs}",
                    request.task,
                    request.id,
                    request.args_repr()
                ),
            ))
        }
    }
}

/// Runs a request within its time limits, hard and soft (resolved by
/// [`run_task`]); `plain` says its task is a blocking function. At the
/// soft limit the task
/// is told; one that does not handle it is stopped and answered
/// `SoftTimeLimitExceeded()`. At the hard limit it is stopped and
/// answered `TimeLimitExceeded(<limit>,)`, and its slot is free at once.
///
/// Stopping an async task drops its future: it ends at the await it is
/// in. A plain (blocking) function cannot be stopped from outside, so
/// when a limit applies it runs on tokio's blocking pool: at the limit the
/// worker stops waiting for it, answers, and takes the next task, while
/// the function runs on to its end on that thread and its result is
/// thrown away.
async fn run_limited(
    tasks: &Arc<Registry>,
    request: &TaskRequest,
    (hard, soft): TimeLimits,
    plain: bool,
) -> Result<crate::tasks::Done, Failure> {
    let soft_limit = if soft.is_some() {
        SoftLimit::armed()
    } else {
        SoftLimit::default()
    };
    let context = TaskContext {
        id: request.id.clone(),
        retries: request.retries,
        soft_limit: soft_limit.clone(),
    };
    let (args, kwargs) = (request.args.clone(), request.kwargs.clone());
    if hard.is_none() && soft.is_none() {
        return tasks.run_as(&request.task, args, kwargs, context).await;
    }
    let started = tokio::time::Instant::now();
    let running: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = if plain {
        let (tasks, name) = (Arc::clone(tasks), request.task.clone());
        let blocking = tokio::task::spawn_blocking(move || {
            futures::executor::block_on(tasks.run_as(&name, args, kwargs, context))
        });
        Box::pin(async move {
            blocking.await.unwrap_or_else(|_| {
                Err(Failure::Raised(PyException::builtin(
                    "SystemError",
                    "the task panicked",
                )))
            })
        })
    } else {
        Box::pin(tasks.run_as(&request.task, args, kwargs, context))
    };
    tokio::pin!(running);
    // A limit from the network may be any size: past a century, never.
    let after = |seconds: f64| {
        let limit = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
        started.checked_add(limit.min(CENTURY)).unwrap_or(started)
    };
    if let Some(soft) = soft.filter(|soft| hard.is_none_or(|hard| *soft < hard)) {
        tokio::select! {
            done = &mut running => return done,
            () = tokio::time::sleep_until(after(soft)) => {}
        }
        tracing::warn!(id = %request.id, "Soft time limit ({soft}s) exceeded for {}[{}]", request.task, request.id);
        if plain || !soft_limit.pass() {
            return Err(Failure::Raised(PyException {
                args: Some(Vec::new()),
                ..PyException::celery(
                    "billiard.exceptions",
                    "SoftTimeLimitExceeded",
                    "SoftTimeLimitExceeded()",
                )
            }));
        }
    }
    let Some(hard) = hard else {
        return running.await;
    };
    tokio::select! {
        done = &mut running => done,
        () = tokio::time::sleep_until(after(hard)) => {
            tracing::error!("Hard time limit ({hard}s) exceeded for {}[{}]", request.task, request.id);
            let limit = crate::message::pyjson::seconds_value(hard);
            Err(Failure::Raised(PyException {
                message: format!("TimeLimitExceeded({},)", crate::message::python_repr(&limit)),
                args: Some(vec![limit]),
                ..PyException::celery("billiard.exceptions", "TimeLimitExceeded", "")
            }))
        }
    }
}

/// Publishes a result to `reply_to` and waits for the broker's confirm.
/// True if it is safe to ack: the result is with the broker.
async fn reply(channel: &Channel, reply_to: &str, correlation_id: &str, body: &[u8]) -> bool {
    let published = async {
        channel
            .basic_publish(
                "".into(),
                reply_to.into(),
                BasicPublishOptions::default(),
                body,
                result_properties(correlation_id),
            )
            .await?
            .await
    };
    let Ok(published) = tokio::time::timeout(SETTLE_TIMEOUT, published).await else {
        tracing::warn!(%reply_to, "no confirm for a result; the task will be redelivered");
        return false;
    };
    match published {
        Ok(confirm) if confirm.is_ack() => true,
        Ok(_) => {
            tracing::warn!(%reply_to, "the broker refused a result; the task will be redelivered");
            false
        }
        Err(err) => {
            tracing::warn!(%err, "could not publish a result; the task will be redelivered");
            false
        }
    }
}

async fn ack(delivery: &Delivery) {
    let acked = tokio::time::timeout(
        SETTLE_TIMEOUT,
        delivery.acker.ack(BasicAckOptions::default()),
    );
    match acked.await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!(%err, "ack failed; the broker will redeliver the task"),
        Err(_) => tracing::warn!("ack timed out; the broker will redeliver the task"),
    }
}

async fn reject(delivery: &Delivery) {
    let rejected = delivery.acker.reject(BasicRejectOptions { requeue: false });
    match tokio::time::timeout(SETTLE_TIMEOUT, rejected).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!(%err, "reject failed"),
        Err(_) => tracing::warn!("reject timed out"),
    }
}
