//! Celery's remote control ("the pidbox"), so that `celery inspect`,
//! `celery control`, `celery status` and `app.control.revoke` reach this
//! worker as they reach a Python one.
//!
//! Every worker has a node name (`celery@<host>` by default) and consumes
//! an exclusive queue `<node>.celery.pidbox` bound to the fanout exchange
//! `celery.pidbox`. A command is a JSON message `{"method", "arguments",
//! "destination", "ticket", "reply_to"}`; a worker acts when `destination`
//! is null or names it, and answers `{node: reply}` to the `reply_to`
//! exchange and routing key when there is one. [`Node`] holds what the
//! answers report; [`serve`] consumes the queue. The other side, sending a
//! command, is [`crate::caller::control`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::amqp::pidbox::{EXCHANGE, declare_exchanges};
use crate::worker::rate::{RateLimits, per_second};
use crate::{AmqpContext, Error, Result};

/// A queue as kombu's `Queue.as_dict` describes it (`inspect
/// active_queues`).
fn kombu_queue(queue: &crate::TaskQueue) -> Value {
    json!({
        "name": queue.name,
        "exchange": {"name": queue.name, "type": queue.exchange.as_str(),
                     "arguments": null,
                     "durable": true, "passive": false, "auto_delete": false,
                     "delivery_mode": null, "no_declare": false},
        "routing_key": queue.name,
        "queue_arguments": match queue.kind {
            crate::QueueType::Classic => Value::Null,
            crate::QueueType::Quorum => json!({"x-queue-type": "quorum"}),
        },
        "binding_arguments": null,
        "consumer_arguments": null,
        "durable": true,
        "exclusive": false,
        "auto_delete": false,
        "no_ack": false,
        "alias": null,
        "bindings": [],
        "no_declare": null,
        "expires": null,
        "message_ttl": null,
        "max_length": null,
        "max_length_bytes": null,
        "max_priority": null,
    })
}

/// The most queues a worker consumes at once (`add_consumer`).
pub const MAX_QUEUES: usize = 256;
/// The most tasks `pool_grow` lets a worker run at once.
pub const MAX_CONCURRENCY: usize = 4096;
/// Revoked ids kept at most, and for how long (Celery's figures).
pub const REVOKED_MAX: usize = 50_000;
pub const REVOKED_TTL: Duration = Duration::from_secs(3 * 3600);

/// Task ids revoked by `app.control.revoke`, bounded in number and age.
#[derive(Debug, Default)]
struct Revoked {
    ids: HashMap<String, Instant>,
    order: VecDeque<(String, Instant)>,
}

impl Revoked {
    fn insert(&mut self, id: String, now: Instant) {
        self.expire(now);
        while self.ids.len() >= REVOKED_MAX {
            match self.order.pop_front() {
                Some((oldest, _)) => {
                    self.ids.remove(&oldest);
                }
                None => break,
            }
        }
        self.ids.insert(id.clone(), now);
        self.order.push_back((id, now));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((id, at)) = self.order.front() {
            if now.duration_since(*at) < REVOKED_TTL {
                break;
            }
            if self.ids.get(id) == Some(at) {
                self.ids.remove(id);
            }
            self.order.pop_front();
        }
    }

    fn contains(&mut self, id: &str, now: Instant) -> bool {
        self.expire(now);
        self.ids.contains_key(id)
    }
}

/// A task being run, for `inspect active`.
#[derive(Clone, Debug)]
struct Active {
    name: String,
    args: String,
    kwargs: String,
    started: f64,
    stop: std::sync::Arc<Stop>,
}

/// How a running task is told to stop (`revoke(terminate=True)`,
/// `control terminate`), and with which signal, as Celery reports it.
#[derive(Debug, Default)]
pub struct Stop {
    token: tokio_util::sync::CancellationToken,
    signum: std::sync::atomic::AtomicI32,
}

impl Stop {
    /// Completes when the task is told to stop; gives the signal's number.
    pub async fn requested(&self) -> i32 {
        self.token.cancelled().await;
        self.signum.load(Ordering::Relaxed)
    }
}

/// This process's resident memory, in bytes (Linux's `/proc/self/statm`).
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Bytes as Celery's `humanbytes` writes them: `12.5MB`, `3KB`, `100b`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [(f64, &str); 5] = [
        (1_099_511_627_776.0, "TB"),
        (1_073_741_824.0, "GB"),
        (1_048_576.0, "MB"),
        (1024.0, "KB"),
        (0.0, "b"),
    ];
    let size = bytes as f64;
    let (div, unit) = UNITS
        .into_iter()
        .find(|(div, _)| size >= *div)
        .unwrap_or((0.0, "b"));
    let value = if div > 0.0 { size / div } else { size };
    // Python's hfloat: an int when whole, else 5 significant digits.
    if value.fract() == 0.0 {
        format!("{}{unit}", value as u64)
    } else {
        let digits = 5 - (value.abs().log10().floor() as i32 + 1);
        let rounded = format!("{:.*}", digits.max(0) as usize, value);
        let trimmed = rounded.trim_end_matches('0').trim_end_matches('.');
        format!("{trimmed}{unit}")
    }
}

