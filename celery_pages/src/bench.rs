//! `celery_pages bench`: tasks per second through a worker, against a raw
//! AMQP round trip measured in the same run.
//!
//! Both runs keep the same number of requests in flight (`window`): each
//! request is a persistent publish with publisher confirm, consumed by the
//! other side, answered to the requester's reply queue, and acked. The raw
//! run does exactly that with opaque bytes and no Celery semantics; the
//! Celery run adds the protocol (headers, JSON, the task, results) and the
//! worker's late ack after a confirmed result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use serde_json::json;
use tokio::sync::oneshot;

use crate::caller::Caller;
use crate::{ADD_TASK, AmqpContext, Error, Result, connect, reply_queue};

/// What a run measured.
#[derive(Debug)]
pub struct Stats {
    pub requests: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn summary(&self) -> String {
        format!(
            "{:>8.0}/s  p50 {:>6} us  p99 {:>6} us  ({} in {:.2} s)",
            self.per_second(),
            self.latency_us.value_at_quantile(0.5),
            self.latency_us.value_at_quantile(0.99),
            self.requests,
            self.elapsed.as_secs_f64()
        )
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `requests` calls of `one`, `window` at a time.
async fn closed_loop<F, Fut>(requests: u64, window: usize, one: F) -> Result<Stats>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let window = window.max(1) as u64;
    let started = Instant::now();
    let workers: Vec<_> = (0..window)
        .map(|worker| {
            let one = one.clone();
            let share = requests / window + u64::from(worker < requests % window);
            tokio::spawn(async move {
                let mut latency_us = histogram();
                for i in 0..share {
                    let began = Instant::now();
                    one(i).await?;
                    let _ = latency_us.record(began.elapsed().as_micros() as u64);
                }
                Ok::<_, Error>(latency_us)
            })
        })
        .collect();
    let mut latency_us = histogram();
    for worker in workers {
        latency_us
            .add(&worker.await.expect("bench worker panicked")?)
            .expect("histograms share bounds");
    }
    Ok(Stats {
        requests,
        elapsed: started.elapsed(),
        latency_us,
    })
}

/// `tasks` calls of `addTask.add(4, 10)` through whatever worker consumes
/// the caller's queue; each result is checked.
pub async fn celery_run(
    caller: Arc<Caller>,
    tasks: u64,
    window: usize,
    timeout: Duration,
) -> Result<Stats> {
    closed_loop(tasks, window, move |i| {
        let caller = Arc::clone(&caller);
        async move {
            let i = i as i64;
            let sum = caller
                .call(ADD_TASK, &[json!(i), json!(10)], timeout)
                .await?;
            assert_eq!(sum, json!(i + 10), "wrong result from the worker");
            Ok(())
        }
    })
    .await
}

const RAW_QUEUE: &str = "celery_pages.bench.raw";

/// The floor: `requests` raw AMQP round trips through a plain responder.
pub async fn raw_run(broker: &str, requests: u64, window: usize, prefetch: u16) -> Result<Stats> {
    let responder_connection = connect(broker).await?;
    let responder = responder_connection
        .create_channel()
        .await
        .doing("opening a channel")?;
    responder
        .queue_declare(
            RAW_QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .doing("declaring the raw bench queue")?;
    responder
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .doing("setting the prefetch")?;
    let deliveries = responder
        .basic_consume(
            RAW_QUEUE.into(),
            "raw-responder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .doing("consuming the raw bench queue")?;
    tokio::spawn(respond(responder.clone(), deliveries));

    let connection = connect(broker).await?;
    let channel = connection
        .create_channel()
        .await
        .doing("opening a channel")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .doing("enabling publisher confirms")?;
    let (reply_queue, replies) = reply_queue(&channel, "raw-requester").await?;
    let waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>> = Arc::default();
    {
        let waiting = Arc::clone(&waiting);
        tokio::spawn(async move {
            let mut replies = replies;
            while let Some(Ok(reply)) = replies.next().await {
                let id = reply
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str().to_owned());
                if let Some(tx) = id.and_then(|id| waiting.lock().expect("poisoned").remove(&id)) {
                    let _ = tx.send(());
                }
            }
        });
    }
    let stats = closed_loop(requests, window, {
        let channel = channel.clone();
        move |_| {
            let channel = channel.clone();
            let waiting = Arc::clone(&waiting);
            let reply_queue = reply_queue.clone();
            async move {
                let id = uuid::Uuid::new_v4().to_string();
                let (tx, rx) = oneshot::channel();
                waiting.lock().expect("poisoned").insert(id.clone(), tx);
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_correlation_id(id.as_str().into())
                    .with_reply_to(reply_queue.as_str().into());
                publish_confirmed(&channel, RAW_QUEUE, b"[[4, 10], {}, {}]", properties).await?;
                rx.await.map_err(|_| Error::ResultLost { id })
            }
        }
    })
    .await?;
    let _ = responder
        .queue_delete(RAW_QUEUE.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "bench done".into()).await;
    let _ = responder_connection.close(200, "bench done".into()).await;
    Ok(stats)
}

async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<()> {
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .doing("publishing")?
        .await
        .doing("waiting for the publisher confirm")?;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(Error::NotConfirmed)
    }
}

/// The raw responder: answers each message to its `reply_to`, then acks.
async fn respond(channel: Channel, mut deliveries: lapin::Consumer) {
    while let Some(Ok(delivery)) = deliveries.next().await {
        let mut properties = BasicProperties::default().with_delivery_mode(1);
        if let Some(id) = delivery.properties.correlation_id() {
            properties = properties.with_correlation_id(id.clone());
        }
        if let Some(reply_to) = delivery.properties.reply_to() {
            let _ = channel
                .basic_publish(
                    "".into(),
                    reply_to.clone(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    properties,
                )
                .await;
        }
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
    }
}
