//! The `own_task` example: a worker with tasks of the user's own, served
//! to Python's Celery caller exactly as Python's worker serves the same
//! tasks (`python/pages.py`), and to the Rust caller with typed arguments.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use celery_pages::Caller;
use common::{
    KillOnDrop, broker, broker_url, cli_on_queue, delete_queue, node_name, python_script,
    start_python_worker_with, unique_queue,
};

const WAIT: Duration = Duration::from_secs(30);

/// The example's binary, which `cargo test` builds beside the tests.
fn example() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/own_task");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds it (or: cargo build -p celery_pages --example own_task)",
        path.display()
    );
    path
}

/// Runs `own_task_calls.py` against the worker named `node` on `queue`:
/// one line per case.
async fn calls(queue: &str, node: &str) -> Vec<String> {
    python_script("own_task_calls.py", &[node], queue).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_tasks_answer_pythons_caller_as_pythons_worker_does() {
    let host = celery_pages::message::host_name();
    let python_queue = unique_queue("own-task-py");
    let python_side = start_python_worker_with(&python_queue, &[("CELERY_APP", "pages")]).await;
    let expected = calls(&python_queue, &format!("py-{python_queue}@{host}")).await;
    drop(python_side);

    let queue = unique_queue("own-task-rs");
    let node = node_name(&queue);
    let _rust_side = KillOnDrop::new(
        Command::new(example())
            .args(["--queue", &queue, "-n", &node])
            .env("AMQP_ADDR", broker_url())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let got = calls(&queue, &node.replace("%h", &host)).await;
    assert_eq!(got, expected);
    assert!(
        got.contains(
            &"registered: ['addTask.add', 'addTask.flaky_add', 'addTask.slow_add', 'pages.multiply', 'pages.slow_multiply']".into()
        ),
        "{got:?}"
    );
    assert!(
        got.contains(&"overflow: OverflowError: too many pages".into()),
        "{got:?}"
    );

    // The Rust caller, typed, and the command line, by name.
    let caller = Caller::connect(&broker(), &queue).await.unwrap();
    let pages: i64 = caller.call("pages.multiply", (120, 3), WAIT).await.unwrap();
    assert_eq!(pages, 360);
    let err = caller
        .call::<i64>("pages.multiply", ("120", 3), WAIT)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string().split_once(" failed: ").map(|(_, why)| why),
        Some("TypeError: multiply() argument 'pages' must be int, not str")
    );
    caller.close().await;
    let printed = cli_on_queue(&["call", "pages.slow_multiply", "120", "3", "0.1"], &queue).await;
    assert!(printed.status.success(), "{printed:?}");
    assert_eq!(String::from_utf8_lossy(&printed.stdout), "360\n");

    delete_queue(&python_queue).await;
    delete_queue(&queue).await;
}
