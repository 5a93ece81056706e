//! A Celery worker with tasks of one's own: the chapter's `addTask.add`,
//! Celery's built-ins, and two new tasks, written as plain Rust functions
//! and registered by name. Nothing else in the crate changes.
//!
//! ```sh
//! cargo run -p celery_pages --example own_task -- --queue pages
//! # then, from Python:  app.send_task("pages.multiply", (120, 3), queue="pages").get()
//! # or from Rust:       cargo run -p celery_pages -- call pages.multiply 120 3 --queue pages
//! ```

use std::sync::Arc;
use std::time::Duration;

use celery_pages::commands::{Target, WorkerOptions};
use celery_pages::{PyException, Registry, Task, TaskResult, worker};
use clap::Parser;
use plumbing::cli::Runtime;

/// The pages in `books` books of `pages` pages each.
fn multiply(pages: i64, books: i64) -> TaskResult<i64> {
    pages
        .checked_mul(books)
        .ok_or_else(|| PyException::builtin("OverflowError", "too many pages"))
}

/// [`multiply`], after waiting `seconds` (an async task waits without
/// holding a thread, so other tasks run meanwhile).
async fn slow_multiply(pages: i64, books: i64, seconds: f64) -> TaskResult<i64> {
    let wait = Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyException::builtin("ValueError", "seconds must be 0 or more"))?;
    tokio::time::sleep(wait).await;
    multiply(pages, books)
}

/// The tasks this worker runs.
fn tasks() -> Registry {
    Registry::chapter()
        .register(Task::new("pages.multiply", ["pages", "books"], multiply))
        .register(Task::new(
            "pages.slow_multiply",
            ["pages", "books", "seconds"],
            slow_multiply,
        ))
}

/// A Celery worker for the chapter's addTask.add and two tasks of its own:
/// pages.multiply(pages, books) and pages.slow_multiply(pages, books, seconds).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    options: WorkerOptions,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    plumbing::cli::run(Runtime::MultiThread, "warn,celery_pages=info", async move {
        let mut config = args.options.config(&args.target)?;
        config.tasks = Arc::new(tasks());
        Ok(worker::run(config, plumbing::shutdown::signal()).await?)
    })
}
