//! The caller: publishes tasks as Python Celery 5 does and collects their
//! results from its own reply queue (Celery's `rpc://` backend).
//!
//! One connection serves any number of calls at once: each call registers
//! its task id before publishing, and a single consumer on the reply queue
//! hands every result to the call waiting for it.

pub mod control;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{Channel, Connection};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::amqp::{declare_task_queue, reply_queue};
use crate::message::trace::TraceContext;
use crate::message::{Embed, TaskMessage, TaskOutcome, parse_result};
use crate::telemetry;
use crate::{Broker, Error, Result, TaskQueue};
use opentelemetry::trace::SpanKind;

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, crate::PyException>>>>>;

/// A connection to the broker that sends tasks and receives their results.
pub struct Caller {
    connection: Connection,
    channel: Channel,
    queue: TaskQueue,
    /// Set once the delay queues are declared (on the first delayed task
    /// that waits in the broker).
    delay_ladder: tokio::sync::OnceCell<()>,
    reply_queue: String,
    origin: String,
    waiting: Waiting,
    /// How task bodies are compressed, if at all.
    compression: Option<crate::message::compression::Compression>,
}

/// A task that was sent and whose result may still come.
pub struct PendingResult {
    pub id: String,
    queue: String,
    result: oneshot::Receiver<Result<Value, crate::PyException>>,
}

impl PendingResult {
    /// Waits up to `timeout` for the result.
    pub async fn wait(self, timeout: Duration) -> Result<Value> {
        match tokio::time::timeout(timeout, self.result).await {
            Err(_) => Err(Error::Timeout {
                id: self.id,
                queue: self.queue,
                timeout,
            }),
            Ok(Err(_)) => Err(Error::ResultLost { id: self.id }),
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(exception))) => Err(Error::TaskFailed {
                id: self.id,
                exception: Box::new(exception),
            }),
        }
    }
}

impl Caller {
    /// Connects to `broker`, declares the task `queue` (as Celery does) and
    /// a reply queue of its own (exclusive: it goes away with the caller).
    pub async fn connect(broker: &Broker, queue: impl Into<TaskQueue>) -> Result<Self> {
        let queue = queue.into();
        let connection = broker.connect().await?;
        let channel = crate::amqp::confirming_channel(&connection).await?;
        declare_task_queue(&channel, &queue)
            .await
            .map_err(Error::or_refusal)?;
        let (reply_queue, results) = reply_queue(&channel, "celery_pages-caller").await?;
        let waiting: Waiting = Arc::default();
        tokio::spawn(route_results(results, Arc::clone(&waiting)));
        Ok(Caller {
            connection,
            channel,
            queue,
            delay_ladder: tokio::sync::OnceCell::new(),
            reply_queue,
            origin: crate::message::origin(),
            waiting,
            compression: None,
        })
    }

    /// Compresses the tasks it sends from now on with `method`, as kombu's
    /// `apply_async(..., compression=...)` does.
    pub fn compress_with(&mut self, method: Option<crate::message::compression::Compression>) {
        self.compression = method;
    }

    /// Publishes task `task` with positional `args` and waits for the
    /// broker to confirm it holds the message.
    /// `args` is anything serde writes as a list: a tuple of typed values
    /// (`(4, 10)`), a `Vec`, a slice of JSON values.
    pub async fn send(&self, task: &str, args: impl Serialize) -> Result<PendingResult> {
        self.send_later(task, args, None).await
    }

    /// [`Self::send`], to be run no earlier than `countdown` from now
    /// (Celery's `apply_async(countdown=...)`: an `eta` header). On a quorum
    /// queue behind a topic or fanout exchange the task waits in the broker
    /// until then (native delayed delivery, see [`crate::amqp::delayed`]), as
    /// Celery's caller sends it.
    pub async fn send_later(
        &self,
        task: &str,
        args: impl Serialize,
        countdown: Option<Duration>,
    ) -> Result<PendingResult> {
        let args = positional(task, args)?;
        let args = args.as_slice();
        let id = uuid::Uuid::new_v4().to_string();
        let eta = countdown
            .and_then(|c| chrono::Duration::from_std(c).ok())
            .map(|c| chrono::Utc::now() + c);
        let route = match countdown {
            Some(countdown) => self.delayed_route(countdown).await?,
            None => None,
        };
        let pending = self.expect(&id);
        let message = TaskMessage {
            id: &id,
            task,
            args,
            reply_to: Some(&self.reply_queue),
            origin: &self.origin,
            eta,
            compression: self.compression,
            trace: Some(TraceContext::for_publish()),
            ..TaskMessage::default()
        };
        match route {
            Some((exchange, routing_key)) => {
                self.publish_to(exchange, &routing_key, &message).await?
            }
            None => self.publish(&message).await?,
        }
        Ok(pending)
    }

    /// Where a task due in `countdown` waits in the broker, if it can (the
    /// delay queues declared first); `None` when it goes straight to its
    /// queue, with Celery's warning where the exchange is the reason.
    async fn delayed_route(&self, countdown: Duration) -> Result<Option<(&'static str, String)>> {
        let queue = &self.queue;
        if queue.kind == crate::QueueType::Quorum && !queue.delays_in_broker() {
            tracing::warn!(
                "direct exchanges are not supported with native delayed delivery: {} is a \
                 direct exchange, so the worker holds this task until its eta",
                queue.name
            );
        }
        let Some(route) = crate::amqp::delayed::publish_target(countdown.as_secs(), queue) else {
            return Ok(None);
        };
        self.delay_ladder
            .get_or_try_init(|| crate::amqp::delayed::declare_levels(&self.channel))
            .await?;
        Ok(Some(route))
    }

