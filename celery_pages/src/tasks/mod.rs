//! The tasks a worker runs: a [`Registry`] of them by Celery name, which a
//! user extends with tasks of their own without touching the worker.
//!
//! A task is a plain or async Rust function of typed arguments (anything
//! serde reads) returning [`TaskResult`], registered with its Celery name
//! and its parameter names (Python binds keyword arguments by name):
//!
//! ```
//! use celery_pages::tasks::{Registry, Task, TaskResult};
//! use celery_pages::PyException;
//!
//! /// The pages of `books` books of `pages` pages each.
//! fn multiply(pages: u64, books: u64) -> TaskResult<u64> {
//!     pages.checked_mul(books)
//!         .ok_or_else(|| PyException::builtin("OverflowError", "too many pages"))
//! }
//!
//! let tasks = Registry::chapter().register(Task::new("pages.multiply", ["pages", "books"], multiply));
//! assert!(tasks.user_tasks().contains(&"pages.multiply"));
//! ```
//!
//! The worker takes the registry in its
//! [`WorkerConfig`](crate::worker::config::WorkerConfig); the chapter's
//! `addTask.add` ([`add`]) and Celery's built-ins ([`builtins`]) are
//! registered through the same API.

pub mod add;
pub mod builtins;
mod registry;
mod typed;

pub use registry::{
    Body, Call, Done, Failure, Registry, Signature, SoftLimit, Task, TaskContext, TaskOptions,
    TaskResult, bind_arguments, not_registered,
};
pub use typed::{Awaited, BoundAwaited, BoundPlain, Handler, Plain};

/// The chapter's task: app `addTask`, function `add`.
pub const ADD_TASK: &str = "addTask.add";
/// A teaching task: `add` after a wait.
pub const SLOW_ADD_TASK: &str = "addTask.slow_add";
/// A teaching task: `add` that fails its first attempts and retries.
pub const FLAKY_ADD_TASK: &str = "addTask.flaky_add";

impl Registry {
    /// Celery's built-in tasks, which every Celery app has.
    pub fn celery() -> Self {
        builtins::register(Registry::empty())
    }

    /// The chapter's `addTask.add` and two teaching tasks beside it
    /// (`addTask.slow_add`, `addTask.flaky_add`), with Celery's built-ins:
    /// what the `celery_pages` worker runs.
    pub fn chapter() -> Self {
        Registry::celery()
            .register(Task::new(ADD_TASK, ["x", "y"], add::add))
            .register(Task::new(
                SLOW_ADD_TASK,
                ["x", "y", "seconds"],
                add::slow_add,
            ))
            .register(
                Task::new(FLAKY_ADD_TASK, ["x", "y", "failures"], add::flaky_add)
                    .with_options(add::flaky_options()),
            )
    }
}
