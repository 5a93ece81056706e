//! What each command of the `celery_pages` binary does, and what it
//! prints: the chapter's calls, a chain of them, `celery status`'s list
//! and a demo of the whole example. `main.rs` only reads the command line.

use std::time::Duration;

use serde_json::{Value, json};

use crate::amqp::broker::{BROKER_ENV, DEFAULT_BROKER};
use crate::caller::Caller;
use crate::caller::control::broadcast;
use crate::message::host_name;
use crate::worker;
use crate::worker::config::WorkerConfig;
use crate::worker::config::default_node;
use crate::{ADD_TASK, Broker, DEFAULT_QUEUE, Error, ExchangeType, QueueType, TaskQueue};

/// The broker flag, as every command takes it.
#[derive(clap::Args, Clone)]
pub struct BrokerArg {
    /// The AMQP broker: a URL, or Celery's failover list `URL;URL;...`
    /// (tried in order, the next on failure). `amqps://` is TLS, with
    /// RabbitMQ's query parameters: `?cacertfile=ca.pem&certfile=c.pem&keyfile=c.key`
    /// (also `verify=verify_none`, `server_name_indication=NAME`).
    #[arg(long = "broker", value_name = "URL", env = BROKER_ENV, default_value = DEFAULT_BROKER)]
    pub setting: String,
}

impl BrokerArg {
    /// The setting, read (and every URL in it checked) once: a bad URL is
    /// one line of error, as every other failure.
    pub fn parse(&self) -> crate::Result<Broker> {
        self.setting.parse()
    }
}

/// Where the tasks go: the broker and the queue on it.
#[derive(clap::Args, Clone)]
pub struct Target {
    #[command(flatten)]
    pub broker: BrokerArg,
    /// The task queue (Celery's default is `celery`).
    #[arg(long, default_value = DEFAULT_QUEUE)]
    pub queue: String,
    /// What kind of queue it is, as Celery's `task_default_queue_type`:
    /// declared so, and consumed so (a quorum queue has no channel-wide
    /// prefetch).
    #[arg(long, value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,
    /// The type of the queue's exchange, as Celery's
    /// `task_default_exchange_type`. On a quorum queue, topic or fanout
    /// lets countdown and eta tasks wait in the broker (native delayed
    /// delivery) instead of in the worker.
    #[arg(long, value_enum, default_value_t = ExchangeType::Direct)]
    pub exchange_type: ExchangeType,
}

#[derive(clap::Args, Clone)]
pub struct WorkerOptions {
    /// Tasks run at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Messages the broker sends ahead (default: four per task, as Celery).
    #[arg(long)]
    pub prefetch: Option<u16>,
    /// The node name Celery's tools (inspect, control, Flower) know the
    /// worker by; `%h` is replaced by the host name. Default: `celery@<host>`.
    #[arg(short = 'n', long = "hostname")]
    pub node: Option<String>,
    /// Send task events (received, started, succeeded, ...) for Flower and
    /// `celery events`; Celery's `-E`. Worker events are always sent.
    #[arg(short = 'E', long)]
    pub task_events: bool,
    /// Stop a task after this many seconds and answer `TimeLimitExceeded`,
    /// unless its message or options set another limit (Celery's
    /// `--time-limit`).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
    pub time_limit: Option<f64>,
    /// Tell a task after this many seconds; one that does not handle it is
    /// stopped and answered `SoftTimeLimitExceeded` (Celery's
    /// `--soft-time-limit`).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
    pub soft_time_limit: Option<f64>,
    /// The queues to consume, as Celery's `-Q a,b` (default: --queue); each
    /// is declared as --queue-type and --exchange-type say.
    #[arg(short = 'Q', long = "queues", value_delimiter = ',')]
    pub queues: Vec<String>,
}

/// A number of seconds, more than 0 (a time limit).
fn positive_seconds(text: &str) -> Result<f64, String> {
    match seconds(text)? {
        wait if wait.is_zero() => Err(format!("{text:?} is not a number of seconds above 0")),
        wait => Ok(wait.as_secs_f64()),
    }
}

impl Target {
    /// The broker setting, parsed.
    pub fn broker(&self) -> crate::Result<Broker> {
        self.broker.parse()
    }

    /// The queue with its kind.
    pub fn task_queue(&self) -> TaskQueue {
        TaskQueue {
            name: self.queue.clone(),
            kind: self.queue_type,
            exchange: self.exchange_type,
        }
    }

    /// `AMQP_ADDR` (or the default broker) and Celery's queue: what the
    /// binary runs its demo on when given no command.
    pub fn from_env() -> Self {
        let setting = std::env::var(BROKER_ENV).unwrap_or_else(|_| DEFAULT_BROKER.into());
        Target {
            broker: BrokerArg { setting },
            queue: DEFAULT_QUEUE.into(),
            queue_type: QueueType::Classic,
            exchange_type: ExchangeType::Direct,
        }
    }
}

