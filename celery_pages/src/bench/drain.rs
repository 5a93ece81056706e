//! `celery_pages bench --drain N`: how fast the worker empties a queue.
//!
//! `N` `add` tasks that ask for no result are put in the queue first (each
//! publish confirmed); then a worker starts and is timed until it has run
//! and acked them all. The last task alone asks for its result: the worker
//! starts tasks in queue order, so when that result arrives every earlier
//! task has started, and the worker's graceful stop, timed too, waits for
//! the ones still running. The floor, in the same run: the same number of
//! messages taken from a queue and acked one by one by a plain consumer
//! with the same prefetch, twice: bodies of the task's size with no
//! headers, and the very bytes and headers of the task messages (what the
//! broker then does per message is what it does for a task).
//!
//! With `--no-worker` the worker is another program (Python's, another Rust
//! Celery worker, this crate's in another process): the queue is filled
//! while nothing consumes it, then the bench waits for a consumer to appear
//! and times it from that moment until the queue is empty. The broker tells
//! only how many messages wait, not how many are taken and unacked, so at
//! the end up to one prefetch of tasks may still be running; with the
//! default 50,000 tasks that is a small part of the whole.

use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use plumbing::bench::closed_loop;
use serde_json::json;

use crate::bench::publish_confirmed;
use anyhow::{Context, Result, anyhow, bail};
use celery_pages::amqp::confirming_channel;
use celery_pages::caller::Caller;
use celery_pages::message::TaskMessage;
use celery_pages::worker::config::WorkerConfig;
use celery_pages::{ADD_TASK, Broker, worker};

/// Publishes kept in flight while the queue is filled.
const FILL_WINDOW: usize = 256;
/// The longest a drain may take before the bench gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
const RAW_QUEUE: &str = "celery_pages.bench.drain.raw";
/// How often an external drain looks at the queue.
const POLL: Duration = Duration::from_millis(5);

/// What a drain measured.
#[derive(Debug)]
pub struct DrainReport {
    pub tasks: u64,
    pub worker: String,
    /// Tasks taken, run and acked per second.
    pub drained: f64,
    /// Raw messages of the task's size, no headers, taken and acked per
    /// second.
    pub raw: f64,
    /// The same with the task messages' own bytes and headers.
    pub raw_task_shaped: f64,
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} tasks already queued, drained by {}",
            self.tasks, self.worker
        )?;
        writeln!(f, "celery add tasks drained:  {:>9.0}/s", self.drained)?;
        writeln!(f, "raw AMQP messages drained: {:>9.0}/s", self.raw)?;
        writeln!(
            f,
            "raw AMQP, task-shaped:     {:>9.0}/s",
            self.raw_task_shaped
        )?;
        write!(
            f,
            "ratio drained/raw: {:.2}  (to raw messages of the task's own bytes and headers: {:.2})",
            self.drained / self.raw,
            self.drained / self.raw_task_shaped
        )
    }
}

/// Fills `config.queue` with `tasks` tasks, drains it with a worker run
/// here, then the raw floor.
pub async fn run(config: &WorkerConfig, tasks: u64) -> Result<DrainReport> {
    let tasks = tasks.max(1);
    let config = crate::bench::with_own_node(config, "drain");
    // The caller gets the last task's result; the others ask for none.
    let caller = Caller::connect(&config.broker, config.task_queue()).await?;
    let filler = config.broker.connect().await?;
    let channel = confirming_channel(&filler).await?;
    let origin = format!("{}@bench", std::process::id());
    let queue = config.queue.clone();
    fill(&channel, &queue, tasks - 1, move |i| add_task(i, &origin)).await?;
    let last = caller
        .send(ADD_TASK, &[json!(tasks - 1), json!(10)])
        .await?;
    let _ = filler.close(200, "queue filled".into()).await;

    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker::run(config.clone(), async {
        let _ = stopped.await;
    }));
    let sum = last.wait(DRAIN_TIMEOUT).await?;
    assert_eq!(sum, json!(tasks - 1 + 10), "wrong result from the worker");
    let _ = stop.send(());
    running.await.expect("worker task panicked")?;
    let drained = tasks as f64 / started.elapsed().as_secs_f64();
    caller.close().await;

    let (raw, raw_task_shaped) = raw_drains(&config.broker, tasks, config.prefetch).await?;
    Ok(DrainReport {
        tasks,
        worker: format!(
            "the in-process worker (concurrency {}, prefetch {})",
            config.concurrency, config.prefetch
        ),
        drained,
        raw,
        raw_task_shaped,
    })
}

