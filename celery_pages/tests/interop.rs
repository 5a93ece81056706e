//! Interop with real Python Celery 5 over the real RabbitMQ, both ways.

mod common;

use std::time::Duration;

use celery_pages::caller::Caller;
use celery_pages::{ADD_TASK, Error};
use common::{
    TestWorker, broker, cli_on_queue, delete_queue, python_caller, start_python_worker,
    unique_queue,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_caller_is_served_by_the_rust_worker() {
    let queue = unique_queue("py-caller");
    let worker = TestWorker::start(&broker(), &queue);

    for (call, expected) in [
        ("numbers", "14\n"),
        ("strings", "Kamu sudah membaca 4 halaman\n"),
        // The Python caller re-raises the Rust worker's TypeError.
        (
            "failure",
            "TypeError: can only concatenate str (not \"int\") to str\n",
        ),
    ] {
        let queue = queue.clone();
        let output = tokio::task::spawn_blocking(move || python_caller(&queue, call))
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{call}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected, "{call}");
    }
    worker.stop().await;
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_caller_is_served_by_a_python_worker() {
    let queue = unique_queue("py-worker");
    let python = start_python_worker(&queue).await;
    let caller = Caller::connect(&broker(), &queue).await.unwrap();
    assert_eq!(
        caller
            .call::<Value>(ADD_TASK, &[json!(4), json!(10)], WAIT)
            .await
            .unwrap(),
        json!(14)
    );
    assert_eq!(
        caller
            .call::<serde_json::Value>(
                ADD_TASK,
                &[json!("Kamu sudah membaca 4"), json!(" halaman")],
                WAIT
            )
            .await
            .unwrap(),
        json!("Kamu sudah membaca 4 halaman")
    );
    match caller
        .call::<serde_json::Value>(ADD_TASK, &[json!("a"), json!(1)], WAIT)
        .await
    {
        Err(Error::TaskFailed { exception, .. }) => {
            assert_eq!(exception.exc_type, "TypeError");
            assert_eq!(
                exception.message,
                "can only concatenate str (not \"int\") to str"
            );
        }
        other => panic!("expected the Python worker's TypeError, got {other:?}"),
    }
    caller.close().await;

    // The command-line caller prints the Python worker's failure and exits non-zero.
    let output = cli_on_queue(&["add", "\"a\"", "1"], &queue).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TypeError: can only concatenate str (not \"int\") to str"),
        "{stderr}"
    );

    drop(python);
    delete_queue(&queue).await;
}
