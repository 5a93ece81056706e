//! `celery_pages`: a Celery-compatible worker and caller for `addTask.add`,
//! plus a demo and a bench.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use celery_pages::caller::Caller;
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
}

impl WorkerOptions {
    fn config(&self, broker: &Broker) -> WorkerConfig {
        let concurrency = self.concurrency.max(1);
        WorkerConfig {
            broker: broker.broker.clone(),
            queue: broker.queue.clone(),
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Some(Command::Bench { .. } | Command::Add { .. }) => "warn",
        _ => "warn,celery_pages=info",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    let command = cli.command.unwrap_or(Command::Demo {
        broker: Broker {
            broker: std::env::var(BROKER_ENV).unwrap_or_else(|_| DEFAULT_BROKER.into()),
            queue: DEFAULT_QUEUE.into(),
        },
    });
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {:#}", anyhow::Error::from(err));
            ExitCode::FAILURE
        }
    }
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

/// Completes on Ctrl-C or SIGTERM. The handlers are installed at the call,
/// so a signal that comes before the worker's first poll is not missed.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        })
    };
    async move {
        #[cfg(unix)]
        if let Ok((mut interrupt, mut terminate)) = handlers {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(command: Command) -> celery_pages::Result<()> {
    match command {
        Command::Worker { broker, options } => {
            worker::run(options.config(&broker), stop_signal()).await
        }
        Command::Add {
            x,
            y,
            broker,
            timeout,
            no_wait,
        } => {
            let caller = Caller::connect(&broker.broker, &broker.queue).await?;
            let pending = caller
                .send(ADD_TASK, &[task_argument(&x), task_argument(&y)])
                .await?;
            if no_wait {
                println!("{}", pending.id);
            } else {
                let value = pending.wait(Duration::from_secs(timeout)).await?;
                println!("{}", show(&value));
            }
            caller.close().await;
            Ok(())
        }
        Command::Demo { broker } => {
            let config = WorkerOptions {
                concurrency: 4,
                prefetch: None,
            }
            .config(&broker);
            // Connect first, so a missing broker is reported before anything runs.
            let caller = Caller::connect(&broker.broker, &broker.queue).await?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let worker = tokio::spawn(worker::run(config, async {
                let _ = stopped.await;
            }));
            let timeout = Duration::from_secs(30);
            for (x, y) in [
                (Value::from("Kamu sudah membaca 4"), Value::from(" halaman")),
                (Value::from(4), Value::from(10)),
            ] {
                let value = caller
                    .call(ADD_TASK, &[x.clone(), y.clone()], timeout)
                    .await?;
                println!("add({x}, {y}) = {}", show(&value));
            }
            match caller
                .call(ADD_TASK, &[Value::from(4), Value::from("halaman")], timeout)
                .await
            {
                Err(celery_pages::Error::TaskFailed { exception, .. }) => {
                    println!("add(4, \"halaman\") raised {exception}")
                }
                other => println!("add(4, \"halaman\") = {other:?}"),
            }
            caller.close().await;
            let _ = stop.send(());
            worker.await.expect("worker task panicked")
        }
        Command::Bench {
            broker,
            tasks,
            window,
            no_worker,
            options,
        } => {
            let config = options.config(&broker);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let worker = (!no_worker).then(|| {
                tokio::spawn(worker::run(config.clone(), async {
                    let _ = stopped.await;
                }))
            });
            let caller = Arc::new(Caller::connect(&broker.broker, &broker.queue).await?);
            let timeout = Duration::from_secs(60);
            // Warm up: connections, queues, the worker's prefetch.
            bench::celery_run(Arc::clone(&caller), 500, window, timeout).await?;
            let celery = bench::celery_run(Arc::clone(&caller), tasks, window, timeout).await?;
            let raw =
                bench::raw_run(&broker.broker, tasks, window, config.prefetch.max(100)).await?;
            let who = if no_worker {
                format!("the worker on queue {:?}", broker.queue)
            } else {
                format!(
                    "the in-process worker (concurrency {}, prefetch {})",
                    config.concurrency, config.prefetch
                )
            };
            println!("{tasks} tasks, {window} in flight, through {who}");
            println!("celery add tasks:      {}", celery.summary());
            println!("raw AMQP round trips:  {}", raw.summary());
            println!(
                "ratio tasks/raw: {:.2}",
                celery.per_second() / raw.per_second()
            );
            let _ = stop.send(());
            if let Some(worker) = worker {
                worker.await.expect("worker task panicked")?;
            }
            Ok(())
        }
    }
}
