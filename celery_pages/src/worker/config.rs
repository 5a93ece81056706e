//! How a worker runs: what the command line (or a program) sets, read by
//! the worker, its remote control and its events alike.

use std::sync::Arc;

use crate::{Broker, ExchangeType, QueueType, Registry, TaskQueue};

/// How the worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub broker: Broker,
    pub queue: String,
    /// What kind of queue `queue` is (`--queue-type`).
    pub queue_type: QueueType,
    /// The type of the queue's exchange (`--exchange-type`).
    pub exchange_type: ExchangeType,
    /// The node name Celery's tools know it by (`celery@<host>` by default).
    pub node: String,
    /// Send task events from the start (`-E`); `enable_events` turns them on
    /// later.
    pub task_events: bool,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Messages the broker sends ahead of acknowledgement.
    pub prefetch: u16,
    /// The tasks it runs (by default the chapter's `addTask.add` and
    /// Celery's built-ins).
    pub tasks: Arc<Registry>,
    /// Time limits in seconds for tasks whose message and options set none
    /// (`--time-limit`, `--soft-time-limit`; Celery's `task_time_limit`,
    /// `task_soft_time_limit`).
    pub time_limit: Option<f64>,
    pub soft_time_limit: Option<f64>,
    /// The queues to consume (`-Q a,b`, as Celery's worker takes it);
    /// empty: `queue` alone. `queue` stays the default for chain steps and
    /// callbacks that name none.
    pub queues: Vec<String>,
}

impl WorkerConfig {
    /// Defaults: the chapter's tasks on Celery's queue, 16 tasks at once,
    /// prefetch four per task (Celery's multiplier).
    pub fn new(broker: Broker) -> Self {
        WorkerConfig {
            broker,
            queue: crate::DEFAULT_QUEUE.to_owned(),
            queue_type: QueueType::Classic,
            exchange_type: ExchangeType::Direct,
            node: default_node(),
            task_events: false,
            concurrency: 16,
            prefetch: 64,
            tasks: Arc::new(Registry::chapter()),
            time_limit: None,
            soft_time_limit: None,
            queues: Vec::new(),
        }
    }

    /// The queues the worker consumes at start.
    pub fn consumed_queues(&self) -> Vec<String> {
        if self.queues.is_empty() {
            vec![self.queue.clone()]
        } else {
            self.queues.clone()
        }
    }

    /// The queue the worker consumes, with its kind and exchange type.
    pub fn task_queue(&self) -> TaskQueue {
        TaskQueue {
            name: self.queue.clone(),
            kind: self.queue_type,
            exchange: self.exchange_type,
        }
    }
}

/// The default node name: `celery@<host>`, as Celery's.
pub fn default_node() -> String {
    format!("celery@{}", crate::message::host_name())
}
