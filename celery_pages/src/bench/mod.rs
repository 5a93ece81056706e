//! `celery_pages bench`: tasks per second through a worker, against a raw
//! AMQP round trip measured in the same run.
//!
//! Both runs keep the same number of requests in flight (`window`): each
//! request is a persistent publish with publisher confirm, consumed by the
//! other side, answered to the requester's reply queue, and acked. The raw
//! runs do exactly that with no Celery semantics, twice: with a bare
//! 17-byte body, and with the very bytes and headers of a task message
//! (the broker then does for each request what it does for a task). The
//! Celery run adds the protocol at both ends (headers, JSON, the task,
//! results) and the worker's late ack after a confirmed result. The gap
//! between the two raw runs is the broker's cost of Celery's message
//! format, which no worker can remove.

pub mod drain;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use plumbing::bench::{Stats, closed_loop};
use serde_json::json;
use tokio::sync::oneshot;

use anyhow::{Context, Result, anyhow};
use celery_pages::amqp::reply_queue;
use celery_pages::caller::Caller;
use celery_pages::commands::{Target, WorkerOptions};
use celery_pages::message::compression::Compression;
use celery_pages::tasks::TaskOptions;
use celery_pages::worker;
use celery_pages::worker::config::WorkerConfig;
use celery_pages::{ADD_TASK, Broker, QueueType, Registry, Task, TaskQueue};

/// `celery_pages bench`'s flags.
#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    target: Target,
    /// Tasks to run.
    #[arg(long, default_value_t = 10_000)]
    tasks: u64,
    /// Tasks in flight at once (the same for the raw run).
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Measure whatever worker already consumes --queue (a Python
    /// Celery worker, say) instead of starting one in this process.
    #[arg(long)]
    no_worker: bool,
    /// Compress the task messages (the raw run stays uncompressed).
    #[arg(long, value_enum)]
    compression: Option<Compression>,
    /// Instead: queue N tasks (no results asked) first, then time the
    /// worker taking and acking them all, beside a raw consumer doing
    /// the same with plain messages. With --no-worker: fill --queue, then
    /// time whatever worker is started on it (Python's, say) until the
    /// queue is empty.
    #[arg(long, value_name = "N", conflicts_with = "compression")]
    drain: Option<u64>,
    /// Give the in-process worker's addTask.add this rate limit (Celery's
    /// spelling: 100/s, 6000/m), to measure tasks against it.
    #[arg(long, value_name = "RATE", conflicts_with = "no_worker")]
    rate_limit: Option<String>,
    /// Also run the same bench over this amqps:// URL of the same broker
    /// (its TLS listener, with RabbitMQ's TLS query parameters) and print
    /// TLS beside plain.
    #[arg(long, value_name = "AMQPS_URL", conflicts_with_all = ["drain", "no_worker"])]
    tls: Option<Broker>,
    #[command(flatten)]
    options: WorkerOptions,
}

/// Runs the bench `args` ask for and prints its report.
pub async fn command(args: BenchArgs) -> Result<()> {
    let mut config = args.options.config(&args.target)?;
    if let Some(limit) = &args.rate_limit {
        let rate = celery_pages::worker::rate::per_second(&serde_json::json!(limit))
            .map_err(|err| anyhow!("--rate-limit {limit:?}: {err}"))?;
        let options = TaskOptions {
            rate_limit: Some(limit.clone()),
            ..TaskOptions::default()
        };
        let add = Task::new(ADD_TASK, ["x", "y"], celery_pages::tasks::add::add);
        config.tasks = Arc::new(Registry::chapter().register(add.with_options(options)));
        match rate {
            Some(rate) => println!("addTask.add limited to {limit}: at most {rate:.0} tasks/s"),
            None => println!("addTask.add: no rate limit"),
        }
    }
    match args.drain {
        Some(tasks) if args.no_worker => {
            let report = drain::run_external(&config, tasks, |queue| {
                println!("{tasks} tasks queued in {queue:?}: start the worker on it now");
            })
            .await?;
            println!("{report}");
        }
        Some(tasks) => println!("{}", drain::run(&config, tasks).await?),
        None => {
            let (tasks, window) = (args.tasks, args.window);
            let report = run(&config, tasks, window, args.no_worker, args.compression).await?;
            println!("{report}");
            if let Some(tls) = args.tls {
                anyhow::ensure!(tls.is_tls(), "--tls wants an amqps:// URL");
                println!(
                    "\nthe same over TLS ({tls}), alternating with plain, {TLS_ROUNDS} rounds:"
                );
                let tls_config = WorkerConfig {
                    broker: tls,
                    ..config.clone()
                };
                // Plain and TLS alternate, so that a busy moment of the
                // machine does not fall on one side only.
                let (mut plain, mut encrypted) = (vec![report], Vec::new());
                for round in 0..TLS_ROUNDS {
                    if round > 0 {
                        plain.push(run(&config, tasks, window, false, args.compression).await?);
                    }
                    encrypted.push(run(&tls_config, tasks, window, false, args.compression).await?);
                }
                let median = |reports: &[Report], rate: fn(&Report) -> f64| {
                    let mut rates: Vec<f64> = reports.iter().map(rate).collect();
                    rates.sort_by(f64::total_cmp);
                    rates[rates.len() / 2]
                };
                let tasks_rate = |report: &Report| report.celery.per_second();
                let raw_rate = |report: &Report| report.raw.per_second();
                let (plain_tasks, tls_tasks) =
                    (median(&plain, tasks_rate), median(&encrypted, tasks_rate));
                let (plain_raw, tls_raw) = (median(&plain, raw_rate), median(&encrypted, raw_rate));
                println!("medians       plain     TLS   TLS/plain");
                println!(
                    "tasks/s     {plain_tasks:7.0} {tls_tasks:7.0}   {:.2}",
                    tls_tasks / plain_tasks
                );
                println!(
                    "raw trips/s {plain_raw:7.0} {tls_raw:7.0}   {:.2}",
                    tls_raw / plain_raw
                );
            }
        }
    }
    Ok(())
}

