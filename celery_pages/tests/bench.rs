//! `bench --drain N --no-worker`: the drain bench times a worker of another
//! program, Python's or this crate's, on the queue it fills.

mod common;

use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{KillOnDrop, TestWorker, broker, broker_url, delete_queue, unique_queue};
use test_support::child::{line_with, spawn_lines};

/// Starts `bench --drain tasks --no-worker` on `queue`; returns once it says
/// the queue is filled (off the async runtime's threads).
async fn start_drain(queue: &str, tasks: u64) -> (KillOnDrop, Receiver<String>) {
    let queue = queue.to_owned();
    tokio::task::spawn_blocking(move || start_drain_blocking(&queue, tasks))
        .await
        .unwrap()
}

fn start_drain_blocking(queue: &str, tasks: u64) -> (KillOnDrop, Receiver<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_celery_pages"));
    command.args([
        "bench",
        "--drain",
        &tasks.to_string(),
        "--no-worker",
        "--queue",
        queue,
        "--broker",
        &broker_url(),
    ]);
    let (bench, lines) = spawn_lines(command).unwrap();
    line_with(
        &lines,
        &[&format!("{tasks} tasks queued"), "start the worker"],
    );
    (bench, lines)
}

/// Waits (bounded) for the bench to print its report and exit 0; returns
/// the drain rate it printed (off the async runtime's threads).
async fn drain_rate(bench: KillOnDrop, lines: Receiver<String>, tasks: u64) -> f64 {
    tokio::task::spawn_blocking(move || drain_rate_blocking(bench, &lines, tasks))
        .await
        .unwrap()
}

fn drain_rate_blocking(mut bench: KillOnDrop, lines: &Receiver<String>, tasks: u64) -> f64 {
    let header = line_with(
        lines,
        &["tasks already queued, drained by the worker on queue"],
    );
    assert!(header.starts_with(&tasks.to_string()), "{header}");
    let drained = line_with(lines, &["celery add tasks drained:"]);
    line_with(lines, &["raw AMQP messages drained:"]);
    line_with(lines, &["raw AMQP, task-shaped:"]);
    line_with(
        lines,
        &["ratio drained/raw:", "task's own bytes and headers"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = bench.child().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the bench did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    drained
        .split_whitespace()
        .find_map(|word| word.trim_end_matches("/s").parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drain_bench_times_a_worker_started_after_it_filled_the_queue() {
    const TASKS: u64 = 300;
    // Python's worker first: the mode is for measuring other programs.
    let queue = unique_queue("drain_python");
    let (bench, lines) = start_drain(&queue, TASKS).await;
    assert_eq!(common::ready_count(&queue).await, TASKS as u32);
    let python = common::start_python_worker(&queue).await;
    let rate = drain_rate(bench, lines, TASKS).await;
    assert!(rate > 0.0);
    assert_eq!(common::ready_count(&queue).await, 0);
    drop(python);
    delete_queue(&queue).await;

    // Then a Rust worker; while it consumes, a second drain is refused (it
    // would be drained while it fills).
    let queue = unique_queue("drain_rust");
    let (bench, lines) = start_drain(&queue, TASKS).await;
    let worker = TestWorker::start(&broker(), &queue);
    let rate = drain_rate(bench, lines, TASKS).await;
    assert!(rate > 0.0);
    let refused = common::cli_on_queue(&["bench", "--drain", "10", "--no-worker"], &queue).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("must be empty and unconsumed") && stderr.contains("1 consumers"),
        "{stderr}"
    );
    worker.stop().await;
    delete_queue(&queue).await;
}
