//! `celery_pages`: a Celery-compatible worker and caller for `addTask.add`,
//! plus a demo and a bench; this file reads the command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use plumbing::cli::Runtime;

use celery_pages::commands::{
    self, AddArgs, BrokerArg, CallArgs, ChainArgs, Target, WorkerOptions,
};
use celery_pages::telemetry::{self, Destination};

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
    /// Export the spans of the tasks run and sent: `otlp` (to the collector
    /// OTEL_EXPORTER_OTLP_ENDPOINT names, http://localhost:4318 by default;
    /// setting that variable alone does the same) or a FILE (JSON lines).
    #[arg(long, global = true, value_name = "otlp|FILE")]
    trace: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// A worker and the chapter's calls in one process (the default).
    Demo {
        #[command(flatten)]
        target: Target,
    },
    /// Consume the task queue and run addTask.add and Celery's built-ins
    /// (replaces addTask.py's worker).
    Worker {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        options: WorkerOptions,
    },
    /// Call addTask.add(X, Y) and print the result (replaces addTask_main.py).
    /// X and Y are JSON when they parse as JSON (4, [1], "4"), strings otherwise.
    Add(AddArgs),
    /// Call any task by name with positional arguments and print its
    /// result, as `celery call` (e.g. `call pages.multiply 120 3` on a
    /// worker that has that task).
    Call(CallArgs),
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
    Chain(ChainArgs),
    /// Tasks/s through a worker, and a raw AMQP round trip in the same run.
    Bench(bench::BenchArgs),
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
    plumbing::cli::run(Runtime::MultiThread, log, traced(cli.trace, cli.command))
}

/// Runs `command`, exporting spans if asked to ([`telemetry`]), flushed
/// before exit.
async fn traced(trace: Option<String>, command: Option<Command>) -> anyhow::Result<()> {
    let exporting = match Destination::from_flag(trace.as_deref()) {
        Some(destination) => Some(telemetry::start(&destination)?),
        None => None,
    };
    let ran = run(command).await;
    if let Some(exporting) = exporting {
        // A flush may wait on the collector: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || exporting.shutdown()).await;
    }
    ran
}

async fn run(command: Option<Command>) -> anyhow::Result<()> {
    let command = command.unwrap_or_else(|| Command::Demo {
        target: Target::from_env(),
    });
    match command {
        Command::Demo { target } => commands::demo(&target).await,
        Command::Worker { target, options } => commands::worker(&target, &options).await,
        Command::Add(args) => commands::add(args).await,
        Command::Call(args) => commands::call(args).await,
        Command::Status { broker, timeout } => commands::status(&broker.parse()?, timeout).await,
        Command::Revoke { id, broker } => commands::revoke(&broker.parse()?, &id).await,
        Command::Chain(args) => commands::chain(args).await,
        Command::Bench(args) => bench::command(args).await,
    }
}
