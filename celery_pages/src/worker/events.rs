//! Celery's events, so that `celery events`, Flower and anything else that
//! listens on the `celeryev` exchange see this worker as a Python one.
//!
//! A worker always announces itself (`worker-online`), beats every
//! [`HEARTBEAT`] (`worker-heartbeat`, with how many tasks it runs and has
//! run) and says goodbye (`worker-offline`). With task events on (`-E`, or
//! the `enable_events` command, which Flower sends every few seconds) it
//! also reports each task: received, started, succeeded, failed, revoked.
//!
//! Events never hold a task up: they are published without confirms, from a
//! queue of their own with a bound (when it is full an event is dropped and
//! counted, never waited for), and task events are sent in batches, a JSON
//! list on `task.multi`, as Celery's own worker batches them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::worker::control::Node;
use crate::{AmqpContext, Result};

/// The topic exchange events go to.
pub const EXCHANGE: &str = "celeryev";
/// How often a worker beats (Celery's default).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Task events waiting to be sent at most; more are dropped.
const BACKLOG: usize = 10_000;
/// A batch of task events goes out when it has this many, or after
/// [`BATCH_WAIT`].
const BATCH: usize = 100;
const BATCH_WAIT: Duration = Duration::from_millis(100);

/// An event with the fields every event has.
pub fn event(node: &Node, kind: &str, fields: Value) -> Value {
    let mut event = match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let now = chrono::Utc::now();
    let offset = chrono::Local::now().offset().local_minus_utc();
    event.insert("hostname".into(), json!(node.name));
    // Hours, positive west of UTC, as Python's time.timezone.
    event.insert("utcoffset".into(), json!(-offset / 3600));
    event.insert("pid".into(), json!(std::process::id()));
    event.insert("clock".into(), json!(node.tick()));
    event.insert(
        "timestamp".into(),
        json!(now.timestamp_micros() as f64 / 1e6),
    );
    event.insert("type".into(), json!(kind));
    Value::Object(event)
}

/// The sending side of one connection's events.
#[derive(Clone, Debug)]
pub struct Events {
    node: Arc<Node>,
    channel: Channel,
    tasks: mpsc::Sender<Value>,
}

impl Events {
    /// Opens a channel for events on `connection`, announces the worker,
    /// and starts its heartbeats and the task-event batcher, which stop when
    /// `ended` is cancelled.
    pub async fn start(
        connection: &Connection,
        node: Arc<Node>,
        ended: CancellationToken,
    ) -> Result<Events> {
        let channel = connection
            .create_channel()
            .await
            .doing("opening the events channel")?;
        crate::amqp::declare_durable_exchange(
            &channel,
            EXCHANGE,
            ExchangeKind::Topic,
            "declaring the events exchange",
        )
        .await?;
        let (tasks, backlog) = mpsc::channel(BACKLOG);
        let events = Events {
            node,
            channel,
            tasks,
        };
        events.worker_event("worker-online").await;
        tokio::spawn(events.clone().beat(ended.clone()));
        tokio::spawn(events.clone().batch(backlog, ended));
        Ok(events)
    }

    /// Sends `worker-online`, `worker-heartbeat` or `worker-offline`.
    pub async fn worker_event(&self, kind: &str) {
        let fields = json!({
            "freq": HEARTBEAT.as_secs_f64(),
            "active": self.node.active_count(),
            "processed": self.node.processed(),
            "loadavg": loadavg(),
            "sw_ident": "celery_pages",
            "sw_ver": env!("CARGO_PKG_VERSION"),
            "sw_sys": system_name(),
        });
        let event = event(&self.node, kind, fields);
        self.publish(&kind.replace('-', "."), &event).await;
    }

    /// Queues a task event, if task events are on. Never waits: with the
    /// backlog full, the event is dropped.
    pub fn task_event(&self, kind: &str, fields: impl FnOnce() -> Value) {
        // Built only when task events are on: off, a task costs nothing here.
        if !self.node.task_events.load(Ordering::Relaxed) {
            return;
        }
        if self
            .tasks
            .try_send(event(&self.node, kind, fields()))
            .is_err()
        {
            tracing::debug!(%kind, "task event dropped: the backlog is full");
        }
    }

    async fn beat(self, ended: CancellationToken) {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        ticks.tick().await; // the first tick is now: online was just sent
        loop {
            tokio::select! {
                _ = ticks.tick() => self.worker_event("worker-heartbeat").await,
                () = ended.cancelled() => return,
                () = self.node.heartbeat_requested.notified() => {
                    self.worker_event("worker-heartbeat").await;
                }
            }
        }
    }

    async fn batch(self, mut backlog: mpsc::Receiver<Value>, ended: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let first = tokio::select! {
                next = backlog.recv() => next,
                () = ended.cancelled() => None,
            };
            let Some(first) = first else {
                return;
            };
            batch.push(first);
            let until = tokio::time::Instant::now() + BATCH_WAIT;
            while batch.len() < BATCH {
                match tokio::time::timeout_at(until, backlog.recv()).await {
                    Ok(Some(event)) => batch.push(event),
                    _ => break,
                }
            }
            let events = Value::Array(std::mem::take(&mut batch));
            self.publish("task.multi", &events).await;
        }
    }

    async fn publish(&self, routing_key: &str, body: &Value) {
        let mut headers = FieldTable::default();
        headers.insert(
            "hostname".into(),
            AMQPValue::LongString(LongString::from(self.node.name.as_str())),
        );
        let properties = crate::message::transient_json(headers);
        if let Err(err) = self
            .channel
            .basic_publish(
                EXCHANGE.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body.to_string().as_bytes(),
                properties,
            )
            .await
        {
            tracing::debug!(%err, %routing_key, "an event could not be sent");
        }
    }
}

/// The system's name as Python's `platform.system()` gives it (`Linux`).
fn system_name() -> String {
    let os = std::env::consts::OS;
    let mut chars = os.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The load averages, as Celery reports them (three floats).
fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loads: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    json!(loads)
}
