//! The Rust worker as Celery's own tools see it: `celery inspect`,
//! `celery control`, `celery status`, `app.control.revoke`, against real
//! RabbitMQ and real Python Celery; and `celery_pages status` / `revoke`
//! against Python workers. Every worker has a node name of its own.

mod common;

use std::process::Command;
use std::time::Duration;

use celery_pages::ADD_TASK;
use common::{
    RawClient, TestWorker, broker, cli, delete_queue, python, python_broker, python_dir,
    python_worker, unique_queue,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Runs `python -m celery -A addTask ARGS` (or another module with
/// `script`) for queue `queue`; returns its status and output.
async fn celery(queue: &str, args: &[&str]) -> (bool, String) {
    let (queue, args): (String, Vec<String>) = (
        queue.to_owned(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(python());
        if args[0].ends_with(".py") {
            command.args(&args);
        } else {
            command.args(["-m", "celery", "-A", "addTask"]).args(&args);
        }
        command
            .current_dir(python_dir())
            .env("CELERY_QUEUE", &queue)
            .env("CELERY_BROKER", python_broker())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A Rust worker on a queue of its own, with its node name.
fn start(test: &str) -> (String, String, TestWorker) {
    let queue = unique_queue(test);
    let node = format!("rs.{queue}@test");
    let worker = TestWorker::start(&broker(), &queue);
    (queue, node, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_inspect_sees_the_rust_worker() {
    let (queue, node, worker) = start("inspect");
    // Wait (bounded) for the worker's pidbox to be up.
    let mut polls = 0;
    loop {
        let (ok, text) = celery(&queue, &["inspect", "ping", "-d", &node]).await;
        if ok && text.contains(&format!("{node}: OK")) && text.contains("pong") {
            break;
        }
        polls += 1;
        assert!(polls < 20, "{text}");
    }
    for command in [
        "stats",
        "active",
        "registered",
        "active_queues",
        "reserved",
        "revoked",
        "conf",
    ] {
        let (ok, text) = celery(&queue, &["inspect", command, "-d", &node]).await;
        assert!(
            ok && text.contains(&format!("{node}: OK")),
            "{command}: {text}"
        );
    }
    let (_, text) = celery(&queue, &["inspect", "registered", "-d", &node]).await;
    assert!(text.contains(ADD_TASK), "{text}");
    let (ok, text) = celery(&queue, &["status"]).await;
    assert!(ok && text.contains(&format!("{node}: OK")), "{text}");
    for command in ["enable_events", "disable_events", "heartbeat"] {
        let (ok, text) = celery(&queue, &["control", command, "-d", &node]).await;
        assert!(
            ok && text.contains(&format!("{node}: OK")),
            "{command}: {text}"
        );
    }
    // An unknown command gets Celery's error reply.
    let (ok, text) = celery(&queue, &["control_calls.py", "unknown", &node]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "{{'{node}': {{'error': \"KeyError('nosuch')\"}}}}"
        )),
        "{text}"
    );
    // shutdown stops it gracefully: its run ends without an error.
    let (ok, text) = celery(&queue, &["control_calls.py", "shutdown", &node]).await;
    assert!(ok, "{text}");
    worker.stopped_by_itself(WAIT).await;
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_task_never_runs() {
    let (queue, node, worker) = start("revoke");
    let id = uuid::Uuid::new_v4().to_string();
    let (ok, text) = celery(&queue, &["control_calls.py", "revoke", &node, &id]).await;
    assert!(ok, "{text}");
    assert_eq!(text, "TaskRevokedError: revoked\n3\n");
    worker.stop().await;
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_with_the_same_node_name_is_refused() {
    let (queue, _node, worker) = start("same-name");
    // The first is up once it answers.
    let caller = celery_pages::caller::Caller::connect(&broker(), &queue)
        .await
        .unwrap();
    caller
        .call(ADD_TASK, &[json!(1), json!(1)], WAIT)
        .await
        .unwrap();
    let mut config = celery_pages::worker::WorkerConfig::new(broker());
    config.queue = queue.clone();
    config.node = format!("rs.{queue}@test");
    let second = celery_pages::worker::run(config, std::future::pending()).await;
    match second {
        Err(err @ celery_pages::Error::NodeNameTaken { .. }) => {
            assert!(err.to_string().contains("already running"), "{err}")
        }
        other => panic!("expected NodeNameTaken, got {other:?}"),
    }
    caller.close().await;
    worker.stop().await;
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_status_and_revoke_reach_python_workers_too() {
    let queue = unique_queue("rs-status");
    let python_side = {
        let queue = queue.clone();
        tokio::task::spawn_blocking(move || python_worker(&queue))
            .await
            .unwrap()
    };
    let worker = TestWorker::start(&broker(), &queue);
    // The Python worker is up (python_worker waited for it); the Rust one
    // once `status` lists it (bounded retries).
    let mut polls = 0;
    let output = loop {
        let output = cli(&["status"]).await;
        let listed = String::from_utf8_lossy(&output.stdout).into_owned();
        if listed.contains(&format!("rs.{queue}@test: OK")) || polls == 20 {
            break output;
        }
        polls += 1;
    };
    assert!(output.status.success(), "{output:?}");
    let listed = String::from_utf8_lossy(&output.stdout);
    for node in [format!("py-{queue}@"), format!("rs.{queue}@test: OK")] {
        assert!(listed.contains(&node), "{node} not in {listed}");
    }
    worker.stop().await;

    // Revoked from Rust, a task never runs on the Python worker.
    let id = uuid::Uuid::new_v4().to_string();
    let output = cli(&["revoke", &id]).await;
    assert!(output.status.success(), "{output:?}");
    let mut client = RawClient::connect().await;
    let (body, props) = celery_pages::protocol::TaskMessage {
        id: &id,
        task: ADD_TASK,
        args: &[json!(1), json!(2)],
        reply_to: Some(&client.reply_queue),
        origin: "test",
        ..Default::default()
    }
    .encode();
    client.publish(&queue, props, &body).await;
    let reply = client.next_reply(WAIT).await.expect("no answer");
    assert_eq!(reply["status"], "REVOKED", "{reply}");
    drop(python_side);
    delete_queue(&queue).await;
}
