//! Celery as it is deployed: quorum queues with native delayed delivery.
//! Each behaviour is checked on Python's worker first (so the check is
//! known to be right), then on the Rust one.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use celery_pages::{ExchangeType, QueueType};
use common::{
    KillOnDrop, TestWorker, broker, delete_queue, python, python_dir, ready_count,
    start_python_worker_with, unique_queue,
};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

const BIN: &str = env!("CARGO_BIN_EXE_celery_pages");
/// Only bit 3 set: the task waits in `celery_delayed_3` for all of it.
const COUNTDOWN: &str = "8";
const DELAY_QUEUE: &str = "celery_delayed_3";
/// `addTask.py`'s settings for a quorum queue behind a topic exchange.
const QUORUM_TOPIC: [(&str, &str); 2] = [
    ("CELERY_QUEUE_TYPE", "quorum"),
    ("CELERY_EXCHANGE_TYPE", "topic"),
];

/// Messages in a delay queue (a quorum queue's count lags a little).
async fn waiting_in(delay_queue: &str) -> u32 {
    let connection = broker().connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            delay_queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let _ = connection.close(200, "test done".into()).await;
    declared.map_or(0, |declared| declared.message_count())
}

/// Runs `caller` (it sends `add(4, 10)` with an 8 s countdown and prints the
/// result); checks that meanwhile the task waits in the broker's delay
/// queue while the task queue is empty, then returns what it printed.
async fn delayed_call(queue: &str, caller: Command) -> String {
    let mut caller = caller;
    let caller = KillOnDrop::new(
        caller
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut seen = false;
    for _ in 0..300 {
        if waiting_in(DELAY_QUEUE).await > 0 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the task never waited in {DELAY_QUEUE}");
    assert_eq!(
        ready_count(queue).await,
        0,
        "the task also reached its queue"
    );
    let output = tokio::task::spawn_blocking(move || caller.release().wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn python_caller(queue: &str) -> Command {
    let mut command = Command::new(python());
    command
        .args(["canvas_calls.py", "delayed", COUNTDOWN])
        .current_dir(python_dir())
        .env("CELERY_QUEUE", queue)
        .env("CELERY_BROKER", common::python_broker())
        .envs(QUORUM_TOPIC);
    command
}

fn rust_caller(queue: &str, countdown: &str) -> Command {
    let mut command = Command::new(BIN);
    command.args([
        "add",
        "4",
        "10",
        "--countdown",
        countdown,
        "--queue",
        queue,
        "--queue-type",
        "quorum",
        "--exchange-type",
        "topic",
        "--timeout",
        "120",
        "--broker",
        &common::broker_url(),
    ]);
    command
}

fn quorum_topic_worker(queue: &str) -> TestWorker {
    let mut config = TestWorker::config(&broker(), queue);
    config.queue_type = QueueType::Quorum;
    config.exchange_type = ExchangeType::Topic;
    TestWorker::with_config(config)
}

/// On a quorum queue behind a topic exchange a countdown task waits in the
/// broker (Celery's native delayed delivery), not in a worker, and is
/// answered when due: Python's worker and caller first, then the Rust
/// worker on a queue of its own (it declares and binds all of it) with
/// Python's caller and with its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_waits_in_the_brokers_delay_queues() {
    let python_queue = unique_queue("delayed-py");
    let python_side = start_python_worker_with(&python_queue, &QUORUM_TOPIC).await;
    let answer = delayed_call(&python_queue, python_caller(&python_queue)).await;
    assert_eq!(answer, "14\n");
    drop(python_side);

    let queue = unique_queue("delayed");
    let worker = quorum_topic_worker(&queue);
    assert_eq!(delayed_call(&queue, python_caller(&queue)).await, "14\n");
    assert_eq!(
        delayed_call(&queue, rust_caller(&queue, COUNTDOWN)).await,
        "14\n"
    );
    worker.stop().await;

    // The queue and topic exchange Python declared serve the Rust worker.
    let worker = quorum_topic_worker(&python_queue);
    let mut call = rust_caller(&python_queue, "0");
    let output = tokio::task::spawn_blocking(move || call.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "14\n",
        "{output:?}"
    );
    worker.stop().await;
    delete_queue(&queue).await;
    delete_queue(&python_queue).await;
}