    /// Sends a chain, as Celery's `chain(task.s(*first), task.s(*rest[0]),
    /// ...)` does: one message, the first call, carrying the other steps;
    /// each step gets the previous step's result prepended to its args.
    /// Returns the result of every step, in order (the last is the chain's).
    pub async fn send_chain(
        &self,
        task: &str,
        first: &[Value],
        rest: &[Vec<Value>],
    ) -> Result<Vec<PendingResult>> {
        let ids: Vec<String> = (0..=rest.len())
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let mut steps: Vec<Value> = rest
            .iter()
            .zip(&ids[1..])
            .map(|(args, id)| {
                json!({
                    "task": task,
                    "args": args,
                    "kwargs": {},
                    "options": {"task_id": id, "reply_to": self.reply_queue},
                    "subtask_type": null,
                    "immutable": false,
                })
            })
            .collect();
        steps.reverse(); // the next step is the last element
        let pending: Vec<PendingResult> = ids.iter().map(|id| self.expect(id)).collect();
        let sent = self
            .publish(&TaskMessage {
                id: &ids[0],
                task,
                args: first,
                reply_to: Some(&self.reply_queue),
                origin: &self.origin,
                embed: Embed {
                    chain: steps,
                    ..Embed::default()
                },
                trace: Some(TraceContext::for_publish()),
                ..TaskMessage::default()
            })
            .await;
        if let Err(err) = sent {
            let mut waiting = self.waiting.lock().expect("waiting map poisoned");
            for id in &ids {
                waiting.remove(id);
            }
            return Err(err);
        }
        Ok(pending)
    }

    /// Registers interest in the result of task `id` (before it is sent, so
    /// it cannot be missed).
    fn expect(&self, id: &str) -> PendingResult {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("waiting map poisoned")
            .insert(id.to_owned(), tx);
        PendingResult {
            id: id.to_owned(),
            queue: self.queue.name.clone(),
            result: rx,
        }
    }

    /// Publishes a task message to the task queue and waits for the
    /// broker's confirm.
    async fn publish(&self, message: &TaskMessage<'_>) -> Result<()> {
        self.publish_to("", &self.queue.name, message).await
    }

    /// Publishes a task message to `exchange` by `routing_key` and waits for
    /// the broker's confirm.
    async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &TaskMessage<'_>,
    ) -> Result<()> {
        let (body, properties) = message.encode();
        // The publish's own span, as OpenTelemetry's instrumentation makes one.
        let _span = message.trace.as_ref().map(|context| {
            let name = format!("apply_async/{}", message.task);
            telemetry::span(&name, SpanKind::Producer, context, message.id, message.task)
        });
        let confirmed = async {
            self.channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?
                .await
        }
        .await;
        let failed = match confirmed {
            Ok(confirm) if confirm.is_ack() => None,
            Ok(_) => Some(Error::NotConfirmed),
            Err(source) => Some(Error::Amqp {
                doing: "publishing the task",
                source,
            }),
        };
        match failed {
            None => Ok(()),
            Some(err) => {
                self.waiting
                    .lock()
                    .expect("waiting map poisoned")
                    .remove(message.id);
                Err(err)
            }
        }
    }

    /// Sends task `task` with `args` (see [`Self::send`]) and waits up to
    /// `timeout` for its result, read as an `R`.
    ///
    /// ```no_run
    /// # async fn pages(caller: &celery_pages::Caller) -> celery_pages::Result<()> {
    /// let timeout = std::time::Duration::from_secs(10);
    /// let pages: u64 = caller.call("pages.multiply", (120, 3), timeout).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call<R: DeserializeOwned>(
        &self,
        task: &str,
        args: impl Serialize,
        timeout: Duration,
    ) -> Result<R> {
        let pending = self.send(task, args).await?;
        let id = pending.id.clone();
        let value = pending.wait(timeout).await?;
        serde_json::from_value(value).map_err(|err| Error::ResultType {
            id,
            reason: err.to_string(),
        })
    }

    /// Closes the connection (the reply queue goes with it).
    pub async fn close(self) {
        let _ = self.connection.close(200, "caller done".into()).await;
    }
}

/// Task arguments as Celery's positional `args` list.
fn positional(task: &str, args: impl Serialize) -> Result<Vec<Value>> {
    match serde_json::to_value(args) {
        Ok(Value::Array(args)) => Ok(args),
        Ok(other) => Err(Error::Arguments {
            task: task.to_owned(),
            reason: format!("they make {other}, not a list (pass a tuple, a Vec or a slice)"),
        }),
        Err(err) => Err(Error::Arguments {
            task: task.to_owned(),
            reason: err.to_string(),
        }),
    }
}

/// Hands each result to the call waiting for it; when the consumer ends,
/// every waiting call learns its result is lost.
async fn route_results(mut results: lapin::Consumer, waiting: Waiting) {
    while let Some(Ok(delivery)) = results.next().await {
        let (id, outcome) = match parse_result(&delivery.data) {
            Ok(parsed) => parsed,
            Err(reason) => {
                tracing::warn!(%reason, "ignoring a malformed result message");
                continue;
            }
        };
        let outcome = match outcome {
            TaskOutcome::Success(value) => Ok(value),
            TaskOutcome::Failure(exception) => Err(exception),
            TaskOutcome::Pending(state) => {
                tracing::debug!(%id, %state, "task state");
                continue;
            }
        };
        match waiting.lock().expect("waiting map poisoned").remove(&id) {
            Some(tx) => {
                let _ = tx.send(outcome);
            }
            None => tracing::debug!(%id, "result for a task nobody waits for (a redelivered task)"),
        }
    }
    waiting.lock().expect("waiting map poisoned").clear();
}
