//! A task queue over AMQP, wire-compatible with Python Celery 5: the
//! chapter's `addTask.py` (a worker running `add`) and `addTask_main.py`
//! (a caller), on lapin.
//!
//! A caller does not run the task: it publishes a message to the broker's
//! `celery` queue, and whichever worker takes the message runs it and sends
//! the result back to the caller's own reply queue (Celery's `rpc://` result
//! backend). Because the messages follow Celery's protocol exactly, a Python
//! caller can use this worker and this caller can use a Python worker.
//!
//! The modules follow a task's way, caller → queue → worker → result:
//!
//! - [`message`]: what travels: Celery's task message and result, in the
//!   JSON Python writes (and compressed as kombu compresses);
//! - [`caller`]: sends tasks and waits for their results; its
//!   [`control`](caller::control) broadcasts remote-control commands;
//! - [`amqp`]: the broker, the queues and exchanges Celery declares, delays
//!   kept in the broker, unreadable messages set aside;
//! - [`worker`]: the run loop, one delivery's execution (retries, time
//!   limits, stopping a running task), rate limits, what runs after a task
//!   (chains, callbacks), remote control and events;
//! - [`tasks`]: the registry of tasks a worker runs, which a user extends
//!   with typed functions of their own; the chapter's `addTask.add` and
//!   Celery's built-ins are registered the same way;
//! - [`telemetry`]: the spans of tasks run and sent, exported with the
//!   OpenTelemetry crates when asked (the trace context itself travels in
//!   [`message::trace`] either way).
//!
//! What this worker adds to Celery's defaults: a task is acknowledged only
//! after its result is confirmed by the broker (late ack), so a worker killed
//! mid-stream loses nothing; a message that can never run is rejected, logged
//! and answered instead of crashing the worker or looping; and a lost broker
//! connection is retried with backoff.
//!
//! A worker with a task of one's own, and a typed call of it, in one
//! program (needs a broker):
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use celery_pages::{Caller, Registry, Task, TaskResult, WorkerConfig, worker};
//!
//! fn multiply(pages: u64, books: u64) -> TaskResult<u64> {
//!     Ok(pages * books)
//! }
//!
//! let broker = celery_pages::Broker::default();
//! let tasks = Registry::chapter().register(Task::new("pages.multiply", ["pages", "books"], multiply));
//! let config = WorkerConfig { tasks: Arc::new(tasks), ..WorkerConfig::new(broker.clone()) };
//! tokio::spawn(worker::run(config, std::future::pending()));
//! let caller = Caller::connect(&broker, celery_pages::DEFAULT_QUEUE).await?;
//! let pages: u64 = caller.call("pages.multiply", (120, 3), Duration::from_secs(30)).await?;
//! assert_eq!(pages, 360);
//! # Ok(())
//! # }
//! ```

pub mod amqp;
pub mod caller;
pub mod commands;
pub mod message;
pub mod tasks;
pub mod telemetry;
pub mod worker;

pub use amqp::broker::{BROKER_ENV, Broker, DEFAULT_BROKER};
pub use amqp::{ExchangeType, QueueType, TaskQueue};
pub use caller::Caller;
pub use message::PyException;
pub use tasks::{ADD_TASK, Registry, Task, TaskResult};
pub use worker::config::WorkerConfig;