impl WorkerOptions {
    /// The worker's configuration, running the chapter's tasks; a program
    /// of its own sets [`WorkerConfig::tasks`] to its registry after.
    pub fn config(&self, target: &Target) -> crate::Result<WorkerConfig> {
        let concurrency = self.concurrency.max(1);
        let host = host_name();
        Ok(WorkerConfig {
            queue: target.queue.clone(),
            queue_type: target.queue_type,
            exchange_type: target.exchange_type,
            node: self
                .node
                .as_ref()
                .map_or_else(default_node, |node| node.replace("%h", &host)),
            task_events: self.task_events,
            time_limit: self.time_limit,
            soft_time_limit: self.soft_time_limit,
            queues: self.queues.clone(),
            concurrency,
            prefetch: self
                .prefetch
                .unwrap_or_else(|| u16::try_from(concurrency * 4).unwrap_or(u16::MAX)),
            ..WorkerConfig::new(target.broker()?)
        })
    }
}

/// A command-line argument as a task argument: JSON if it parses, else a
/// string.
///
/// ```
/// use celery_pages::commands::task_argument;
/// assert_eq!(task_argument("4"), serde_json::json!(4));
/// assert_eq!(task_argument(" halaman"), serde_json::json!(" halaman"));
/// ```
pub fn task_argument(raw: &str) -> Value {
    crate::message::pyjson::from_slice(raw.as_bytes())
        .unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// A number of seconds, 0 or more (a command-line value).
pub fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    Duration::try_from_secs_f64(value).map_err(|_| "a number of seconds, 0 or more".into())
}

/// How a result is printed: strings as they are, anything else as JSON.
pub fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => crate::message::pyjson::to_string(other),
    }
}

/// `celery_pages add`'s arguments.
#[derive(clap::Args)]
pub struct AddArgs {
    x: String,
    y: String,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    wait: Wait,
    /// Run the task no earlier than this many seconds from now
    /// (Celery's `countdown`).
    #[arg(long, value_parser = seconds)]
    countdown: Option<Duration>,
    /// Compress the task message, as kombu's `compression=` (the worker
    /// must read it: Python's and this one do).
    #[arg(long, value_enum)]
    compression: Option<crate::message::compression::Compression>,
}

/// How long a command waits for a task's result.
#[derive(clap::Args)]
pub struct Wait {
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Print the task id and exit without waiting for the result.
    #[arg(long)]
    no_wait: bool,
}

impl Wait {
    fn wait(&self) -> Option<Duration> {
        (!self.no_wait).then(|| Duration::from_secs(self.timeout))
    }
}

/// `add X Y`: sends `addTask.add(X, Y)` (no earlier than `countdown` from
/// now) and prints its result, or only its id with `--no-wait`.
pub async fn add(args: AddArgs) -> anyhow::Result<()> {
    let mut caller = Caller::connect(&args.target.broker()?, args.target.task_queue()).await?;
    caller.compress_with(args.compression);
    let arguments = [&args.x, &args.y].map(|arg| task_argument(arg));
    let pending = caller
        .send_later(ADD_TASK, &arguments, args.countdown)
        .await?;
    print_result(pending, args.wait.wait()).await?;
    caller.close().await;
    Ok(())
}

/// `celery_pages call`'s arguments.
#[derive(clap::Args)]
pub struct CallArgs {
    /// The task's name, e.g. addTask.add.
    task: String,
    /// Its positional arguments: JSON when they parse as JSON (4, [1],
    /// "4"), strings otherwise.
    args: Vec<String>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    wait: Wait,
}

/// `call TASK ARGS...`: sends any task by name, as `celery call` does,
/// and prints its result, or only its id with `--no-wait`.
pub async fn call(args: CallArgs) -> anyhow::Result<()> {
    let caller = Caller::connect(&args.target.broker()?, args.target.task_queue()).await?;
    let arguments: Vec<Value> = args.args.iter().map(|arg| task_argument(arg)).collect();
    let pending = caller.send(&args.task, &arguments).await?;
    print_result(pending, args.wait.wait()).await?;
    caller.close().await;
    Ok(())
}

/// Prints a task's result when it comes within `wait`, or, with no wait,
/// its id at once.
async fn print_result(
    pending: crate::caller::PendingResult,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    match wait {
        None => println!("{}", pending.id),
        Some(timeout) => println!("{}", show(&pending.wait(timeout).await?)),
    }
    Ok(())
}