/// The rate limits the tasks' own options set.
fn initial_rate_limits(tasks: &crate::Registry) -> RateLimits {
    let mut limits = RateLimits::default();
    for task in tasks.tasks() {
        let Some(limit) = &task.options().rate_limit else {
            continue;
        };
        match per_second(&Value::String(limit.clone())) {
            Ok(rate) => limits.set(task.name(), limit, rate),
            Err(err) => tracing::warn!(
                task = task.name(),
                "ignoring the rate limit {limit:?}: {err}"
            ),
        }
    }
    limits
}

/// A stamp's values: a list's items, or the one value.
fn stamp_values(value: &Value) -> &[Value] {
    match value {
        Value::Array(values) => values,
        one => std::slice::from_ref(one),
    }
}

/// Time limits in seconds: hard, then soft (as Celery's `timelimit`).
pub type TimeLimits = (Option<f64>, Option<f64>);

/// The number of a signal given by name (`TERM`, `SIGKILL`, ...) or
/// number, as Celery's `signals.signum`; `None` if unknown.
fn signum(signal: &Value) -> Option<i32> {
    match signal {
        Value::Null => Some(15),
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(name) => {
            let name = name.to_ascii_uppercase();
            let name = name.strip_prefix("SIG").unwrap_or(&name);
            Some(match name {
                "HUP" => 1,
                "INT" => 2,
                "QUIT" => 3,
                "KILL" => 9,
                "USR1" => 10,
                "USR2" => 12,
                "TERM" => 15,
                _ => return name.parse().ok(),
            })
        }
        _ => None,
    }
}

/// What a worker node reports about itself, and what commands change.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    queue: crate::TaskQueue,
    broker: crate::Broker,
    /// Tasks run at once; `pool_grow` and `pool_shrink` change it.
    concurrency: std::sync::atomic::AtomicUsize,
    /// The current session's slots (one per task run at once).
    slots: Mutex<std::sync::Arc<tokio::sync::Semaphore>>,
    /// Time limits set by `control time_limit`, by task type: (hard, soft).
    time_limits: Mutex<HashMap<String, TimeLimits>>,
    /// The worker's own time limits (`--time-limit`, `--soft-time-limit`).
    default_time_limits: TimeLimits,
    /// The queues to consume, in order (`-Q`, `add_consumer`,
    /// `cancel_consumer`); the worker follows changes at once.
    queues: Mutex<Vec<String>>,
    /// Notified when `queues` changes.
    pub queues_changed: Notify,
    /// Stamps revoked by `revoke_by_stamped_headers`: (header, JSON value).
    revoked_stamps: Mutex<std::collections::HashSet<(String, String)>>,
    /// Resident memory samples taken by `memsample`, the last 100.
    memory_samples: Mutex<VecDeque<u64>>,
    /// Messages the broker sends ahead (before held tasks are added);
    /// `pool_grow` and `pool_shrink` change it by four per slot, as
    /// Celery's prefetch multiplier.
    prefetch: std::sync::atomic::AtomicU32,
    /// Notified when `prefetch` changes.
    pub prefetch_changed: Notify,
    started: Instant,
    processed: AtomicU64,
    /// Tasks run so far, by name (`inspect stats`' `total`).
    totals: Mutex<HashMap<String, u64>>,
    clock: AtomicU64,
    active: Mutex<HashMap<String, Active>>,
    revoked: Mutex<Revoked>,
    /// Notified by the `shutdown` command.
    pub shutdown: Notify,
    /// The tasks it runs.
    tasks: std::sync::Arc<crate::Registry>,
    /// Their rate limits, which `control rate_limit` changes.
    rate_limits: Mutex<RateLimits>,
    /// Whether any task type has a rate limit: without one, deliveries
    /// skip the lookup.
    rate_limited: AtomicBool,
    /// Notified by the `heartbeat` command: send one now.
    pub heartbeat_requested: Notify,
    /// Whether task events are sent (`-E`, `enable_events`).
    pub task_events: AtomicBool,
}

