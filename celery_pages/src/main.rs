//! `celery_pages`: a Celery-compatible worker and caller for `addTask.add`,
//! plus a demo and a bench.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use plumbing::cli::Runtime;
use serde_json::{Value, json};

use celery_pages::caller::Caller;
use celery_pages::control;
use celery_pages::worker::{self, WorkerConfig};
use celery_pages::{ADD_TASK, BROKER_ENV, DEFAULT_BROKER, DEFAULT_QUEUE, bench};

#[derive(Parser)]
#[command(
    version,
    about = "A Celery-compatible AMQP worker and caller for addTask.add (replaces addTask.py / addTask_main.py)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Clone)]
struct Broker {
    /// The AMQP broker.
    #[arg(long, env = BROKER_ENV, default_value = DEFAULT_BROKER)]
    broker: String,
    /// The task queue (Celery's default is `celery`).
    #[arg(long, default_value = DEFAULT_QUEUE)]
    queue: String,
}

#[derive(clap::Args, Clone)]
struct WorkerOptions {
    /// Tasks run at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Messages the broker sends ahead (default: four per task, as Celery).
    #[arg(long)]
    prefetch: Option<u16>,
    /// The node name Celery's tools (inspect, control, Flower) know the
    /// worker by; `%h` is replaced by the host name. Default: celery@<host>.
    #[arg(short = 'n', long = "hostname")]
    node: Option<String>,
    /// Send task events (received, started, succeeded, ...) for Flower and
    /// `celery events`; Celery's `-E`. Worker events are always sent.
    #[arg(short = 'E', long)]
    task_events: bool,
}

