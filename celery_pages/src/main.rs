//! `celery_pages`: a Celery-compatible worker and caller for `addTask.add`,
//! plus a demo and a bench; this file reads the command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use plumbing::cli::Runtime;

use celery_pages::commands::{self, BrokerArg, Target, WorkerOptions};
use celery_pages::worker;

mod bench;

// A message is a few dozen small allocations in lapin and here (header
// tables, strings, JSON); glibc's allocator was a fifth of the worker's
// profile under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "A Celery-compatible AMQP worker and caller for addTask.add (replaces addTask.py / addTask_main.py)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
        #[arg(long, value_parser = commands::seconds)]
        countdown: Option<Duration>,
        /// Compress the task message, as kombu's `compression=` (the worker
        /// must read it: Python's and this one do).
        #[arg(long, value_enum)]
        compression: Option<celery_pages::message::compression::Compression>,
    },
    /// List every worker on the broker that answers a ping, Python or Rust
    /// (as `celery status`).
    Status {
        #[command(flatten)]
        broker: BrokerArg,
        /// Seconds to wait for answers.
        #[arg(long, default_value = "1", value_parser = commands::seconds)]
        timeout: Duration,
    },
    /// Revoke task ID on every worker (as `app.control.revoke(ID)`): a
    /// worker that has not run it yet never will.
    Revoke {
        id: String,
        #[command(flatten)]
        broker: BrokerArg,
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
        /// Compress the task messages (the raw run stays uncompressed).
        #[arg(long, value_enum)]
        compression: Option<celery_pages::message::compression::Compression>,
        /// Instead: queue N tasks (no results asked) first, then time the
        /// worker taking and acking them all, beside a raw consumer doing
        /// the same with plain messages. With --no-worker: fill --queue, then
        /// time whatever worker is started on it (Python's, say) until the
        /// queue is empty.
        #[arg(long, value_name = "N", conflicts_with = "compression")]
        drain: Option<u64>,
        #[command(flatten)]
        options: WorkerOptions,
    },
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
        target: Target::from_env(),
    });
    match command {
        Command::Demo { target } => commands::demo(&target).await,
        Command::Worker { target, options } => {
            let config = options.config(&target)?;
            // Ctrl-C: a warm shutdown (the tasks in flight finish); again:
            // at once, as Celery's cold shutdown, unfinished tasks left
            // unacked for the broker to hand out again.
            let stop = plumbing::shutdown::signal_twice(|| {
                tracing::warn!(
                    "cold shutdown: stopping at once; the tasks in flight go back to the queue"
                );
                std::process::exit(1);
            });
            let warm = async {
                stop.await;
                tracing::info!(
                    "warm shutdown: finishing the tasks in flight (Ctrl-C again stops at once)"
                );
            };
            Ok(worker::run(config, warm).await?)
        }
        Command::Add {
            x,
            y,
            target,
            timeout,
            no_wait,
            countdown,
            compression,
        } => {
            let wait = (!no_wait).then(|| Duration::from_secs(timeout));
            commands::add(&target, [&x, &y], countdown, compression, wait).await
        }
        Command::Status { broker, timeout } => commands::status(&broker.parse()?, timeout).await,
        Command::Revoke { id, broker } => commands::revoke(&broker.parse()?, &id).await,
        Command::Chain {
            values,
            target,
            timeout,
        } => commands::chain(&target, &values, Duration::from_secs(timeout)).await,
        Command::Bench {
            target,
            tasks,
            window,
            no_worker,
            compression,
            drain,
            options,
        } => {
            let config = options.config(&target)?;
            match drain {
                Some(tasks) if no_worker => {
                    let report = bench::drain::run_external(&config, tasks, |queue| {
                        println!("{tasks} tasks queued in {queue:?}: start the worker on it now");
                    })
                    .await?;
                    println!("{report}");
                }
                Some(tasks) => println!("{}", bench::drain::run(&config, tasks).await?),
                None => println!(
                    "{}",
                    bench::run(&config, tasks, window, no_worker, compression).await?
                ),
            }
            Ok(())
        }
    }
}