/// Fills `config.queue` with `tasks` tasks while nothing consumes it (else
/// an error: a worker already there would drain while the queue fills),
/// says so through `ready`, then times whatever worker starts consuming the
/// queue until no task waits in it; then the raw floor.
pub async fn run_external(
    config: &WorkerConfig,
    tasks: u64,
    ready: impl FnOnce(&str),
) -> Result<DrainReport> {
    let tasks = tasks.max(1);
    let connection = config.broker.connect().await?;
    let channel = confirming_channel(&connection).await?;
    let queue = config.task_queue();
    celery_pages::amqp::declare_task_queue(&channel, &queue).await?;
    let (waiting, consumers) = celery_pages::amqp::queue_depth(&channel, &queue.name).await?;
    if consumers > 0 || waiting > 0 {
        bail!(
            "queue {:?} must be empty and unconsumed before a drain bench fills it \
             ({waiting} messages waiting, {consumers} consumers): stop its workers, or purge it",
            queue.name
        );
    }
    let origin = format!("{}@bench", std::process::id());
    fill(&channel, &queue.name, tasks, move |i| add_task(i, &origin)).await?;
    ready(&queue.name);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let (channel, name) = (&channel, &queue.name);
    let poll_until = |done: fn((u32, u32)) -> bool| async move {
        while !done(celery_pages::amqp::queue_depth(channel, name).await?) {
            if Instant::now() > deadline {
                bail!(
                    "queue {name:?} was not drained within {DRAIN_TIMEOUT:?}: did a worker start on it?"
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    };
    poll_until(|(_, consumers)| consumers > 0).await?;
    let started = Instant::now();
    poll_until(|(waiting, _)| waiting == 0).await?;
    let drained = tasks as f64 / started.elapsed().as_secs_f64();
    let _ = connection.close(200, "queue drained".into()).await;
    let (raw, raw_task_shaped) = raw_drains(&config.broker, tasks, config.prefetch).await?;
    Ok(DrainReport {
        tasks,
        worker: format!("the worker on queue {:?}", config.queue),
        drained,
        raw,
        raw_task_shaped,
    })
}

/// An `add` task message asking for no result, as the drains queue them.
fn add_task(i: u64, origin: &str) -> (Vec<u8>, BasicProperties) {
    let id = uuid::Uuid::new_v4().to_string();
    TaskMessage {
        id: &id,
        task: ADD_TASK,
        args: &[json!(i), json!(10)],
        origin,
        ..TaskMessage::default()
    }
    .encode()
}

/// Both floors: raw drains of bare messages of the task's size, and of
/// task-shaped ones; messages per second.
async fn raw_drains(broker: &Broker, count: u64, prefetch: u16) -> Result<(f64, f64)> {
    let origin = format!("{}@bench", std::process::id());
    let len = add_task(1, &origin).0.len();
    let body = vec![b'x'; len];
    let bare = raw_drain(broker, count, prefetch, move |_| {
        (
            body.clone(),
            BasicProperties::default().with_delivery_mode(2),
        )
    })
    .await?;
    let task_shaped = raw_drain(broker, count, prefetch, move |i| add_task(i, &origin)).await?;
    Ok((bare, task_shaped))
}

/// Publishes `count` messages made by `message` to `queue`, confirmed,
/// [`FILL_WINDOW`] in flight.
async fn fill(
    channel: &Channel,
    queue: &str,
    count: u64,
    message: impl Fn(u64) -> (Vec<u8>, BasicProperties) + Clone + Send + Sync + 'static,
) -> Result<()> {
    let (channel, queue) = (channel.clone(), queue.to_owned());
    closed_loop(count, FILL_WINDOW, move |i| {
        let (channel, queue, (body, properties)) = (channel.clone(), queue.clone(), message(i));
        async move { publish_confirmed(&channel, &queue, &body, properties).await }
    })
    .await
    .map(drop)
}

/// The floor: `count` messages made by `message` queued, then taken and
/// acked one by one with `prefetch`; messages per second.
async fn raw_drain(
    broker: &Broker,
    count: u64,
    prefetch: u16,
    message: impl Fn(u64) -> (Vec<u8>, BasicProperties) + Clone + Send + Sync + 'static,
) -> Result<f64> {
    let connection = broker.connect().await?;
    let channel = confirming_channel(&connection).await?;
    channel
        .queue_declare(
            RAW_QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .context("declaring the raw drain queue")?;
    fill(&channel, RAW_QUEUE, count, message).await?;
    let consumer_channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    consumer_channel
        .basic_qos(prefetch, BasicQosOptions { global: true })
        .await
        .context("setting the prefetch")?;
    let started = Instant::now();
    let mut deliveries = consumer_channel
        .basic_consume(
            RAW_QUEUE.into(),
            "raw-drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("consuming the raw drain queue")?;
    // Acks go out without waiting for each other, at most `prefetch`
    // pending, as a consumer that keeps up would send them.
    let mut acks = futures::stream::FuturesUnordered::new();
    for _ in 0..count {
        let delivery = tokio::time::timeout(DRAIN_TIMEOUT, deliveries.next())
            .await
            .map_err(|_| anyhow!("the raw drain's messages stopped coming"))?
            .ok_or_else(|| anyhow!("the raw drain's consumer ended"))?
            .context("taking a raw message")?;
        acks.push(async move { delivery.ack(BasicAckOptions::default()).await });
        while acks.len() >= usize::from(prefetch.max(1)) {
            if let Some(acked) = acks.next().await {
                acked.context("acking a raw message")?;
            }
        }
    }
    while let Some(acked) = acks.next().await {
        acked.context("acking a raw message")?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let _ = channel
        .queue_delete(RAW_QUEUE.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "bench done".into()).await;
    Ok(rate)
}