impl Node {
    pub fn new(name: &str, config: &crate::worker::config::WorkerConfig) -> Self {
        let rate_limits = initial_rate_limits(&config.tasks);
        let rate_limited = !rate_limits.is_empty();
        Node {
            name: name.to_owned(),
            queue: config.task_queue(),
            broker: config.broker.clone(),
            concurrency: std::sync::atomic::AtomicUsize::new(config.concurrency.max(1)),
            slots: Mutex::new(std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.concurrency.max(1),
            ))),
            time_limits: Mutex::new(HashMap::new()),
            default_time_limits: (config.time_limit, config.soft_time_limit),
            memory_samples: Mutex::new(VecDeque::new()),
            revoked_stamps: Mutex::new(std::collections::HashSet::new()),
            queues: Mutex::new(config.consumed_queues()),
            queues_changed: Notify::new(),
            prefetch: std::sync::atomic::AtomicU32::new(config.prefetch.into()),
            prefetch_changed: Notify::new(),
            started: Instant::now(),
            processed: AtomicU64::new(0),
            totals: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            active: Mutex::new(HashMap::new()),
            revoked: Mutex::new(Revoked::default()),
            shutdown: Notify::new(),
            tasks: std::sync::Arc::clone(&config.tasks),
            rate_limits: Mutex::new(rate_limits),
            rate_limited: AtomicBool::new(rate_limited),
            heartbeat_requested: Notify::new(),
            task_events: AtomicBool::new(config.task_events),
        }
    }

    /// Slots for a new session: as many as the concurrency now; `pool_grow`
    /// and `pool_shrink` act on them.
    pub fn new_slots(&self) -> std::sync::Arc<tokio::sync::Semaphore> {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(self.concurrency()));
        *self.slots.lock().expect("slots poisoned") = std::sync::Arc::clone(&slots);
        slots
    }

    /// The queues to consume now.
    pub fn queues(&self) -> Vec<String> {
        self.queues.lock().expect("queues poisoned").clone()
    }

    /// `add_consumer` (`add`) or `cancel_consumer`: changes the queues the
    /// worker consumes, with Celery's replies.
    fn change_queues(&self, arguments: &Value, add: bool) -> Value {
        let Some(queue) = arguments["queue"]
            .as_str()
            .filter(|q| !q.is_empty() && q.len() <= 255)
        else {
            return json!({"error": "a queue name is needed"});
        };
        {
            let mut queues = self.queues.lock().expect("queues poisoned");
            if add && !queues.iter().any(|q| q == queue) && queues.len() < MAX_QUEUES {
                queues.push(queue.to_owned());
            } else if !add {
                queues.retain(|q| q != queue);
            }
        }
        self.queues_changed.notify_one();
        if add {
            json!({"ok": format!("add consumer {queue}")})
        } else {
            json!({"ok": format!("no longer consuming from {queue}")})
        }
    }

    /// Messages the broker sends ahead, now (held tasks not counted).
    pub fn prefetch(&self) -> u32 {
        self.prefetch.load(Ordering::Relaxed)
    }

    /// Changes the prefetch by four per slot added (`more`) or taken away,
    /// as Celery's worker does when its pool grows or shrinks.
    fn follow_pool(&self, slots: usize, more: bool) {
        let change = u32::try_from(slots.saturating_mul(4)).unwrap_or(u32::MAX);
        let now = self.prefetch();
        let new = if more {
            now.saturating_add(change)
        } else {
            now.saturating_sub(change).max(1)
        };
        self.prefetch.store(new, Ordering::Relaxed);
        self.prefetch_changed.notify_one();
    }

    /// Tasks run at once, now.
    pub fn concurrency(&self) -> usize {
        self.concurrency.load(Ordering::Relaxed)
    }

    /// The tasks it runs.
    pub fn tasks(&self) -> &std::sync::Arc<crate::Registry> {
        &self.tasks
    }

    /// The time limits for tasks of type `task` whose message sets none:
    /// those `control time_limit` set for the type, else the task's
    /// options; each one not set there, the worker's own.
    pub fn time_limits(&self, task: &crate::Task) -> TimeLimits {
        let set = self
            .time_limits
            .lock()
            .expect("time limits poisoned")
            .get(task.name())
            .copied();
        let options = task.options();
        let (hard, soft) = set.unwrap_or((options.time_limit, options.soft_time_limit));
        let (worker_hard, worker_soft) = self.default_time_limits;
        (hard.or(worker_hard), soft.or(worker_soft))
    }

    /// The task `arguments` names (`task_name`), if this worker has it.
    fn known_task<'a>(&self, arguments: &'a Value, doing: &str) -> Option<&'a str> {
        let name = arguments["task_name"]
            .as_str()
            .filter(|name| self.tasks.get(name).is_some());
        if name.is_none() {
            tracing::error!(
                "{doing} attempt for unknown task {}",
                arguments["task_name"]
            );
        }
        name
    }

    /// `pool_grow` (`grow`) or `pool_shrink`: `n` more or fewer slots (one
    /// at least); a slot in use goes when its task ends.
    fn resize(&self, arguments: &Value, grow: bool) -> Value {
        let n = arguments["n"].as_u64().unwrap_or(1);
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(10_000);
        let slots = std::sync::Arc::clone(&self.slots.lock().expect("slots poisoned"));
        if grow {
            let more = n.min(MAX_CONCURRENCY.saturating_sub(self.concurrency()));
            self.concurrency.fetch_add(more, Ordering::Relaxed);
            slots.add_permits(more);
            self.follow_pool(more, true);
            return json!({"ok": "pool will grow"});
        }
        let now = self.concurrency();
        let fewer = n.min(now.saturating_sub(1));
        self.concurrency.store(now - fewer, Ordering::Relaxed);
        self.follow_pool(fewer, false);
        if let Ok(fewer) = u32::try_from(fewer)
            && fewer > 0
        {
            match std::sync::Arc::clone(&slots).try_acquire_many_owned(fewer) {
                Ok(free) => free.forget(),
                // Slots in use go as their tasks end.
                Err(_) => {
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        runtime.spawn(async move {
                            if let Ok(taken) = slots.acquire_many_owned(fewer).await {
                                taken.forget();
                            }
                        });
                    }
                }
            }
        }
        json!({"ok": "pool will shrink"})
    }

    /// `control time_limit`: sets a task type's limits, as Celery's.
    fn set_time_limit(&self, arguments: &Value) -> Value {
        let Some(name) = self.known_task(arguments, "Change time limit") else {
            return json!({"error": "unknown task"});
        };
        let seconds = |value: &Value| value.as_f64().filter(|s| s.is_finite() && *s > 0.0);
        let (hard, soft) = (seconds(&arguments["hard"]), seconds(&arguments["soft"]));
        self.time_limits
            .lock()
            .expect("time limits poisoned")
            .insert(name.to_owned(), (hard, soft));
        tracing::info!("New time limits for tasks of type {name}: soft={soft:?} hard={hard:?}");
        json!({"ok": "time limits set successfully"})
    }

    /// `query_task`: what the worker knows of the tasks `ids` names, as
    /// `{id: [state, info]}` (only running tasks are known here).
    fn query_task(&self, arguments: &Value) -> Value {
        let ids: Vec<&str> = match &arguments["ids"] {
            Value::String(id) => vec![id.as_str()],
            Value::Array(ids) => ids.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let found: serde_json::Map<String, Value> = self
            .active_tasks_list()
            .into_iter()
            .filter(|task| ids.contains(&task["id"].as_str().unwrap_or_default()))
            .map(|task| {
                (
                    task["id"].as_str().unwrap_or_default().to_owned(),
                    json!(["active", task]),
                )
            })
            .collect();
        Value::Object(found)
    }

    /// `memsample`: resident memory now, as Celery's `sample_mem` writes
    /// it with psutil (`"12.5MB"`), kept for `memdump`.
    fn memsample(&self) -> Value {
        let Some(rss) = resident_memory() else {
            return Value::Null;
        };
        let mut samples = self.memory_samples.lock().expect("samples poisoned");
        if samples.len() == 100 {
            samples.pop_front();
        }
        samples.push_back(rss);
        json!(human_bytes(rss))
    }

    /// `memdump`: the samples taken, then memory now, as Celery's text.
    fn memdump(&self) -> Value {
        let samples = self.memory_samples.lock().expect("samples poisoned");
        let mut text = String::new();
        if !samples.is_empty() {
            text.push_str("- rss (sample):\n");
            for sample in samples.iter() {
                text.push_str(&format!("-    > {},\n", human_bytes(*sample)));
            }
        }
        let now = resident_memory().map_or_else(|| "?".to_owned(), human_bytes);
        text.push_str(&format!("- rss (end): {now}.\n"));
        json!(text)
    }

    /// `report`: the software and settings, as Celery's bug report.
    fn report(&self) -> Value {
        let text = format!(
            "\nsoftware -> celery_pages:{} (Rust worker) lapin:4 rustc\n\
             platform -> system:{} arch:{}\n\
             loader   -> celery_pages::tasks::Registry\n\
             settings -> transport:amqp results:rpc://\n\n\
             broker_url: {:?}\n\
             task_default_queue: {:?}\n\
             worker_concurrency: {}\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            self.broker.to_string(),
            self.queue.name,
            self.concurrency(),
        );
        json!({"ok": text})
    }

    /// Whether any task type has a rate limit now.
    pub fn rate_limited(&self) -> bool {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// When a task `name` received `now` may start, its rate limit
    /// considered (its token taken).
    pub fn rate_limited_start(
        &self,
        name: &str,
        now: tokio::time::Instant,
    ) -> tokio::time::Instant {
        self.rate_limits
            .lock()
            .expect("rate limits poisoned")
            .take(name, now)
    }

    /// `control rate_limit`: sets or lifts a task type's limit, with
    /// Celery's replies.
    fn rate_limit(&self, arguments: &Value) -> Value {
        let limit = &arguments["rate_limit"];
        let rate = match per_second(limit) {
            Ok(rate) => rate,
            Err(err) => return json!({"error": format!("Invalid rate limit string: {err}")}),
        };
        let Some(name) = self.known_task(arguments, "Rate limit") else {
            return json!({"error": "unknown task"});
        };
        let shown = match limit {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let mut limits = self.rate_limits.lock().expect("rate limits poisoned");
        limits.set(name, &shown, rate);
        self.rate_limited
            .store(!limits.is_empty(), Ordering::Relaxed);
        if rate.is_none() {
            tracing::info!("Rate limits disabled for tasks of type {name}");
            return json!({"ok": "rate limit disabled successfully"});
        }
        tracing::info!("New rate limit for tasks of type {name}: {shown}.");
        json!({"ok": "new rate limit set successfully"})
    }

    /// The user's tasks as `inspect registered` lists them: each name, with
    /// its rate limit when it has one (`addTask.add [rate_limit=10/s]`).
    fn registered(&self) -> Value {
        let limits = self.rate_limits.lock().expect("rate limits poisoned");
        let names: Vec<String> = self
            .tasks
            .user_tasks()
            .into_iter()
            .map(|name| match limits.shown(name) {
                Some(limit) => format!("{name} [rate_limit={limit}]"),
                None => name.to_owned(),
            })
            .collect();
        json!(names)
    }

    /// Whether task `id` was revoked (and not too long ago).
    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked
            .lock()
            .expect("revoked set poisoned")
            .contains(id, Instant::now())
    }

    /// Marks task `id` as running (with the repr of its arguments); what
    /// it returns says when the task is told to stop.
    pub fn start_task(
        &self,
        id: &str,
        name: &str,
        args: &str,
        kwargs: &str,
    ) -> std::sync::Arc<Stop> {
        let started = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        let stop = std::sync::Arc::new(Stop::default());
        self.active.lock().expect("active map poisoned").insert(
            id.to_owned(),
            Active {
                name: name.to_owned(),
                args: args.to_owned(),
                kwargs: kwargs.to_owned(),
                started,
                stop: std::sync::Arc::clone(&stop),
            },
        );
        stop
    }

    /// Marks task `id` as done.
    pub fn finish_task(&self, id: &str) {
        let done = self.active.lock().expect("active map poisoned").remove(id);
        if let Some(task) = done {
            let mut totals = self.totals.lock().expect("totals poisoned");
            *totals.entry(task.name).or_default() += 1;
        }
        self.processed.fetch_add(1, Ordering::Relaxed);
    }

    /// Tasks running now.
    pub fn active_count(&self) -> usize {
        self.active.lock().expect("active map poisoned").len()
    }

    /// Tasks run so far.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// The Lamport clock, moved on.
    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Runs command `method`; `None` when it gets no reply (`shutdown`).
    pub fn command(&self, method: &str, arguments: &Value) -> Option<Value> {
        Some(match method {
            "ping" => json!({"ok": "pong"}),
            "stats" => self.stats(),
            "active" => self.active_tasks(),
            "registered" => self.registered(),
            "rate_limit" => self.rate_limit(arguments),
            "active_queues" => self.active_queues(),
            "reserved" | "scheduled" => json!([]),
            "revoked" => {
                let mut revoked = self.revoked.lock().expect("revoked set poisoned");
                revoked.expire(Instant::now());
                json!(revoked.ids.keys().collect::<Vec<_>>())
            }
            "conf" => json!({
                "broker_url": self.broker.to_string(),
                "result_backend": "rpc://",
                "task_default_queue": self.queue.name,
                "task_default_queue_type": match self.queue.kind {
                    crate::QueueType::Classic => "classic",
                    crate::QueueType::Quorum => "quorum",
                },
                "task_default_exchange_type": self.queue.exchange.as_str(),
                "worker_concurrency": self.concurrency(),
                "worker_prefetch_multiplier": 4,
            }),
            "clock" => json!({"clock": self.clock.load(Ordering::Relaxed)}),
            "query_task" => self.query_task(arguments),
            "memsample" => self.memsample(),
            "memdump" => self.memdump(),
            "report" => self.report(),
            "objgraph" => json!({"error": "ImportError('Requires the objgraph library')"}),
            "pool_grow" => self.resize(arguments, true),
            "pool_shrink" => self.resize(arguments, false),
            "autoscale" => json!({"error": "ValueError('Autoscale not enabled')"}),
            "time_limit" => self.set_time_limit(arguments),
            "revoke_by_stamped_headers" => self.revoke_by_stamped_headers(arguments),
            "add_consumer" => self.change_queues(arguments, true),
            "cancel_consumer" => self.change_queues(arguments, false),
            "revoke" => self.revoke(arguments),
            "terminate" => {
                let mut arguments = arguments.clone();
                if let Some(fields) = arguments.as_object_mut() {
                    fields.insert("terminate".into(), Value::Bool(true));
                }
                self.revoke(&arguments)
            }
            "enable_events" => {
                self.task_events.store(true, Ordering::Relaxed);
                json!({"ok": "task events enabled"})
            }
            "disable_events" => {
                self.task_events.store(false, Ordering::Relaxed);
                json!({"ok": "task events disabled"})
            }
            // Python's worker answers None.
            "heartbeat" => {
                self.heartbeat_requested.notify_one();
                Value::Null
            }
            "shutdown" => {
                tracing::warn!(node = %self.name, "shutdown requested by a remote control command");
                self.shutdown.notify_one();
                return None;
            }
            other => json!({"error": format!("KeyError('{other}')")}),
        })
    }

    /// The queues it consumes, as kombu describes a queue.
    fn active_queues(&self) -> Value {
        Value::Array(
            self.queues()
                .iter()
                .map(|name| kombu_queue(&self.queue.named(name)))
                .collect(),
        )
    }

    fn revoke(&self, arguments: &Value) -> Value {
        let ids: Vec<String> = match &arguments["task_id"] {
            Value::String(id) => vec![id.clone()],
            Value::Array(ids) => ids
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let now = Instant::now();
        {
            let mut revoked = self.revoked.lock().expect("revoked set poisoned");
            for id in &ids {
                revoked.insert(id.clone(), now);
            }
        }
        tracing::info!(node = %self.name, ids = ?ids, "tasks flagged as revoked");
        if arguments["terminate"].as_bool() == Some(true) {
            let Some(signum) = signum(&arguments["signal"]) else {
                return json!({"error": format!("unknown signal {}", arguments["signal"])});
            };
            let terminated = self.terminate(&ids, signum);
            if terminated.is_empty() {
                return json!({"ok": "terminate: tasks unknown"});
            }
            return json!({"ok": format!("terminate: {}", terminated.join(", "))});
        }
        let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
        json!({"ok": format!("tasks {{{}}} flagged as revoked", quoted.join(", "))})
    }

    /// `revoke_by_stamped_headers`: tasks stamped with any of these
    /// headers are never run (one already running goes on: the reply says
    /// "not terminated", as Celery's), with Celery's reply.
    fn revoke_by_stamped_headers(&self, arguments: &Value) -> Value {
        let headers: Vec<(String, Value)> = match &arguments["headers"] {
            Value::Object(pairs) => pairs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|item| item.split_once('='))
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect(),
            _ => Vec::new(),
        };
        let shown: Vec<String> = headers
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}: {}",
                    python_text::repr(k),
                    crate::message::python_repr(v)
                )
            })
            .collect();
        let mut stamps = self.revoked_stamps.lock().expect("stamps poisoned");
        for (key, value) in &headers {
            for value in stamp_values(value) {
                if stamps.len() < REVOKED_MAX {
                    stamps.insert((key.clone(), value.to_string()));
                }
            }
        }
        json!({"ok": format!("headers {{{}}} flagged as revoked, but not terminated", shown.join(", "))})
    }

    /// Whether a task stamped with `stamps` (its stamped headers and their
    /// values) was revoked by `revoke_by_stamped_headers`.
    pub fn is_revoked_by_stamp(&self, stamps: &[(String, Value)]) -> bool {
        if stamps.is_empty() {
            return false; // most tasks: no lock taken
        }
        let revoked = self.revoked_stamps.lock().expect("stamps poisoned");
        stamps.iter().any(|(key, value)| {
            stamp_values(value)
                .iter()
                .any(|value| revoked.contains(&(key.clone(), value.to_string())))
        })
    }

    /// Tells the running tasks among `ids` to stop, with signal `signum`;
    /// the ids of those it told.
    fn terminate(&self, ids: &[String], signum: i32) -> Vec<String> {
        let active = self.active.lock().expect("active map poisoned");
        ids.iter()
            .filter_map(|id| {
                let task = active.get(id)?;
                tracing::info!("Terminating {id} ({signum})");
                task.stop.signum.store(signum, Ordering::Relaxed);
                task.stop.token.cancel();
                Some(id.clone())
            })
            .collect()
    }

    fn stats(&self) -> Value {
        let totals = self.totals.lock().expect("totals poisoned").clone();
        json!({
            "total": totals,
            "pid": std::process::id(),
            "clock": self.clock.load(Ordering::Relaxed).to_string(),
            "uptime": self.started.elapsed().as_secs(),
            "pool": {
                "implementation": "celery_pages (tokio tasks)",
                "max-concurrency": self.concurrency(),
                "processes": [std::process::id()],
                "max-tasks-per-child": "N/A",
                "put-guarded-by-semaphore": false,
                "timeouts": [0, 0],
            },
            "broker": self.broker.stats(),
            "prefetch_count": self.prefetch(),
            "rusage": {},
        })
    }

    fn active_tasks(&self) -> Value {
        Value::Array(self.active_tasks_list())
    }

    fn active_tasks_list(&self) -> Vec<Value> {
        let active = self.active.lock().expect("active map poisoned");
        active
            .iter()
            .map(|(id, task)| {
                json!({
                    "id": id,
                    "name": task.name,
                    "args": task.args,
                    "kwargs": task.kwargs,
                    "type": task.name,
                    "hostname": self.name,
                    "time_start": task.started,
                    "acknowledged": false,
                    "delivery_info": {"exchange": "", "routing_key": self.queue.name,
                                      "priority": 0, "redelivered": false},
                    "worker_pid": std::process::id(),
                })
            })
            .collect()
    }
}

