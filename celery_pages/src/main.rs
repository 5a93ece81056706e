//! `celery_pages`: a Celery-compatible worker and caller for `addTask.add`,
//! plus a demo and a bench. What each command does is in
//! [`celery_pages::commands`]; this file reads the command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use plumbing::cli::Runtime;

use celery_pages::config::WorkerConfig;
use celery_pages::worker;
use celery_pages::{BROKER_ENV, Broker, DEFAULT_BROKER, DEFAULT_QUEUE, bench, commands, control};

#[derive(Parser)]
#[command(
    version,
    about = "A Celery-compatible AMQP worker and caller for addTask.add (replaces addTask.py / addTask_main.py)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the tasks go: the broker and the queue on it.
#[derive(clap::Args, Clone)]
struct Target {
    /// The AMQP broker: a URL, or Celery's failover list `URL;URL;...`
    /// (tried in order, the next on failure).
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

impl Target {
    /// The broker setting, read (and every URL in it checked) here, once:
    /// a bad URL is one line of error, as every other failure.
    fn broker(&self) -> celery_pages::Result<Broker> {
        self.broker.parse()
    }
}

impl WorkerOptions {
    fn config(&self, target: &Target) -> celery_pages::Result<WorkerConfig> {
        let concurrency = self.concurrency.max(1);
        let host = control::host_name();
        Ok(WorkerConfig {
            broker: target.broker()?,
            queue: target.queue.clone(),
            node: self
                .node
                .as_ref()
                .map_or_else(control::default_node, |node| node.replace("%h", &host)),
            task_events: self.task_events,
            concurrency,
            prefetch: self
                .prefetch
                .unwrap_or_else(|| u16::try_from(concurrency * 4).unwrap_or(u16::MAX)),
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// A worker and the chapter's calls in one process (the default).
    Demo {
        #[command(flatten)]
        target: Target,
    },
    /// Consume the task queue and run addTask.add (replaces addTask.py's worker).
    Worker {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        options: WorkerOptions,
    },
    /// Call addTask.add(X, Y) and print the result (replaces addTask_main.py).
    /// X and Y are JSON when they parse as JSON (4, [1], "4"), strings otherwise.
    Add {
        x: String,
        y: String,
        #[command(flatten)]
        target: Target,
        /// Seconds to wait for the result.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Print the task id and exit without waiting for the result.
        #[arg(long)]
        no_wait: bool,
        /// Run the task no earlier than this many seconds from now
        /// (Celery's `countdown`).
        #[arg(long, value_parser = seconds)]
        countdown: Option<Duration>,
    },
    /// List every worker on the broker that answers a ping, Python or Rust
    /// (as `celery status`).
    Status {
        /// The AMQP broker (a URL or `URL;URL;...`).
        #[arg(long, env = BROKER_ENV, default_value = DEFAULT_BROKER)]
        broker: String,
        /// Seconds to wait for answers.
        #[arg(long, default_value = "1", value_parser = seconds)]
        timeout: Duration,
    },
    /// Revoke task ID on every worker (as `app.control.revoke(ID)`): a
    /// worker that has not run it yet never will.
    Revoke {
        id: String,
        /// The AMQP broker (a URL or `URL;URL;...`).
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
        target: Target,
        /// Seconds to wait for each step's result.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Tasks/s through a worker, and a raw AMQP round trip in the same run.
    Bench {
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
        #[command(flatten)]
        options: WorkerOptions,
    },
}

/// A number of seconds, 0 or more.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    Duration::try_from_secs_f64(value).map_err(|_| "a number of seconds, 0 or more".into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // lapin logs its own connection errors; ours say the same in one line.
    let log = match cli.command {
        Some(Command::Worker { .. }) | None | Some(Command::Demo { .. }) => {
            "warn,lapin=off,celery_pages=info,plumbing=info"
        }
        _ => "warn,lapin=off",
    };
    plumbing::cli::run(Runtime::MultiThread, log, run(cli.command))
}

async fn run(command: Option<Command>) -> anyhow::Result<()> {
    let command = command.unwrap_or_else(|| Command::Demo {
        target: Target {
            broker: std::env::var(BROKER_ENV).unwrap_or_else(|_| DEFAULT_BROKER.into()),
            queue: DEFAULT_QUEUE.into(),
        },
    });
    match command {
        Command::Demo { target } => commands::demo(&target.broker()?, &target.queue).await,
        Command::Worker { target, options } => {
            let config = options.config(&target)?;
            Ok(worker::run(config, plumbing::shutdown::signal()).await?)
        }
        Command::Add {
            x,
            y,
            target,
            timeout,
            no_wait,
            countdown,
        } => {
            let wait = (!no_wait).then(|| Duration::from_secs(timeout));
            commands::add(&target.broker()?, &target.queue, [&x, &y], countdown, wait).await
        }
        Command::Status { broker, timeout } => commands::status(&broker.parse()?, timeout).await,
        Command::Revoke { id, broker } => commands::revoke(&broker.parse()?, &id).await,
        Command::Chain {
            values,
            target,
            timeout,
        } => {
            let timeout = Duration::from_secs(timeout);
            commands::chain(&target.broker()?, &target.queue, &values, timeout).await
        }
        Command::Bench {
            target,
            tasks,
            window,
            no_worker,
            options,
        } => {
            let config = options.config(&target)?;
            println!("{}", bench::run(&config, tasks, window, no_worker).await?);
            Ok(())
        }
    }
}
