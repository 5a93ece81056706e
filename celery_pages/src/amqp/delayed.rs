//! Native delayed delivery: countdown and eta tasks wait in the broker, not
//! in a worker, as Celery 5.5+ does on quorum queues.
//!
//! Why: a worker holding a task for its eta keeps the message unacked, and
//! on a quorum queue the prefetch cannot be raised under a running consumer,
//! so enough held tasks would stop the worker taking any other. Instead the
//! broker keeps the task in a ladder of 28 queues, `celery_delayed_27` down
//! to `celery_delayed_0`, where level `n` holds a message for `2^n` seconds
//! (a queue TTL) and then dead-letters it to the next level's exchange. A
//! message's routing key starts with its delay in seconds as 28 binary
//! digits, most significant first (`0.0.….1.1.0.celery` for 6 s): at each
//! level a `1` routes it into that level's queue and a `0` straight on to
//! the next level, so it waits exactly the sum of its set bits. After level
//! 0 it reaches the topic exchange `celery_delayed_delivery`, which the
//! worker has bound to its task queue's exchange with `#.<routing key>`.
//!
//! Only for queues behind a topic or fanout exchange: a direct exchange
//! cannot match the prefixed key, so there (Celery's default) the caller
//! publishes the task as usual and the worker holds it, saying so. The
//! message keeps its `eta` header either way.
//!
//! The names, arguments and bindings are kombu's
//! (`kombu/transport/native_delayed_delivery.py`), so a Python worker and
//! this one declare the same things without PRECONDITION_FAILED.
//!
//! ```
//! use celery_pages::amqp::delayed::routing_key;
//! let key = routing_key(6, "celery").unwrap();
//! assert!(key.ends_with(".1.1.0.celery"));
//! assert_eq!(key.split('.').count(), 28 + 1);
//! ```

use lapin::Channel;
use lapin::ExchangeKind;
use lapin::options::{ExchangeBindOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::{AmqpContext, ExchangeType, Result, TaskQueue};

/// How many delay bits, hence levels: the longest delay is `2^28 - 1` s.
pub const LEVELS: u32 = 28;
/// Where a delayed task is published.
pub const ENTRY_EXCHANGE: &str = "celery_delayed_27";
/// Where a task comes out when it is due.
pub const DELIVERY_EXCHANGE: &str = "celery_delayed_delivery";

/// The exchange and queue of one level.
pub fn level_name(level: u32) -> String {
    format!("celery_delayed_{level}")
}

/// The routing key that delays a task for `seconds` on its way to
/// `routing_key`, as kombu's `calculate_routing_key`; `None` for a delay
/// under a second or over the ladder's reach (the task then goes straight
/// to its queue, and the worker holds it for its eta).
pub fn routing_key(seconds: u64, routing_key: &str) -> Option<String> {
    if seconds == 0 || seconds >= 1 << LEVELS {
        return None;
    }
    let mut key = String::with_capacity(2 * LEVELS as usize + routing_key.len());
    for bit in (0..LEVELS).rev() {
        key.push(if seconds >> bit & 1 == 1 { '1' } else { '0' });
        key.push('.');
    }
    key.push_str(routing_key);
    Some(key)
}

/// Where a task for `queue` due in `seconds` is published: the entry
/// exchange with the delaying routing key (see [`routing_key`]), or `None`
/// where the broker cannot delay it (see [`TaskQueue::delays_in_broker`]).
pub fn publish_target(seconds: u64, queue: &TaskQueue) -> Option<(&'static str, String)> {
    if !queue.delays_in_broker() {
        return None;
    }
    Some((ENTRY_EXCHANGE, routing_key(seconds, &queue.name)?))
}

/// Declares the ladder of levels and the delivery exchange, as kombu's
/// `declare_native_delayed_delivery_exchanges_and_queues` with quorum delay
/// queues (Celery's `broker_native_delayed_delivery_queue_type` default).
pub async fn declare_levels(channel: &Channel) -> Result<()> {
    // A message whose bit for this level is set waits here.
    let mut waits_here = "1.#".to_owned();
    for level in (0..LEVELS).rev() {
        let name = level_name(level);
        declare_topic(channel, &name).await?;
        let next = match level {
            0 => DELIVERY_EXCHANGE.to_owned(),
            _ => level_name(level - 1),
        };
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                level_arguments(level, &next),
            )
            .await
            .doing("declaring a delay queue")?;
        channel
            .queue_bind(
                name.as_str().into(),
                name.as_str().into(),
                waits_here.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .doing("binding a delay queue")?;
        waits_here.insert_str(0, "*.");
    }
    // A message whose bit is clear goes on to the next level at once.
    let mut passes = "0.#".to_owned();
    for level in (1..LEVELS).rev() {
        bind_exchange(channel, &level_name(level - 1), &level_name(level), &passes).await?;
        passes.insert_str(0, "*.");
    }
    declare_topic(channel, DELIVERY_EXCHANGE).await?;
    bind_exchange(channel, DELIVERY_EXCHANGE, &level_name(0), &passes).await
}

/// Binds `queue`'s exchange to the delivery exchange, and `queue` to its
/// exchange, by `#.<name>`: a due task reaches the queue it was sent to.
/// A direct exchange cannot take part; the caller is told (false).
pub async fn bind_queue(channel: &Channel, queue: &TaskQueue) -> Result<bool> {
    if queue.exchange == ExchangeType::Direct {
        return Ok(false);
    }
    let key = format!("#.{}", queue.name);
    bind_exchange(channel, &queue.name, DELIVERY_EXCHANGE, &key).await?;
    channel
        .queue_bind(
            queue.name.as_str().into(),
            queue.name.as_str().into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .doing("binding the task queue to its delayed deliveries")?;
    Ok(true)
}

/// kombu's arguments for the queue of `level`: a TTL of `2^level` s, then
/// on to `next`; quorum, refusing rather than dropping when full.
fn level_arguments(level: u32, next: &str) -> FieldTable {
    let mut arguments = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(s.into());
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments.insert("x-overflow".into(), text("reject-publish"));
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt((1_i64 << level) * 1000),
    );
    arguments.insert("x-dead-letter-exchange".into(), text(next));
    arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    arguments
}

async fn declare_topic(channel: &Channel, name: &str) -> Result<()> {
    crate::amqp::declare_durable_exchange(
        channel,
        name,
        ExchangeKind::Topic,
        "declaring a delay exchange",
    )
    .await
}

async fn bind_exchange(
    channel: &Channel,
    destination: &str,
    source: &str,
    routing_key: &str,
) -> Result<()> {
    channel
        .exchange_bind(
            destination.into(),
            source.into(),
            routing_key.into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .doing("binding a delay exchange")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kombu's own output: `calculate_routing_key(6, "celery")` and
    /// `calculate_routing_key(2**28 - 1, "q")`.
    #[test]
    fn routing_keys_are_kombus() {
        let six = format!("{}1.1.0.celery", "0.".repeat(25));
        assert_eq!(routing_key(6, "celery").unwrap(), six);
        let longest = format!("{}q", "1.".repeat(28));
        assert_eq!(routing_key((1 << 28) - 1, "q").unwrap(), longest);
    }

    #[test]
    fn delays_outside_the_ladder_are_not_routed() {
        assert_eq!(routing_key(0, "celery"), None);
        assert_eq!(routing_key(1 << 28, "celery"), None);
    }
}