/// Opens `node`'s pidbox queue and answers commands until the connection
/// ends. Fails at once, clearly, if another worker holds the node name.
pub async fn open(connection: &Connection, node: &Node) -> Result<(Channel, lapin::Consumer)> {
    let channel = connection
        .create_channel()
        .await
        .doing("opening the remote-control channel")?;
    declare_exchanges(&channel).await?;
    let queue = format!("{}.celery.pidbox", node.name);
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(10_000));
    arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(300_000));
    let declared = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await;
    if let Err(source) = declared {
        let locked = matches!(source.kind(), lapin::ErrorKind::ProtocolError(e)
            if e.get_message().as_str().contains("RESOURCE_LOCKED"));
        return Err(if locked {
            Error::NodeNameTaken {
                node: node.name.clone(),
            }
        } else {
            Error::Amqp {
                doing: "declaring the remote-control queue",
                source,
            }
        });
    }
    channel
        .queue_bind(
            queue.as_str().into(),
            EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .doing("binding the remote-control queue")?;
    let commands = channel
        .basic_consume(
            queue.as_str().into(),
            "celery_pages-pidbox".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .doing("consuming the remote-control queue")?;
    Ok((channel, commands))
}

/// A remote-control command as read from the `celery.pidbox` fanout:
/// anyone on the broker may send one, so every field may be missing or of
/// any JSON type.
#[derive(Debug, PartialEq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub arguments: &'a Value,
    /// The exchange and routing key to answer to, if any.
    pub reply_to: Option<(&'a str, &'a str)>,
    pub ticket: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// The command in `message`, if it is one for node `name` (addressed to
    /// every node, or to a list that holds `name`).
    pub fn read(message: &'a Value, name: &str) -> Option<Self> {
        let for_us = match &message["destination"] {
            Value::Array(nodes) => nodes.iter().any(|n| n.as_str() == Some(name)),
            _ => true,
        };
        let method = message["method"].as_str().filter(|_| for_us)?;
        let reply_to = match (
            message["reply_to"]["exchange"].as_str(),
            message["reply_to"]["routing_key"].as_str(),
        ) {
            (Some(exchange), Some(routing_key)) => Some((exchange, routing_key)),
            _ => None,
        };
        Some(Request {
            method,
            arguments: &message["arguments"],
            reply_to,
            ticket: message["ticket"].as_str(),
        })
    }
}

