//! Celery as it is deployed: quorum queues with native delayed delivery,
//! and a three-node RabbitMQ cluster losing the worker's node. Each
//! behaviour is checked on Python's worker first (so the check is known to
//! be right), then on the Rust one.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use celery_pages::caller::Caller;
use celery_pages::{ADD_TASK, Broker, ExchangeType, QueueType, TaskQueue};
use common::{
    KillOnDrop, TestWorker, broker, delete_queue, python, python_dir, ready_count,
    start_python_worker_with, unique_queue,
};
use futures::StreamExt;
use serde_json::json;
use test_support::child::{line_with, lines_of};
use test_support::rabbitmq::{RabbitCluster, RabbitNode};

const BIN: &str = env!("CARGO_BIN_EXE_celery_pages");
/// Only bit 3 set: the task waits in `celery_delayed_3` for all of it.
const COUNTDOWN: &str = "8";
const DELAY_QUEUE: &str = "celery_delayed_3";
/// `addTask.py`'s settings for a quorum queue behind a topic exchange.
const QUORUM_TOPIC: [(&str, &str); 2] = [
    ("CELERY_QUEUE_TYPE", "quorum"),
    ("CELERY_EXCHANGE_TYPE", "topic"),
];

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
        if ready_count(DELAY_QUEUE).await > 0 {
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

/// Tasks sent through the cluster, and how many are answered before the
/// worker's node is killed.
const CLUSTER_TASKS: u64 = 3_000;
const KILL_AFTER: usize = 1_000;

/// Sends `add(i, 1)` for every `i` below [`CLUSTER_TASKS`] through `caller`
/// to a quorum queue; once [`KILL_AFTER`] are answered, kills node `victim`
/// (the worker's); then checks every task is answered, and rightly. What
/// went wrong is told with the lines of `worker_log` (if given) that name
/// a task concerned, so that a rare failure can be explained.
async fn every_task_answered_across_a_node_kill(
    cluster: &mut RabbitCluster,
    victim: usize,
    caller: &Caller,
    worker_log: Option<&std::path::Path>,
) {
    let answered = Arc::new(AtomicUsize::new(0));
    let pending: Vec<_> = futures::stream::iter(0..CLUSTER_TASKS)
        .map(|i| async move { caller.send(ADD_TASK, &[json!(i), json!(1)]).await })
        .buffered(64)
        .map(|sent| sent.unwrap())
        .collect()
        .await;
    let ids: Vec<String> = pending.iter().map(|pending| pending.id.clone()).collect();
    let results = tokio::spawn({
        let answered = Arc::clone(&answered);
        futures::future::join_all(pending.into_iter().map(move |pending| {
            let answered = Arc::clone(&answered);
            async move {
                let result = pending.wait(CLUSTER_WAIT).await;
                answered.fetch_add(1, Ordering::Relaxed);
                result
            }
        }))
    });
    for _ in 0..6_000 {
        if answered.load(Ordering::Relaxed) >= KILL_AFTER {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = answered.load(Ordering::Relaxed);
    assert!(
        before >= KILL_AFTER,
        "only {before} answered before the kill"
    );
    let node = &mut cluster.nodes[victim];
    tokio::task::block_in_place(|| node.kill());
    let after_kill = answered.load(Ordering::Relaxed);
    assert!(
        after_kill < CLUSTER_TASKS as usize,
        "every task was answered before the node died: nothing was tested"
    );
    let results = results.await.unwrap();
    let wrong: Vec<(usize, String)> = results
        .into_iter()
        .enumerate()
        .filter(|(i, result)| !matches!(result, Ok(value) if *value == json!(i + 1)))
        .map(|(i, result)| (i, format!("{result:?}")))
        .collect();
    if wrong.is_empty() {
        return;
    }
    let log = worker_log
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let told: Vec<String> = wrong
        .iter()
        .take(5)
        .map(|(i, result)| {
            let id = &ids[*i];
            let lines: Vec<&str> = log
                .lines()
                .filter(|line| line.contains(id.as_str()))
                .collect();
            format!("task {i} ({id}): {result}\n  the worker's log on it: {lines:#?}")
        })
        .collect();
    panic!(
        "{} of {CLUSTER_TASKS} tasks not answered rightly ({after_kill} answered at the kill); the first:\n{}",
        wrong.len(),
        told.join("\n")
    );
}

const CLUSTER_WAIT: Duration = Duration::from_secs(180);

/// On a three-node cluster with a quorum queue, the node the worker is
/// connected to is killed (SIGKILL) in the middle of 3,000 tasks: the
/// worker passes on to the next node of its broker list, and every task is
/// answered, without a restart of the worker. Python's worker first, then
/// (the node back) the Rust one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_mid_stream_loses_no_task() {
    let mut cluster = tokio::task::spawn_blocking(|| RabbitCluster::start(3))
        .await
        .unwrap();
    let quorum = |name: &str| TaskQueue {
        kind: QueueType::Quorum,
        ..TaskQueue::from(name)
    };

    // Python's worker on node 0 (its list starts there), the caller on node
    // 1. Acks late, results confirmed, as the Rust worker always does:
    // with Celery's defaults (ack first, results unconfirmed) a task is
    // lost now and then here.
    let queue = "celery_pages.cluster.python";
    let python_list = cluster.broker_list(0).replace("/%2f", "//");
    let log_dir = tempfile::tempdir().unwrap();
    let python_log = log_dir.path().join("worker.log");
    let mut python_side = start_python_worker_with(
        queue,
        &[
            ("CELERY_QUEUE_TYPE", "quorum"),
            ("CELERY_AT_LEAST_ONCE", "1"),
            ("CELERY_BROKER", &python_list),
            (common::LOG_COPY, python_log.to_str().unwrap()),
        ],
    )
    .await;
    let broker: Broker = cluster.broker_list(1).parse().unwrap();
    let caller = Caller::connect(&broker, quorum(queue)).await.unwrap();
    every_task_answered_across_a_node_kill(&mut cluster, 0, &caller, Some(&python_log)).await;
    assert!(
        python_side.child().try_wait().unwrap().is_none(),
        "the Python worker exited"
    );
    drop(python_side);
    caller.close().await;
    tokio::task::block_in_place(|| cluster.nodes[0].restart());

    // The Rust worker on node 1, the caller on node 2.
    let queue = "celery_pages.cluster.rust";
    let mut config = TestWorker::config(&cluster.broker_list(1).parse().unwrap(), queue);
    config.queue_type = QueueType::Quorum;
    let worker = TestWorker::with_config(config);
    let broker: Broker = cluster.broker_list(2).parse().unwrap();
    let caller = Caller::connect(&broker, quorum(queue)).await.unwrap();
    every_task_answered_across_a_node_kill(&mut cluster, 1, &caller, None).await;
    caller.close().await;
    worker.stop().await;
}

/// A worker process on the broker at `url`, once it is ready; its log
/// (stderr) read line by line.
fn worker_process_on(url: &str, queue: &str) -> (KillOnDrop, Receiver<String>) {
    let mut worker = KillOnDrop::new(
        common::worker_command(queue)
            .args(["--broker", url])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = lines_of(worker.child().stderr.take().unwrap());
    line_with(&log, &["worker ready"]);
    (worker, log)
}

fn interrupt(worker: &KillOnDrop) {
    let sent = Command::new("kill")
        .args(["-INT", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// How the worker exited; panics if it is still running after a minute.
fn exit_code(mut worker: KillOnDrop) -> Option<i32> {
    for _ in 0..1_200 {
        if let Some(status) = worker.child().try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the worker did not exit within a minute of being told to");
}

/// A broker that stops answering (frozen with SIGSTOP) cannot hold a
/// stopping worker: each step of the warm shutdown is bounded, so one
/// Ctrl-C ends it (exit 0); a second Ctrl-C is Celery's cold shutdown, at
/// once, exit 1, the tasks in flight left to the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_when_told_even_if_its_broker_hangs() {
    tokio::task::spawn_blocking(|| {
        let node = RabbitNode::start();
        let queue = "celery_pages.frozen";

        let (worker, log) = worker_process_on(&node.url(), queue);
        node.freeze();
        interrupt(&worker);
        line_with(&log, &["warm shutdown"]);
        assert_eq!(exit_code(worker), Some(0));
        node.resume();

        let (worker, log) = worker_process_on(&node.url(), queue);
        node.freeze();
        interrupt(&worker);
        line_with(&log, &["warm shutdown"]);
        interrupt(&worker);
        line_with(&log, &["cold shutdown"]);
        assert_eq!(exit_code(worker), Some(1));
        node.resume();
    })
    .await
    .unwrap();
}