impl WorkerOptions {
    fn config(&self, broker: &Broker) -> WorkerConfig {
        let concurrency = self.concurrency.max(1);
        let host = celery_pages::control::host_name();
        WorkerConfig {
            broker: broker.broker.clone(),
            queue: broker.queue.clone(),
            node: self
                .node
                .as_ref()
                .map_or_else(celery_pages::control::default_node, |node| {
                    node.replace("%h", &host)
                }),
            task_events: self.task_events,
            concurrency,
            prefetch: self
                .prefetch
                .unwrap_or_else(|| u16::try_from(concurrency * 4).unwrap_or(u16::MAX)),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// A worker and the chapter's calls in one process (the default).
    Demo {
        #[command(flatten)]
        broker: Broker,
    },
    /// Consume the task queue and run addTask.add (replaces addTask.py's worker).
    Worker {
        #[command(flatten)]
        broker: Broker,
        #[command(flatten)]
        options: WorkerOptions,
    },
    /// Call addTask.add(X, Y) and print the result (replaces addTask_main.py).
    /// X and Y are JSON when they parse as JSON (4, [1], "4"), strings otherwise.
    Add {
        x: String,
        y: String,
        #[command(flatten)]
        broker: Broker,
        /// Seconds to wait for the result.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Print the task id and exit without waiting for the result.
        #[arg(long)]
        no_wait: bool,
        /// Run the task no earlier than this many seconds from now
        /// (Celery's `countdown`).
        #[arg(long)]
        countdown: Option<f64>,
    },
    /// List every worker on the broker that answers a ping, Python or Rust
    /// (as `celery status`).
    Status {
        /// The AMQP broker.
        #[arg(long, env = BROKER_ENV, default_value = DEFAULT_BROKER)]
        broker: String,
        /// Seconds to wait for answers.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Revoke task ID on every worker (as `app.control.revoke(ID)`): a
    /// worker that has not run it yet never will.
    Revoke {
        id: String,
        /// The AMQP broker.
        #[arg(long, env = BROKER_ENV, default_value = DEFAULT_BROKER)]
        broker: String,
    },
    /// Pages read through a chain of add tasks: `chain 4 10 6` runs
    /// add(4, 10), then add(<that>, 6), ..., each step on whichever worker
    /// takes it; prints each step and the chain's last result.
    Chain {
        /// The first two arguments, then one per further step (JSON if
        /// they parse as JSON, strings otherwise).
        #[arg(required = true, num_args = 2..)]
        values: Vec<String>,
        #[command(flatten)]
        broker: Broker,
        /// Seconds to wait for each step's result.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Tasks/s through a worker, and a raw AMQP round trip in the same run.
    Bench {
        #[command(flatten)]
        broker: Broker,
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
        #[command(flatten)]
        options: WorkerOptions,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // lapin logs its own connection errors; ours say the same in one line.
    let log = match cli.command {
        Some(
            Command::Bench { .. }
            | Command::Add { .. }
            | Command::Chain { .. }
            | Command::Status { .. }
            | Command::Revoke { .. },
        ) => "warn,lapin=off",
        _ => "warn,lapin=off,celery_pages=info,plumbing=info",
    };
    let command = cli.command.unwrap_or(Command::Demo {
        broker: Broker {
            broker: std::env::var(BROKER_ENV).unwrap_or_else(|_| DEFAULT_BROKER.into()),
            queue: DEFAULT_QUEUE.into(),
        },
    });
    plumbing::cli::run(Runtime::MultiThread, log, run(command))
}

/// A command-line argument as a task argument: JSON if it parses, else a string.
fn task_argument(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// How a result is printed: strings as they are, anything else as JSON.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Worker { broker, options } => {
            worker::run(options.config(&broker), plumbing::shutdown::signal()).await?;
        }
        Command::Add {
            x,
            y,
            broker,
            timeout,
            no_wait,
            countdown,
        } => {
            let countdown = countdown
                .map(Duration::try_from_secs_f64)
                .transpose()
                .map_err(|_| anyhow::anyhow!("--countdown takes a number of seconds, 0 or more"))?;
            let caller = Caller::connect(&broker.broker, &broker.queue).await?;
            let pending = caller
                .send_later(ADD_TASK, &[task_argument(&x), task_argument(&y)], countdown)
                .await?;
            if no_wait {
                println!("{}", pending.id);
            } else {
                let value = pending.wait(Duration::from_secs(timeout)).await?;
                println!("{}", show(&value));
            }
            caller.close().await;
        }
        Command::Demo { broker } => demo(&broker).await?,
        Command::Status { broker, timeout } => {
            let wait = Duration::try_from_secs_f64(timeout)
                .map_err(|_| anyhow::anyhow!("--timeout takes a number of seconds"))?;
            let answers = control::broadcast(&broker, "ping", json!({}), None, Some(wait)).await?;
            for (node, reply) in &answers {
                let state = if reply["ok"] == "pong" { "OK" } else { "?" };
                println!("->  {node}: {state}");
            }
            let count = answers.len();
            anyhow::ensure!(count > 0, "no worker answered within {timeout} s");
            println!(
                "\n{count} node{} online.",
                if count == 1 { "" } else { "s" }
            );
        }
        Command::Revoke { id, broker } => {
            let arguments = json!({"task_id": id, "terminate": false, "signal": "SIGTERM"});
            control::broadcast(&broker, "revoke", arguments, None, None).await?;
            println!("revoked {id}");
        }
        Command::Chain {
            values,
            broker,
            timeout,
        } => chain(&values, &broker, Duration::from_secs(timeout)).await?,
        Command::Bench {
            broker,
            tasks,
            window,
            no_worker,
            options,
        } => {
            let config = options.config(&broker);
            println!("{}", bench::run(&config, tasks, window, no_worker).await?);
        }
    }
    Ok(())
}

/// `chain X Y Z...`: add(X, Y), then add(<result>, Z), ...
async fn chain(values: &[String], broker: &Broker, timeout: Duration) -> anyhow::Result<()> {
    let values: Vec<Value> = values.iter().map(|v| task_argument(v)).collect();
    let rest: Vec<Vec<Value>> = values[2..].iter().map(|v| vec![v.clone()]).collect();
    let caller = Caller::connect(&broker.broker, &broker.queue).await?;
    let steps = caller.send_chain(ADD_TASK, &values[..2], &rest).await?;
    let mut total = values[0].clone();
    let mut last = None;
    for (step, operand) in steps.into_iter().zip(&values[1..]) {
        let result = step.wait(timeout).await?;
        println!("{} + {} = {}", show(&total), show(operand), show(&result));
        total = result.clone();
        last = Some(result);
    }
    if let Some(last) = last {
        println!("{}", show(&last));
    }
    caller.close().await;
    Ok(())
}

/// A worker and the chapter's calls in one process.
async fn demo(broker: &Broker) -> anyhow::Result<()> {
    // A node name of its own, so that the demo runs beside any worker.
    let config = WorkerOptions {
        concurrency: 4,
        prefetch: None,
        node: Some(format!("celery_pages-demo-{}@%h", std::process::id())),
        task_events: false,
    }
    .config(broker);
    // Connect first, so a missing broker is reported before anything runs.
    let caller = Caller::connect(&broker.broker, &broker.queue).await?;
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
            Err(celery_pages::Error::TaskFailed { exception, .. }) => {
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