/// Answers the commands that come to `node` until `commands` ends.
///
/// Replies go out on a channel of their own, opened on `connection` when
/// needed: a reply addressed to an exchange that cannot take it (one that
/// exists with another type, say) closes that channel only, and the next
/// reply opens another, so one bad message cannot blind remote control.
/// The reply exchange is declared before each reply, as kombu's mailbox
/// does.
pub async fn serve(
    connection: &Connection,
    commands: &mut lapin::Consumer,
    node: &std::sync::Arc<Node>,
) {
    let mut replies: Option<Channel> = None;
    while let Some(Ok(message)) = commands.next().await {
        let Ok(message) = serde_json::from_slice::<Value>(&message.data) else {
            tracing::debug!("ignoring a remote-control message that is not JSON");
            continue;
        };
        let Some(request) = Request::read(&message, &node.name) else {
            continue;
        };
        tracing::debug!(method = %request.method, "remote-control command");
        let Some(reply) = node.command(request.method, request.arguments) else {
            continue;
        };
        let Some((exchange, routing_key)) = request.reply_to else {
            continue;
        };
        let mut headers = FieldTable::default();
        if let Some(ticket) = request.ticket {
            headers.insert(
                "ticket".into(),
                AMQPValue::LongString(LongString::from(ticket)),
            );
        }
        headers.insert("clock".into(), AMQPValue::LongLongInt(node.tick() as i64));
        let body = json!({ node.name.as_str(): reply }).to_string();
        let sent = answer(
            connection,
            &mut replies,
            exchange,
            routing_key,
            &body,
            headers,
        )
        .await;
        if let Err(err) = sent {
            tracing::warn!(err = %plumbing::describe(&err), %exchange, "could not answer a remote-control command");
            replies = None;
        }
    }
}

