//! A task queue over AMQP, wire-compatible with Python Celery 5: the
//! chapter's `addTask.py` (a worker running `add`) and `addTask_main.py`
//! (a caller), on lapin.
//!
//! A caller does not run the task: it publishes a message to the broker's
//! `celery` queue, and whichever worker takes the message runs it and sends
//! the result back to the caller's own reply queue (Celery's `rpc://` result
//! backend). Because the messages follow Celery's protocol exactly
//! ([`protocol`]), a Python caller can use this worker and this caller can
//! use a Python worker.
//!
//! What this worker adds to Celery's defaults: a task is acknowledged only
//! after its result is confirmed by the broker (late ack), so a worker killed
//! mid-stream loses nothing; a message that can never run is rejected, logged
//! and answered instead of crashing the worker or looping; and a lost broker
//! connection is retried with backoff.
//!
//! A worker and a call in one program (needs a broker):
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use celery_pages::caller::Caller;
//! use celery_pages::config::WorkerConfig;
//! use celery_pages::worker;
//! use serde_json::json;
//!
//! let broker = celery_pages::Broker::default();
//! let config = WorkerConfig::new(broker.clone());
//! tokio::spawn(worker::run(config, std::future::pending()));
//! let caller = Caller::connect(&broker, celery_pages::DEFAULT_QUEUE).await?;
//! let sum = caller
//!     .call(celery_pages::ADD_TASK, &[json!(4), json!(10)], std::time::Duration::from_secs(30))
//!     .await?;
//! assert_eq!(sum, json!(14));
//! # Ok(())
//! # }
//! ```

pub mod add;
pub mod bench;
pub mod broker;
pub mod caller;
pub mod canvas;
pub mod commands;
pub mod compression;
pub mod config;
pub mod control;
pub mod delayed;
pub mod drain;
pub mod events;
pub mod protocol;
pub mod pyjson;
pub mod quarantine;
pub mod tasks;
pub mod worker;

use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer, ExchangeKind};

pub use broker::{BROKER_ENV, Broker, DEFAULT_BROKER};
pub use protocol::PyException;

/// Celery's default queue.
pub const DEFAULT_QUEUE: &str = "celery";
/// The chapter's task: app `addTask`, function `add`.
pub const ADD_TASK: &str = "addTask.add";

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
    #[error("task {id} failed: {exception}")]
    TaskFailed { id: String, exception: PyException },
    #[error("the broker connection closed before the result of task {id} came back")]
    ResultLost { id: String },
    #[error(
        "another worker named {node} is already running on this broker; \
         give this one another name with -n NAME"
    )]
    NodeNameTaken { node: String },
    #[error(
        "queue {queue:?} must be empty and unconsumed before a drain bench fills it \
         ({waiting} messages waiting, {consumers} consumers): stop its workers, or purge it"
    )]
    DrainNotReady {
        queue: String,
        consumers: u32,
        waiting: u32,
    },
    #[error("queue {queue:?} was not drained within {timeout:?}: did a worker start on it?")]
    DrainTimeout {
        queue: String,
        timeout: std::time::Duration,
    },
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

/// The kind of a task queue, as Celery's `task_default_queue_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// RabbitMQ's classic queue (Celery's default).
    #[default]
    Classic,
    /// A quorum queue: replicated on a cluster's nodes, survives the loss
    /// of a minority of them (`x-queue-type: quorum`).
    Quorum,
}

/// The type of a task queue's exchange, as Celery's
/// `task_default_exchange_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExchangeType {
    /// Routes by the exact routing key (Celery's default). Native delayed
    /// delivery cannot reach a queue behind one.
    #[default]
    Direct,
    /// Routes by pattern: needed for native delayed delivery.
    Topic,
    /// Routes to every bound queue.
    Fanout,
}

impl From<ExchangeType> for ExchangeKind {
    fn from(kind: ExchangeType) -> Self {
        match kind {
            ExchangeType::Direct => ExchangeKind::Direct,
            ExchangeType::Topic => ExchangeKind::Topic,
            ExchangeType::Fanout => ExchangeKind::Fanout,
        }
    }
}

