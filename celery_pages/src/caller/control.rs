//! The caller's side of Celery's remote control: a command broadcast to
//! every worker (or some), and the replies collected, as `celery status`,
//! `celery inspect` and `app.control.revoke` do.

use std::time::Duration;

use futures::StreamExt;
use lapin::Channel;
use lapin::options::{BasicPublishOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::{Value, json};

use crate::amqp::pidbox::{EXCHANGE, REPLY_EXCHANGE, declare_exchanges};
use crate::{AmqpContext, Result};

/// Broadcasts command `method` to every worker on the broker (or to
/// `destination`); with `wait`, collects the replies that come within it.
pub async fn broadcast(
    broker: &crate::Broker,
    method: &str,
    arguments: Value,
    destination: Option<Vec<String>>,
    wait: Option<Duration>,
) -> Result<Vec<(String, Value)>> {
    let connection = broker.connect().await?;
    let channel = connection
        .create_channel()
        .await
        .doing("opening a channel")?;
    declare_exchanges(&channel).await?;
    let mut request = json!({
        "method": method,
        "arguments": arguments,
        "destination": destination,
        "pattern": null,
        "matcher": null,
    });
    let replies = match wait {
        Some(wait) => {
            let ticket = uuid::Uuid::new_v4().to_string();
            request["ticket"] = json!(ticket);
            request["reply_to"] = json!({"exchange": REPLY_EXCHANGE, "routing_key": ticket});
            Some((reply_queue(&channel, &ticket).await?, wait))
        }
        None => None,
    };
    let mut headers = FieldTable::default();
    headers.insert(ShortString::from("clock"), AMQPValue::LongLongInt(1));
    channel
        .basic_publish(
            EXCHANGE.into(),
            "".into(),
            BasicPublishOptions::default(),
            request.to_string().as_bytes(),
            crate::message::transient_json(headers),
        )
        .await
        .doing("broadcasting the command")?;
    let answers = match replies {
        Some((consumer, wait)) => collect_replies(consumer, wait).await,
        None => Vec::new(),
    };
    let _ = connection.close(200, "done".into()).await;
    Ok(answers)
}

/// A reply queue of the caller's own, bound to the reply exchange by
/// `ticket`, as Celery's `reply_to` names it.
async fn reply_queue(channel: &Channel, ticket: &str) -> Result<lapin::Consumer> {
    let (queue, consumer) = crate::amqp::reply_queue(channel, "celery_pages-control").await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            REPLY_EXCHANGE.into(),
            ticket.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .doing("binding the reply queue")?;
    Ok(consumer)
}

/// The replies that come within `wait`, by node name, sorted.
async fn collect_replies(mut consumer: lapin::Consumer, wait: Duration) -> Vec<(String, Value)> {
    let mut answers = Vec::new();
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(reply))) = tokio::time::timeout_at(until, consumer.next()).await {
        if let Ok(Value::Object(by_node)) = serde_json::from_slice::<Value>(&reply.data) {
            answers.extend(by_node);
        }
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    answers
}