/// `celery_pages chain`'s arguments.
#[derive(clap::Args)]
pub struct ChainArgs {
    /// The first two arguments, then one per further step (JSON if
    /// they parse as JSON, strings otherwise).
    #[arg(required = true, num_args = 2..)]
    values: Vec<String>,
    #[command(flatten)]
    target: Target,
    /// Seconds to wait for each step's result.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// `chain X Y Z...`: `add(X, Y)`, then `add(<result>, Z)`, ..., each step on
/// whichever worker takes it; prints each step and the last result.
pub async fn chain(args: ChainArgs) -> anyhow::Result<()> {
    let (target, values, timeout) = (
        &args.target,
        &args.values,
        Duration::from_secs(args.timeout),
    );
    anyhow::ensure!(values.len() >= 2, "a chain takes at least two values");
    let values: Vec<Value> = values.iter().map(|v| task_argument(v)).collect();
    let rest: Vec<Vec<Value>> = values[2..].iter().map(|v| vec![v.clone()]).collect();
    let caller = Caller::connect(&target.broker()?, target.task_queue()).await?;
    let steps = caller.send_chain(ADD_TASK, &values[..2], &rest).await?;
    let mut total = values[0].clone();
    for (step, operand) in steps.into_iter().zip(&values[1..]) {
        let result = step.wait(timeout).await?;
        println!("{} + {} = {}", show(&total), show(operand), show(&result));
        total = result;
    }
    println!("{}", show(&total));
    caller.close().await;
    Ok(())
}

/// `worker`: runs the worker until Ctrl-C or SIGTERM: a warm shutdown
/// (the tasks in flight finish); a second one stops at once, as Celery's
/// cold shutdown, unfinished tasks left unacked for the broker to hand out
/// again.
pub async fn worker(target: &Target, options: &WorkerOptions) -> anyhow::Result<()> {
    let config = options.config(target)?;
    let stop = plumbing::shutdown::signal_twice(|| {
        tracing::warn!("cold shutdown: stopping at once; the tasks in flight go back to the queue");
        std::process::exit(1);
    });
    let warm = async {
        stop.await;
        tracing::info!("warm shutdown: finishing the tasks in flight (Ctrl-C again stops at once)");
    };
    Ok(worker::run(config, warm).await?)
}

/// `status`: every worker that answers a ping within `wait`, as
/// `celery status` prints them; an error if none does.
pub async fn status(broker: &Broker, wait: Duration) -> anyhow::Result<()> {
    let answers = broadcast(broker, "ping", json!({}), None, Some(wait)).await?;
    for (node, reply) in &answers {
        let state = if reply["ok"] == "pong" { "OK" } else { "?" };
        println!("->  {node}: {state}");
    }
    let count = answers.len();
    anyhow::ensure!(count > 0, "no worker answered within {wait:?}");
    let plural = if count == 1 { "" } else { "s" };
    println!("\n{count} node{plural} online.");
    Ok(())
}

/// `revoke ID`: tells every worker not to run task `id`.
pub async fn revoke(broker: &Broker, id: &str) -> anyhow::Result<()> {
    let arguments = json!({"task_id": id, "terminate": false, "signal": "SIGTERM"});
    broadcast(broker, "revoke", arguments, None, None).await?;
    println!("revoked {id}");
    Ok(())
}

/// A worker and the chapter's calls in one process.
pub async fn demo(target: &Target) -> anyhow::Result<()> {
    let (broker, queue) = (&target.broker()?, &target.task_queue());
    // A node name of its own, so that the demo runs beside any worker.
    let config = WorkerConfig {
        queue: queue.name.clone(),
        queue_type: queue.kind,
        exchange_type: queue.exchange,
        node: format!("celery_pages-demo-{}@{}", std::process::id(), host_name()),
        concurrency: 4,
        prefetch: 16,
        ..WorkerConfig::new(broker.clone())
    };
    // Connect first, so a missing broker is reported before anything runs.
    let caller = Caller::connect(broker, queue.clone()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run(config, async {
        let _ = stopped.await;
    }));
    let timeout = Duration::from_secs(30);
    for (x, y) in [
        (json!("Kamu sudah membaca 4"), json!(" halaman")),
        (json!(4), json!(10)),
        (json!(4), json!("halaman")),
    ] {
        match caller
            .call(ADD_TASK, &[x.clone(), y.clone()], timeout)
            .await
        {
            Ok(value) => println!("add({x}, {y}) = {}", show(&value)),
            Err(Error::TaskFailed { exception, .. }) => {
                println!("add({x}, {y}) raised {exception}")
            }
            Err(err) => return Err(err.into()),
        }
    }
    caller.close().await;
    let _ = stop.send(());
    worker.await.expect("worker task panicked")?;
    Ok(())
}