/// Celery's default queue.
pub const DEFAULT_QUEUE: &str = "celery";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach the AMQP broker at {url}. Start RabbitMQ with \
         `docker compose up -d --wait` in the workspace (or install it and run \
         `rabbitmq-server -detached`), or point --broker / {BROKER_ENV} at a running one"
    )]
    Broker { url: String, source: lapin::Error },
    #[error(
        "cannot reach the AMQP broker at {url}: no connection within {timeout:?}. Start \
         RabbitMQ with `docker compose up -d --wait` in the workspace (or install it and run \
         `rabbitmq-server -detached`), or point --broker / {BROKER_ENV} at a running one"
    )]
    BrokerTimeout {
        url: String,
        timeout: std::time::Duration,
    },
    #[error(
        "the AMQP broker at {url} refused the login: check the user name and password \
         in the URL (RabbitMQ's default guest/guest only works from localhost)"
    )]
    LoginRefused { url: String, source: lapin::Error },
    #[error(
        "the AMQP broker at {url} refused the connection (is the vhost right? the default is %2f)"
    )]
    ConnectionRefused { url: String, source: lapin::Error },
    #[error(
        "{url} closed the connection or answered in something other than AMQP: is it a TLS port? Then write amqps:// \
         (RabbitMQ's TLS port is usually 5671)"
    )]
    NotAmqp { url: String },
    #[error("TLS to the AMQP broker at {url} failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("the TLS settings of {url} cannot be used")]
    TlsSettings {
        url: String,
        source: Box<plumbing::tls::TlsError>,
    },
    #[error(
        "{url:?} is not an AMQP URL: write amqp://USER:PASSWORD@HOST:PORT/VHOST, \
         e.g. {DEFAULT_BROKER} ({reason})"
    )]
    BadUrl { url: String, reason: String },
    #[error("AMQP error while {doing}")]
    Amqp {
        doing: &'static str,
        source: lapin::Error,
    },
    #[error("the broker did not accept the task message (negative publisher confirm)")]
    NotConfirmed,
    #[error("no result for task {id} within {timeout:?}: is a worker consuming queue {queue:?}?")]
    Timeout {
        id: String,
        queue: String,
        timeout: std::time::Duration,
    },
    #[error("the arguments of task {task} cannot be sent: {reason}")]
    Arguments { task: String, reason: String },
    #[error("the result of task {id} is not of the type asked for: {reason}")]
    ResultType { id: String, reason: String },
    #[error("task {id} failed: {exception}")]
    TaskFailed {
        id: String,
        exception: Box<PyException>,
    },
    #[error("the broker connection closed before the result of task {id} came back")]
    ResultLost { id: String },
    #[error(
        "another worker named {node} is already running on this broker; \
         give this one another name with -n NAME"
    )]
    NodeNameTaken { node: String },
    #[error("setting an unreadable message aside through {url} failed: {reason}")]
    Quarantine { url: String, reason: String },
    #[error("the broker refused {doing}: {reason}. Not retried (retrying cannot fix it): {hint}")]
    BrokerRefused {
        doing: &'static str,
        reason: String,
        hint: &'static str,
    },
}

impl Error {
    /// The error itself, or, when the broker refused for good (a queue
    /// declared with other arguments, a missing exchange, no permission),
    /// [`Error::BrokerRefused`] with the broker's own text and what to
    /// change: a configuration error that reconnecting would only repeat.
    pub fn or_refusal(self) -> Self {
        use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
        let Error::Amqp { doing, source } = &self else {
            return self;
        };
        let lapin::ErrorKind::ProtocolError(amqp) = source.kind() else {
            return self;
        };
        let hint = match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
                "it exists with other arguments than this worker declares (a quorum \
                 queue, say: then run it with --queue-type quorum; a topic exchange: \
                 --exchange-type topic), or delete it so the worker declares it"
            }
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => {
                "it does not exist: check the name, or declare it first"
            }
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                "give the user permission on this vhost and resource (rabbitmqctl set_permissions)"
            }
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                "the user may not use this vhost (rabbitmqctl set_permissions)"
            }
            _ => return self,
        };
        Error::BrokerRefused {
            doing,
            reason: amqp.to_string(),
            hint,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the context of what was being done to a lapin error.
pub(crate) trait AmqpContext<T> {
    fn doing(self, doing: &'static str) -> Result<T>;
}

impl<T> AmqpContext<T> for lapin::Result<T> {
    fn doing(self, doing: &'static str) -> Result<T> {
        self.map_err(|source| Error::Amqp { doing, source })
    }
}