/// Runs of each kind `--tls` makes.
const TLS_ROUNDS: usize = 3;

/// What a bench run measured.
#[derive(Debug)]
pub struct Report {
    pub tasks: u64,
    pub window: usize,
    /// Which worker was measured, for the report.
    pub worker: String,
    pub celery: Stats,
    pub raw: Stats,
    /// The raw round trip with the task's own bytes and headers.
    pub raw_task_shaped: Stats,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} tasks, {} in flight, through {}",
            self.tasks, self.window, self.worker
        )?;
        writeln!(f, "celery add tasks:      {}", self.celery.summary())?;
        writeln!(f, "raw AMQP round trips:  {}", self.raw.summary())?;
        writeln!(
            f,
            "raw AMQP, task-shaped: {}",
            self.raw_task_shaped.summary()
        )?;
        write!(
            f,
            "ratio tasks/raw: {:.2}  (to raw round trips of the task's own bytes and headers: {:.2})",
            self.celery.per_second() / self.raw.per_second(),
            self.celery.per_second() / self.raw_task_shaped.per_second()
        )
    }
}

/// Measures `tasks` tasks through a worker started here with `config`, or
/// with `external_worker` through whatever worker consumes `config.queue`
/// (a Python one, say), then as many raw AMQP round trips; `window` in
/// flight in both runs.
pub async fn run(
    config: &WorkerConfig,
    tasks: u64,
    window: usize,
    external_worker: bool,
    compression: Option<Compression>,
) -> Result<Report> {
    let (stop, stopped) = oneshot::channel::<()>();
    let config = with_own_node(config, "bench");
    let worker = (!external_worker).then(|| {
        tokio::spawn(worker::run(config.clone(), async {
            let _ = stopped.await;
        }))
    });
    let mut caller = Caller::connect(&config.broker, config.task_queue()).await?;
    caller.compress_with(compression);
    let caller = Arc::new(caller);
    let timeout = Duration::from_secs(60);
    // Warm up: connections, queues, the worker's prefetch.
    celery_run(Arc::clone(&caller), 500, window, timeout).await?;
    let celery = celery_run(Arc::clone(&caller), tasks, window, timeout).await?;
    let raw_queue = raw_queue(config.queue_type);
    let prefetch = config.prefetch.max(100);
    let raw_task_shaped = raw_run(
        &config.broker,
        &raw_queue,
        tasks,
        window,
        prefetch,
        RawMessage::TaskShaped,
    )
    .await?;
    let raw = raw_run(
        &config.broker,
        &raw_queue,
        tasks,
        window,
        prefetch,
        RawMessage::Bare,
    )
    .await?;
    let mut worker_name = if external_worker {
        format!("the worker on queue {:?}", config.queue)
    } else {
        format!(
            "the in-process worker (concurrency {}, prefetch {})",
            config.concurrency, config.prefetch
        )
    };
    if let Some(method) = compression {
        worker_name.push_str(&format!(", task messages compressed with {method:?}"));
    }
    let _ = stop.send(());
    if let Some(worker) = worker {
        worker.await.expect("worker task panicked")?;
    }
    Ok(Report {
        tasks,
        window,
        worker: worker_name,
        celery,
        raw,
        raw_task_shaped,
    })
}

/// `config` with a node name of the bench's own (`celery_pages-<role>-<pid>@<host>`),
/// so that a bench's worker runs beside any other.
pub fn with_own_node(config: &WorkerConfig, role: &str) -> WorkerConfig {
    WorkerConfig {
        node: format!(
            "celery_pages-{role}-{}@{}",
            std::process::id(),
            celery_pages::message::host_name()
        ),
        ..config.clone()
    }
}

