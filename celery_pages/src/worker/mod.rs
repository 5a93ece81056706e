//! The worker: consumes the task queues and runs the registered tasks.
//!
//! Each delivery runs in its own task, at most `concurrency` at once (a
//! task due later, or whose rate limit's token is not due yet, waits
//! without a slot), and is
//! settled only at the end: acked after its result was confirmed by the
//! broker, or rejected (without requeue) if it can never run. A worker that
//! dies before that point leaves the message unacked, and the broker hands it
//! to the next worker: nothing is lost, at the price of a task possibly
//! running twice, which is harmless for `add`.

pub mod canvas;
pub mod config;
pub mod control;
pub mod events;
mod execute;
pub mod rate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::amqp::declare_task_queue;
use crate::worker::config::WorkerConfig;
use crate::worker::control::Node;
use crate::worker::events::Events;
use crate::worker::execute::{SETTLE_TIMEOUT, Session, handle};
use crate::{AmqpContext, QueueType, Result, TaskQueue};

const CONSUMER_TAG: &str = "celery_pages-worker";
/// How the prefetch is set on a queue of `kind`. On a classic queue it is
/// the channel's (`global`), as Celery sets it on RabbitMQ: a change applies
/// to the running consumer at once, where a per-consumer limit applies only
/// to consumers created after it (so a prefetch raised for each held eta
/// task would never take effect). Quorum queues refuse a global prefetch,
/// so there it is the consumer's, as Celery's worker does when it detects
/// quorum queues (and cannot raise it for held tasks either).
fn qos(kind: QueueType) -> BasicQosOptions {
    BasicQosOptions {
        global: kind == QueueType::Classic,
    }
}
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// The longest each step of a stop (cancel, close, goodbye) may wait for
/// the broker.
const STOP_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the worker until `shutdown` completes. The first connection must
/// succeed (so a wrong address is reported at once); after that a lost
/// connection is retried with exponential backoff and consumption resumes.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let node = Arc::new(Node::new(&config.node, &config));
    // Stops on the caller's signal or on a remote `shutdown` command.
    let shutdown = {
        let node = Arc::clone(&node);
        async move {
            tokio::select! {
                () = shutdown => {}
                () = node.shutdown.notified() => {}
            }
        }
    };
    tokio::pin!(shutdown);
    let mut connection = config.broker.connect().await?;
    // Grows while unreadable messages keep breaking the connection and none
    // can be found to set aside: no hot reconnect loop.
    let mut pause = Duration::ZERO;
    let mut first = true;
    loop {
        let outcome = consume(&connection, &config, &node, first, &mut shutdown).await;
        first = false;
        pause = match outcome {
            Ok(Stopped::Shutdown) => {
                stop_step(
                    "closing the connection",
                    connection.close(200, "worker stopped".into()),
                )
                .await;
                tracing::info!(queue = %config.queue, "worker stopped");
                return Ok(());
            }
            Ok(Stopped::Lost) => {
                tracing::warn!("broker connection lost; reconnecting");
                config.broker.fail_over();
                Duration::ZERO
            }
            Ok(Stopped::Unreadable) if set_aside_unreadable(&config).await => Duration::ZERO,
            Ok(Stopped::Unreadable) => (pause * 2).clamp(RECONNECT_FIRST, RECONNECT_MAX),
            // Another worker has the name: fatal at start (a later session
            // goes on without remote control, see `consume`).
            Err(err @ crate::Error::NodeNameTaken { .. }) => return Err(err),
            // The broker refused for good: say why, once, and stop.
            Err(err) => match err.or_refusal() {
                refused @ crate::Error::BrokerRefused { .. } => return Err(refused),
                err => {
                    tracing::warn!(err = %plumbing::describe(&err), "broker connection failed; reconnecting");
                    (pause * 2).clamp(RECONNECT_FIRST, RECONNECT_MAX)
                }
            },
        };
        connection = match reconnect(connection, pause, &config, &mut shutdown).await {
            Some(fresh) => fresh,
            None => {
                tracing::info!(queue = %config.queue, "worker stopped while reconnecting");
                return Ok(());
            }
        };
    }
}