impl ExchangeType {
    /// The name AMQP and kombu give it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Topic => "topic",
            ExchangeType::Fanout => "fanout",
        }
    }
}

/// A task queue as Celery declares it: its name, its kind, and the type of
/// the exchange of the same name in front of it.
///
/// ```
/// use celery_pages::{ExchangeType, QueueType, TaskQueue};
/// let queue = TaskQueue::from("celery");
/// assert_eq!(queue.kind, QueueType::Classic);
/// assert_eq!(queue.exchange, ExchangeType::Direct);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskQueue {
    pub name: String,
    pub kind: QueueType,
    pub exchange: ExchangeType,
}

impl From<&str> for TaskQueue {
    /// A classic queue behind a direct exchange, Celery's default.
    fn from(name: &str) -> Self {
        TaskQueue {
            name: name.to_owned(),
            kind: QueueType::Classic,
            exchange: ExchangeType::Direct,
        }
    }
}

impl From<&String> for TaskQueue {
    fn from(name: &String) -> Self {
        TaskQueue::from(name.as_str())
    }
}

impl TaskQueue {
    /// Another queue declared the same way (a chain step's queue, say).
    pub fn named(&self, name: &str) -> TaskQueue {
        TaskQueue {
            name: name.to_owned(),
            ..self.clone()
        }
    }

    /// Whether a countdown or eta task for this queue waits in the broker
    /// ([`delayed`]): on quorum queues behind a topic or fanout exchange, as
    /// Celery decides it.
    pub fn delays_in_broker(&self) -> bool {
        self.kind == QueueType::Quorum && self.exchange != ExchangeType::Direct
    }

    /// The arguments Celery declares the queue with.
    pub(crate) fn arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if self.kind == QueueType::Quorum {
            arguments.insert(
                "x-queue-type".into(),
                lapin::types::AMQPValue::LongString("quorum".into()),
            );
        }
        arguments
    }
}

/// Declares Celery's topology for `queue` exactly as Python Celery does (a
/// durable queue of its kind, a durable exchange of the same name and its
/// type, bound by the same routing key), so neither side meets
/// PRECONDITION_FAILED.
pub async fn declare_task_queue(channel: &Channel, queue: &TaskQueue) -> Result<()> {
    let arguments = queue.arguments();
    let exchange_kind = ExchangeKind::from(queue.exchange);
    let queue = queue.name.as_str();
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .doing("declaring the task queue")?;
    declare_durable_exchange(channel, queue, exchange_kind, "declaring the task exchange").await?;
    channel
        .queue_bind(
            queue.into(),
            queue.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .doing("binding the task queue")?;
    Ok(())
}

/// How many messages wait in `queue` (not counting those delivered and not
/// yet acked), and how many consumers it has.
pub async fn queue_depth(channel: &Channel, queue: &str) -> Result<(u32, u32)> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .doing("looking at the queue's depth")?;
    Ok((declared.message_count(), declared.consumer_count()))
}

/// Declares the durable exchange `name` of `kind`, as Celery declares its
/// task, event and delay exchanges.
pub(crate) async fn declare_durable_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    doing: &'static str,
) -> Result<()> {
    channel
        .exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .doing(doing)
}

/// A new channel on `connection` whose publishes the broker confirms.
pub(crate) async fn confirming_channel(connection: &lapin::Connection) -> Result<Channel> {
    let channel = connection
        .create_channel()
        .await
        .doing("opening a channel")?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .doing("enabling publisher confirms")?;
    Ok(channel)
}

/// Declares a reply queue of the caller's own (server-named, exclusive and
/// auto-delete: it goes away with the connection, and RabbitMQ 4 accepts it)
/// and consumes it without acks. Returns its name, for `reply_to`.
pub async fn reply_queue(channel: &Channel, consumer_tag: &str) -> Result<(String, Consumer)> {
    let name = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .doing("declaring the reply queue")?
        .name()
        .as_str()
        .to_owned();
    let consumer = channel
        .basic_consume(
            name.as_str().into(),
            consumer_tag.into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .doing("consuming the reply queue")?;
    Ok((name, consumer))
}