/// Declares `exchange` (a direct, transient one, as kombu's mailbox) and
/// publishes `body` to it, on the reply channel (opened if there is none).
async fn answer(
    connection: &Connection,
    replies: &mut Option<Channel>,
    exchange: &str,
    routing_key: &str,
    body: &str,
    headers: FieldTable,
) -> lapin::Result<()> {
    let channel = match replies {
        Some(channel) => channel,
        None => replies.insert(connection.create_channel().await?),
    };
    if !exchange.is_empty() {
        let options = ExchangeDeclareOptions::default();
        let declared = channel.exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            options,
            FieldTable::default(),
        );
        declared.await?;
    }
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            crate::message::transient_json(headers),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ADD_TASK;

    #[test]
    fn the_revoked_set_is_bounded_in_size_and_age() {
        let mut revoked = Revoked::default();
        let start = Instant::now();
        for i in 0..REVOKED_MAX + 10 {
            revoked.insert(format!("t{i}"), start);
        }
        assert_eq!(revoked.ids.len(), REVOKED_MAX);
        assert!(!revoked.contains("t0", start));
        assert!(revoked.contains(&format!("t{}", REVOKED_MAX + 9), start));
        let later = start + REVOKED_TTL + Duration::from_secs(1);
        assert!(!revoked.contains(&format!("t{}", REVOKED_MAX + 9), later));
        assert!(revoked.ids.is_empty() && revoked.order.is_empty());
    }

    #[test]
    fn commands_answer_as_celerys_do() {
        let node = Node::new(
            "n1@h",
            &crate::worker::config::WorkerConfig::new(crate::Broker::default()),
        );
        assert_eq!(
            node.command("ping", &Value::Null),
            Some(json!({"ok": "pong"}))
        );
        assert_eq!(
            node.command("registered", &Value::Null),
            Some(json!([ADD_TASK, "addTask.flaky_add", "addTask.slow_add"]))
        );
        assert_eq!(
            node.command("nosuch", &Value::Null),
            Some(json!({"error": "KeyError('nosuch')"}))
        );
        assert_eq!(
            node.command("revoke", &json!({"task_id": "abc"})),
            Some(json!({"ok": "tasks {'abc'} flagged as revoked"}))
        );
        assert!(node.is_revoked("abc"));
        assert_eq!(node.command("shutdown", &Value::Null), None);
        let stats = node.command("stats", &Value::Null).unwrap();
        assert!(stats["broker"].is_object() && stats["total"].is_object());
    }

    #[test]
    fn a_command_is_read_whatever_its_shape() {
        let message = json!({"method": "ping", "destination": ["a@h", "n1@h"],
            "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "k"}, "ticket": "t"});
        let request = Request::read(&message, "n1@h").unwrap();
        assert_eq!(request.method, "ping");
        assert_eq!(request.reply_to, Some(("reply.celery.pidbox", "k")));
        assert_eq!(request.ticket, Some("t"));
        assert!(Request::read(&message, "other@h").is_none());
        assert!(Request::read(&json!({"method": 7}), "n1@h").is_none());
        let no_reply = json!({"method": "ping", "reply_to": {"exchange": 1}});
        assert_eq!(Request::read(&no_reply, "n1@h").unwrap().reply_to, None);
    }

    /// Any JSON value, nested a few levels.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop_oneof![
                Just("ping".to_owned()),
                Just("revoke".to_owned()),
                Just("stats".to_owned()),
                Just("n1@h".to_owned()),
                Just("task_id".to_owned()),
                any::<String>(),
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("method".to_owned()),
                            Just("arguments".to_owned()),
                            Just("destination".to_owned()),
                            Just("reply_to".to_owned()),
                            Just("exchange".to_owned()),
                            Just("routing_key".to_owned()),
                            Just("ticket".to_owned()),
                            Just("task_id".to_owned()),
                            any::<String>(),
                        ],
                        inner,
                    ),
                    0..8,
                )
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]

        /// Whatever shape a control message has (the fanout is open to any
        /// client of the broker), reading it and running what it asks never
        /// panics.
        #[test]
        fn no_control_message_makes_the_reader_panic(
            message in any_json(),
            method in proptest::prop_oneof![
                proptest::strategy::Just("revoke"), proptest::strategy::Just("ping"),
                proptest::strategy::Just("stats"), proptest::strategy::Just("active"),
                proptest::strategy::Just("conf"), proptest::strategy::Just("revoked"),
                proptest::strategy::Just("active_queues"), proptest::strategy::Just("nosuch"),
                proptest::strategy::Just("terminate"), proptest::strategy::Just("rate_limit"),
                proptest::strategy::Just("time_limit"), proptest::strategy::Just("query_task"),
                proptest::strategy::Just("pool_grow"), proptest::strategy::Just("pool_shrink"),
                proptest::strategy::Just("revoke_by_stamped_headers"), proptest::strategy::Just("clock"),
                proptest::strategy::Just("memsample"), proptest::strategy::Just("memdump"),
            ],
        ) {
            let node = Node::new("n1@h", &crate::worker::config::WorkerConfig::new(crate::Broker::default()));
            if let Some(request) = Request::read(&message, "n1@h") {
                let _ = node.command(request.method, request.arguments);
            }
            // And every command with these arguments, as if the method matched.
            let _ = node.command(method, &message);
            let _ = node.command(method, &message["arguments"]);
        }
    }
}
