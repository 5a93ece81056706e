//! The AMQP side: the broker (its URL, failover list and connection), the
//! queues and exchanges Celery declares, and what is done for messages the
//! AMQP library cannot read.
//!
//! Both the caller and the worker declare the task queue exactly as Python
//! Celery declares it, so either side may come first and neither meets
//! PRECONDITION_FAILED.

pub mod broker;
pub mod delayed;
pub mod pidbox;
pub mod quarantine;

use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer, ExchangeKind};

use crate::{AmqpContext, Result};

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
    pub fn arguments(&self) -> FieldTable {
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
pub async fn declare_durable_exchange(
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
pub async fn confirming_channel(connection: &lapin::Connection) -> Result<Channel> {
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