/// Closes what is left of `old`, waits `pause`, then connects again with
/// backoff; `None` if told to stop meanwhile.
async fn reconnect(
    old: Connection,
    pause: Duration,
    config: &WorkerConfig,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<Connection> {
    // Quickly (it may be dead), so the broker lets go of its exclusive
    // queues at once.
    let closing = old.close(320, "reconnecting".into());
    let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
    let mut backoff = RECONNECT_FIRST;
    let mut wait = pause + backoff;
    loop {
        tokio::select! {
            () = shutdown.as_mut() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        match config.broker.connect().await {
            Ok(fresh) => {
                tracing::info!(broker = %config.broker.current(), "reconnected");
                return Some(fresh);
            }
            Err(err) => {
                backoff = (backoff * 2).min(RECONNECT_MAX);
                wait = backoff;
                tracing::warn!(%err, retry_in = ?backoff, "reconnect failed");
            }
        }
    }
}

/// Moves the messages lapin cannot read out of the queue (see
/// [`crate::amqp::quarantine`]), with one log line each. True if any was moved.
async fn set_aside_unreadable(config: &WorkerConfig) -> bool {
    let side = crate::amqp::quarantine::side_queue(&config.queue);
    match crate::amqp::quarantine::set_aside_unreadable(
        &config.broker,
        &config.queue,
        config.prefetch,
    )
    .await
    {
        Ok(moved) if !moved.is_empty() => {
            for message in &moved {
                tracing::error!(
                    "moved an unreadable message from queue {} to {side}: {} \
                     (its AMQP properties cannot be parsed; the queue goes on)",
                    config.queue,
                    message.description
                );
            }
            true
        }
        Ok(_) => {
            tracing::warn!(
                "the connection broke on an unreadable message, but it was not found in \
                 the queue's first {} messages; retrying",
                config.prefetch
            );
            false
        }
        Err(err) => {
            tracing::warn!(%err, "could not set an unreadable message aside; retrying");
            false
        }
    }
}

enum Stopped {
    Shutdown,
    Lost,
    /// The connection broke on a message lapin cannot parse.
    Unreadable,
}

/// Consumes on one connection until it breaks or `shutdown` completes; on
/// shutdown, stops consuming and waits for the tasks in flight.
async fn consume(
    connection: &Connection,
    config: &WorkerConfig,
    node: &Arc<Node>,
    first: bool,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Stopped> {
    // Remote control and events first: once consuming starts, a delivery
    // lapin cannot parse may break the connection at any moment.
    let control = open_control(connection, node, first).await?;
    let ended = CancellationToken::new();
    // However this session ends, its heartbeats and held tasks end with it.
    let _end_session = ended.clone().drop_guard();
    let events = Events::start(connection, Arc::clone(node), ended.clone()).await?;
    let prefetch = u16::try_from(node.prefetch()).unwrap_or(0);
    let channel = open_consumer(connection, config, prefetch).await?;
    let mut consumers = Consumers::default();
    for queue in node.queues() {
        consumers
            .start(&channel, &config.task_queue().named(&queue))
            .await?;
    }
    // Remote control runs beside the deliveries, on this connection (its
    // replies may need a fresh channel), for as long as the session lasts.
    let remote_control = async {
        if let Some((_commands_channel, mut commands)) = control {
            crate::worker::control::serve(connection, &mut commands, node).await;
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    tracing::info!(node = %config.node, queue = %config.queue, concurrency = config.concurrency, prefetch = config.prefetch, "worker ready");
    let slots = node.new_slots();
    let session = Arc::new(Session {
        node: Arc::clone(node),
        events,
        channel: channel.clone(),
        task_queue: config.task_queue(),
        origin: crate::message::origin(),
        held: tokio::sync::Mutex::new(0),
        ended,
    });
    let stopped = tokio::select! {
        stopped = deliver(&session, &slots, &mut consumers, shutdown) => stopped,
        never = remote_control => match never {},
    };
    // Held tasks are let go: unacked, they return to the queue with the
    // channel, and whoever consumes it next holds them.
    session.ended.cancel();
    match stopped {
        Stopped::Shutdown => {
            finish_in_flight(&channel, &consumers, &slots, node.concurrency()).await;
            stop_step(
                "saying worker-offline",
                session.events.worker_event("worker-offline"),
            )
            .await;
        }
        // The tasks in flight cannot settle on a dead connection (the broker
        // redelivers their messages): reconnect at once, without them.
        Stopped::Lost | Stopped::Unreadable => {}
    }
    Ok(stopped)
}

/// The task queues a session consumes, each by its own consumer on the
/// session's channel, their deliveries merged.
#[derive(Default)]
struct Consumers {
    deliveries: futures::stream::SelectAll<lapin::Consumer>,
    /// The queues consumed, and their consumer tags.
    tags: Vec<(String, String)>,
}

impl Consumers {
    /// Declares `queue` as Celery does and starts consuming it.
    async fn start(&mut self, channel: &Channel, queue: &TaskQueue) -> Result<()> {
        declare_task_queue(channel, queue).await?;
        let tag = format!("{CONSUMER_TAG}.{}", queue.name);
        let consumer = channel
            .basic_consume(
                queue.name.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .doing("starting to consume")?;
        tracing::info!("Started consuming from {}", queue.name);
        self.deliveries.push(consumer);
        self.tags.push((queue.name.clone(), tag));
        Ok(())
    }

    /// Stops consuming `queue` (its deliveries in flight still settle).
    async fn cancel(&mut self, channel: &Channel, queue: &str) {
        let Some(at) = self.tags.iter().position(|(name, _)| name == queue) else {
            return;
        };
        let (_, tag) = self.tags.remove(at);
        tracing::info!("Canceling queue {queue}");
        stop_step(
            "cancelling a consumer",
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
    }

    /// Consumes what `node` asks for now: the queues added, not the ones
    /// cancelled (`add_consumer`, `cancel_consumer`).
    async fn follow(&mut self, session: &Session) -> Result<()> {
        let wanted = session.node.queues();
        let stale: Vec<String> = self
            .tags
            .iter()
            .map(|(queue, _)| queue.clone())
            .filter(|queue| !wanted.contains(queue))
            .collect();
        for queue in stale {
            self.cancel(&session.channel, &queue).await;
        }
        for queue in wanted {
            if !self.tags.iter().any(|(name, _)| *name == queue) {
                let queue = session.task_queue.named(&queue);
                self.start(&session.channel, &queue).await?;
            }
        }
        Ok(())
    }
}

/// Dispatches deliveries until the connection breaks or `shutdown`
/// completes; says which. Follows the queues remote control asks for.
async fn deliver(
    session: &Arc<Session>,
    slots: &Arc<Semaphore>,
    consumers: &mut Consumers,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Stopped {
    // Remote control's changes, waited for across deliveries (made anew
    // only when one comes, not for every delivery).
    let node = &session.node;
    let prefetch_changed = node.prefetch_changed.notified();
    let queues_changed = node.queues_changed.notified();
    tokio::pin!(prefetch_changed, queues_changed);
    loop {
        // With no queue left to consume, wait for one (or the end).
        let next = async {
            if consumers.tags.is_empty() {
                std::future::pending().await
            } else {
                consumers.deliveries.next().await
            }
        };
        let delivery = tokio::select! {
            () = shutdown.as_mut() => return Stopped::Shutdown,
            () = &mut prefetch_changed => {
                prefetch_changed.set(node.prefetch_changed.notified());
                hold_count(session, 0).await;
                continue;
            }
            () = &mut queues_changed => {
                queues_changed.set(node.queues_changed.notified());
                if let Err(err) = consumers.follow(session).await {
                    tracing::warn!(err = %plumbing::describe(&err), "could not change the queues consumed");
                    return Stopped::Lost;
                }
                continue;
            }
            next = next => next,
        };
        match delivery {
            Some(Ok(delivery)) => dispatch(session, slots, delivery).await,
            Some(Err(err)) if matches!(err.kind(), lapin::ErrorKind::ParsingError(_)) => {
                tracing::debug!(%err, "a message could not be parsed; setting it aside");
                return Stopped::Unreadable;
            }
            Some(Err(err)) => {
                tracing::warn!(%err, "consumer failed");
                return Stopped::Lost;
            }
            None => return Stopped::Lost,
        }
    }
}

/// Opens the worker's remote-control queue. At the first connection a node
/// name another worker holds is fatal; after a reconnect it may be our own
/// old connection that the broker has not dropped yet, so a few tries are
/// made and then the session goes on without remote control (tasks matter
/// more), saying so.
async fn open_control(
    connection: &Connection,
    node: &Node,
    first: bool,
) -> Result<Option<(Channel, lapin::Consumer)>> {
    let mut tries = 0;
    loop {
        match crate::worker::control::open(connection, node).await {
            Ok(control) => return Ok(Some(control)),
            Err(err @ crate::Error::NodeNameTaken { .. }) if first => return Err(err),
            Err(err) if tries < 10 => {
                tracing::debug!(%err, "remote control not open yet; retrying");
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => {
                tracing::warn!(%err, "going on without remote control until the next reconnect");
                return Ok(None);
            }
        }
    }
}

/// Starts a delivery: at once in a free slot (waiting for one: the
/// concurrency limit), or, due later, held without a slot until its eta
/// (the prefetch grows by one meanwhile, so held tasks never starve the
/// others of deliveries).
async fn dispatch(session: &Arc<Session>, slots: &Arc<Semaphore>, delivery: Delivery) {
    if let Some(eta) = due_later(&delivery) {
        tokio::spawn(hold(Arc::clone(session), Arc::clone(slots), delivery, eta));
        return;
    }
    let start = rate_limited_start(session, &delivery);
    if start > tokio::time::Instant::now() {
        let (session, slots) = (Arc::clone(session), Arc::clone(slots));
        tokio::spawn(async move { run_at(&session, &slots, delivery, start).await });
        return;
    }
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let session = Arc::clone(session);
    tokio::spawn(async move {
        handle(&session, delivery).await;
        drop(slot);
    });
}

/// When a delivery may start, its task type's rate limit considered (a
/// token taken now, as Celery's worker takes it on receipt).
fn rate_limited_start(session: &Session, delivery: &Delivery) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if !session.node.rate_limited() {
        return now;
    }
    match crate::message::task_name(&delivery.properties) {
        Some(task) => session.node.rate_limited_start(&task, now),
        None => now,
    }
}

/// Runs a delivery at `start`, in a free slot; lets it go (unacked, back
/// to the queue with the channel) if the session ends first.
async fn run_at(
    session: &Session,
    slots: &Arc<Semaphore>,
    delivery: Delivery,
    start: tokio::time::Instant,
) {
    tokio::select! {
        () = tokio::time::sleep_until(start) => {}
        () = session.ended.cancelled() => return,
    }
    let slot = tokio::select! {
        slot = Arc::clone(slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        () = session.ended.cancelled() => return,
    };
    handle(session, delivery).await;
    drop(slot);
}

/// The `eta` of a delivery, if it is in the future.
fn due_later(delivery: &Delivery) -> Option<chrono::DateTime<chrono::Utc>> {
    let eta = crate::message::eta_of(&delivery.properties)?;
    (eta > chrono::Utc::now()).then_some(eta)
}

/// Holds a delivery until its `eta`, then runs it like any other. If the
/// session ends first, lets it go (it returns to the queue unacked).
async fn hold(
    session: Arc<Session>,
    slots: Arc<Semaphore>,
    delivery: Delivery,
    eta: chrono::DateTime<chrono::Utc>,
) {
    hold_count(&session, 1).await;
    let wait = (eta - chrono::Utc::now()).to_std().unwrap_or_default();
    tracing::info!(eta = %eta, "holding a task until its eta");
    let due = tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = session.ended.cancelled() => false,
    };
    hold_count(&session, -1).await;
    if !due {
        return;
    }
    let start = rate_limited_start(&session, &delivery);
    run_at(&session, &slots, delivery, start).await;
}

/// Counts a held task in (`+1`) or out (`-1`), or none (`0`: the pool's
/// size changed), and sets the prefetch to the worker's one plus the held
/// ones, as Celery's worker does.
async fn hold_count(session: &Session, change: i32) {
    if session.task_queue.kind == QueueType::Quorum {
        return; // a consumer's prefetch cannot change under it
    }
    let mut held = session.held.lock().await;
    *held = held.saturating_add_signed(change);
    // Past what basic.qos can say, no limit at all (kombu's
    // PREFETCH_COUNT_MAX): held tasks must never stop the others.
    let prefetch = u16::try_from(session.node.prefetch().saturating_add(*held)).unwrap_or(0);
    if let Err(err) = session
        .channel
        .basic_qos(prefetch, qos(session.task_queue.kind))
        .await
    {
        tracing::debug!(%err, "could not change the prefetch");
    }
}

/// Sets up native delayed delivery for a quorum queue, as Celery's worker
/// does when it detects one (see [`crate::amqp::delayed`]).
async fn delayed_delivery(channel: &Channel, queue: &TaskQueue) -> Result<()> {
    crate::amqp::delayed::declare_levels(channel).await?;
    if !crate::amqp::delayed::bind_queue(channel, queue).await? {
        tracing::warn!(
            "exchange {} is a direct exchange, and native delayed delivery does not support \
             direct exchanges: countdown and eta tasks published to it are held by the worker \
             until they are due (use --exchange-type topic to have the broker hold them)",
            queue.name
        );
    }
    Ok(())
}

/// Opens the channel the task queues are consumed on, with the configured
/// prefetch, and results published with confirms.
async fn open_consumer(
    connection: &Connection,
    config: &WorkerConfig,
    prefetch: u16,
) -> Result<Channel> {
    let channel = crate::amqp::confirming_channel(connection).await?;
    let task_queue = config.task_queue();
    declare_task_queue(&channel, &task_queue).await?;
    if task_queue.kind == QueueType::Quorum {
        delayed_delivery(&channel, &task_queue).await?;
    }
    channel
        .basic_qos(prefetch, qos(config.queue_type))
        .await
        .doing("setting the prefetch")?;
    Ok(channel)
}

/// Stops consuming, waits for every task in flight to settle its message
/// (all `concurrency` slots free again), and closes the channel. Messages
/// prefetched but not started go back to the queue with the channel.
async fn finish_in_flight(
    channel: &Channel,
    consumers: &Consumers,
    slots: &Semaphore,
    concurrency: usize,
) {
    tracing::info!("stopping: no new tasks; finishing the ones in flight");
    for (_, tag) in &consumers.tags {
        stop_step(
            "cancelling the consumer",
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
    }
    let all = u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(SETTLE_TIMEOUT, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "tasks still unsettled after {SETTLE_TIMEOUT:?}; the broker will redeliver them"
        );
    }
    stop_step(
        "closing the channel",
        channel.close(200, "worker stopped".into()),
    )
    .await;
}

/// One step of stopping, bounded: a broker that stopped answering must not
/// keep a worker that was told to stop from stopping (what the step would
/// have settled, the broker settles when the connection goes).
async fn stop_step<T>(doing: &str, step: impl Future<Output = T>) {
    if tokio::time::timeout(STOP_STEP_TIMEOUT, step).await.is_err() {
        tracing::warn!(
            "the broker did not answer within {STOP_STEP_TIMEOUT:?} while {doing}; stopping anyway"
        );
    }
}