/// `tasks` calls of `addTask.add(4, 10)` through whatever worker consumes
/// the caller's queue; each result is checked.
pub async fn celery_run(
    caller: Arc<Caller>,
    tasks: u64,
    window: usize,
    timeout: Duration,
) -> Result<Stats> {
    closed_loop(tasks, window, move |i| {
        let caller = Arc::clone(&caller);
        async move {
            let i = i as i64;
            let sum: i64 = caller.call(ADD_TASK, (i, 10), timeout).await?;
            anyhow::ensure!(sum == i + 10, "wrong result from the worker: {sum}");
            Ok(())
        }
    })
    .await
}

/// The raw run's queue, of the same kind as the worker's (a name per kind,
/// so an interrupted run's leftover never clashes).
fn raw_queue(kind: QueueType) -> TaskQueue {
    let name = match kind {
        QueueType::Classic => "celery_pages.bench.raw",
        QueueType::Quorum => "celery_pages.bench.raw.quorum",
    };
    TaskQueue {
        kind,
        ..TaskQueue::from(name)
    }
}

/// Results awaited by the raw requester, by correlation id.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// What the raw requester sends: a bare 17-byte body, or the very bytes
/// and headers of a Celery task message (what the broker then handles is
/// the same as for a task; only the Celery work at both ends is left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMessage {
    Bare,
    TaskShaped,
}

/// The floor: `requests` raw AMQP round trips through a plain responder.
pub async fn raw_run(
    broker: &Broker,
    queue: &TaskQueue,
    requests: u64,
    window: usize,
    prefetch: u16,
    shape: RawMessage,
) -> Result<Stats> {
    let (responder, responder_channel) = start_responder(broker, queue, prefetch).await?;
    let connection = broker.connect().await?;
    let channel = celery_pages::amqp::confirming_channel(&connection).await?;
    let (reply_queue, replies) = reply_queue(&channel, "raw-requester").await?;
    let waiting: Waiting = Arc::default();
    tokio::spawn(route_replies(replies, Arc::clone(&waiting)));
    let queue_name = queue.name.clone();
    let stats = closed_loop(requests, window, move |_| {
        let (channel, waiting, reply_queue, queue) = (
            channel.clone(),
            Arc::clone(&waiting),
            reply_queue.clone(),
            queue_name.clone(),
        );
        async move {
            let id = uuid::Uuid::new_v4().to_string();
            let (tx, rx) = oneshot::channel();
            waiting.lock().expect("poisoned").insert(id.clone(), tx);
            let (body, properties) = match shape {
                RawMessage::Bare => (
                    b"[[4, 10], {}, {}]".to_vec(),
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_correlation_id(id.as_str().into())
                        .with_reply_to(reply_queue.as_str().into()),
                ),
                RawMessage::TaskShaped => celery_pages::message::TaskMessage {
                    id: &id,
                    task: ADD_TASK,
                    args: &[json!(4), json!(10)],
                    reply_to: Some(&reply_queue),
                    origin: "0@bench",
                    ..celery_pages::message::TaskMessage::default()
                }
                .encode(),
            };
            publish_confirmed(&channel, &queue, &body, properties).await?;
            rx.await
                .map_err(|_| anyhow!("the reply to raw request {id} never came"))
        }
    })
    .await?;
    let _ = responder_channel
        .queue_delete(queue.name.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "bench done".into()).await;
    let _ = responder.close(200, "bench done".into()).await;
    Ok(stats)
}

/// Starts the raw responder on a connection of its own: a durable queue
/// consumed with `prefetch`, each message answered and acked.
async fn start_responder(
    broker: &Broker,
    queue: &TaskQueue,
    prefetch: u16,
) -> Result<(Connection, Channel)> {
    let connection = broker.connect().await?;
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    channel
        .queue_declare(
            queue.name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue.arguments(),
        )
        .await
        .context("declaring the raw bench queue")?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .context("setting the prefetch")?;
    let deliveries = channel
        .basic_consume(
            queue.name.as_str().into(),
            "raw-responder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("consuming the raw bench queue")?;
    tokio::spawn(respond(channel.clone(), deliveries));
    Ok((connection, channel))
}

/// Hands each reply to the request waiting for it.
async fn route_replies(mut replies: lapin::Consumer, waiting: Waiting) {
    while let Some(Ok(reply)) = replies.next().await {
        let id = reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned());
        if let Some(tx) = id.and_then(|id| waiting.lock().expect("poisoned").remove(&id)) {
            let _ = tx.send(());
        }
    }
}

pub async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<()> {
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .context("publishing")?
        .await
        .context("waiting for the publisher confirm")?;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(celery_pages::Error::NotConfirmed.into())
    }
}

/// The raw responder: answers each message to its `reply_to`, then acks.
async fn respond(channel: Channel, mut deliveries: lapin::Consumer) {
    while let Some(Ok(delivery)) = deliveries.next().await {
        let mut properties = BasicProperties::default().with_delivery_mode(1);
        if let Some(id) = delivery.properties.correlation_id() {
            properties = properties.with_correlation_id(id.clone());
        }
        if let Some(reply_to) = delivery.properties.reply_to() {
            let _ = channel
                .basic_publish(
                    "".into(),
                    reply_to.clone(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    properties,
                )
                .await;
        }
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
    }
}
