//! The Rust worker as Celery's own tools see it: `celery inspect`,
//! `celery control`, `celery status`, `app.control.revoke`, against real
//! RabbitMQ and real Python Celery; and `celery_pages status` / `revoke`
//! against Python workers. Every worker has a node name of its own.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use celery_pages::ADD_TASK;
use common::{
    KillOnDrop, RawClient, TestWorker, broker, cli, delete_queue, listen_to_events, python,
    python_broker, python_dir, start_python_worker, start_python_worker_with, unique_queue,
};
use serde_json::json;
use test_support::child::{line_with, lines_of};

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
    // `celery control shutdown` waits for replies no worker sends (Python's
    // neither) and says "No nodes replied"; the worker stops all the same.
    let (_, text) = celery(&queue, &["control", "shutdown", "-d", &node]).await;
    assert!(text.contains("No nodes replied"), "{text}");
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
        .call::<i64>(ADD_TASK, &[json!(1), json!(1)], WAIT)
        .await
        .unwrap();
    let mut config = celery_pages::worker::config::WorkerConfig::new(broker());
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
    let python_side = start_python_worker(&queue).await;
    let worker = TestWorker::start(&broker(), &queue);
    // The Python worker is up (start_python_worker waited for it); the Rust one
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
    client
        .send_task(
            &queue,
            celery_pages::message::TaskMessage {
                id: &id,
                task: ADD_TASK,
                args: &[json!(1), json!(2)],
                ..Default::default()
            },
        )
        .await;
    let reply = client.next_reply(WAIT).await.expect("no answer");
    assert_eq!(reply["status"], "REVOKED", "{reply}");
    drop(python_side);
    delete_queue(&queue).await;
}

/// Runs `celery -A addTask ARGS` in the background with its output on a
/// pipe, line by line.
fn celery_background(
    queue: &str,
    args: &[&str],
) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
    let mut child = KillOnDrop::new(
        Command::new(python())
            .args(["-m", "celery", "-A", "addTask"])
            .args(args)
            .current_dir(python_dir())
            .env("CELERY_QUEUE", queue)
            .env("CELERY_BROKER", python_broker())
            .env("PYTHONUNBUFFERED", "1")
            // Flower's HTTP API on loopback, for the test alone.
            .env("FLOWER_UNAUTHENTICATED_API", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(child.child().stdout.take().unwrap());
    (child, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_events_shows_the_worker_and_its_tasks() {
    let queue = unique_queue("events");
    let node = format!("rs.{queue}@test");
    let (_dump, lines) = celery_background(&queue, &["events", "--dump"]);
    line_with(&lines, &["evdump: starting capture"]);
    let (_events_connection, mut online_events) = listen_to_events().await;
    let mut config = celery_pages::worker::config::WorkerConfig::new(broker());
    config.queue = queue.clone();
    config.node = node.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(celery_pages::worker::run(config, async {
        let _ = stopped.await;
    }));
    // worker-online comes first: seen on a queue bound before the worker
    // starts (the dump may not be listening yet).
    let online = events_of(&mut online_events, &node, "worker-online").await;
    assert_eq!(online["sw_ident"], "celery_pages");
    assert_eq!(online["freq"], 2.0);
    let lines = tokio::task::spawn_blocking(move || {
        line_with(&lines, &[&node, "heartbeat:", "freq=2.0", "processed=0"]);
        lines
    })
    .await
    .unwrap();
    // Task events only once enabled (Celery's -E, or enable_events).
    let node = format!("rs.{queue}@test");
    let (ok, text) = celery(&queue, &["control", "enable_events", "-d", &node]).await;
    assert!(ok, "{text}");
    let caller = celery_pages::caller::Caller::connect(&broker(), &queue)
        .await
        .unwrap();
    caller
        .call::<i64>(ADD_TASK, &[json!(4), json!(10)], WAIT)
        .await
        .unwrap();
    let _ = caller
        .call::<serde_json::Value>(ADD_TASK, &[json!(4), json!("a")], WAIT)
        .await;
    caller.close().await;
    // An expired task is revoked, and says so.
    let mut client = RawClient::connect().await;
    client
        .send_task(
            &queue,
            celery_pages::message::TaskMessage {
                id: "expired-event",
                task: ADD_TASK,
                args: &[json!(1), json!(2)],
                expires: Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
                ..Default::default()
            },
        )
        .await;
    client.next_reply(WAIT).await.expect("no answer");
    let lines = tokio::task::spawn_blocking({
        let node = node.clone();
        move || {
            line_with(
                &lines,
                &[&node, "task received: addTask.add", "args=(4, 10)"],
            );
            line_with(&lines, &[&node, "task started: addTask.add"]);
            line_with(&lines, &[&node, "task succeeded: addTask.add", "result=14"]);
            line_with(&lines, &[&node, "task failed: addTask.add", "TypeError"]);
            line_with(
                &lines,
                &[&node, "task revoked:", "expired-event", "expired=True"],
            );
            line_with(&lines, &[&node, "heartbeat:", "processed=2"]);
            lines
        }
    })
    .await
    .unwrap();
    let _ = stop.send(());
    tokio::time::timeout(WAIT, worker)
        .await
        .expect("the worker did not stop")
        .unwrap()
        .unwrap();
    tokio::task::spawn_blocking(move || line_with(&lines, &[&node, "shutdown:"]))
        .await
        .unwrap();
    delete_queue(&queue).await;
}

/// What the next `count` task-succeeded and task-failed events of `node`
/// say (one message may carry a list of events: `task.multi`).
async fn task_outcomes(events: &mut lapin::Consumer, node: &str, count: usize) -> Vec<String> {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut outcomes = Vec::new();
    while outcomes.len() < count {
        let delivery = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("only {outcomes:?} from {node}"))
            .unwrap()
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        let batch = match body {
            serde_json::Value::Array(events) => events,
            event => vec![event],
        };
        for event in batch.iter().filter(|e| e["hostname"] == node) {
            match event["type"].as_str() {
                Some("task-succeeded") => outcomes.push(format!("result {}", event["result"])),
                Some("task-failed") => outcomes.push(format!("exception {}", event["exception"])),
                _ => {}
            }
        }
    }
    outcomes
}

/// Flower and `celery events` show a task's result and exception as the
/// worker's event describes them: Python's `repr`, the same from the Rust
/// worker as from Python's (results of each type, and `TypeError`s whose
/// message holds single quotes, which Python's repr wraps in double ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_describe_results_and_exceptions_as_pythons_worker_does() {
    let calls = [
        [json!(4), json!(10)],
        [json!("Kamu sudah membaca "), json!("4")],
        [json!(4), json!("a")],
        [json!([1]), json!([2])],
        [json!(1.5), json!(2)],
        [json!(null), json!(1)],
    ];
    let calls = &calls;
    let run = |queue: String| async move {
        let caller = celery_pages::caller::Caller::connect(&broker(), &queue)
            .await
            .unwrap();
        for args in calls {
            let _ = caller.call::<serde_json::Value>(ADD_TASK, args, WAIT).await;
        }
        caller.close().await;
    };
    let (_events_connection, mut events) = listen_to_events().await;
    let python_queue = unique_queue("events-py");
    let python_side = start_python_worker_with(&python_queue, &[("CELERY_TASK_EVENTS", "1")]).await;
    let python_node = format!("py-{python_queue}@{}", celery_pages::message::host_name());
    run(python_queue.clone()).await;
    let python = task_outcomes(&mut events, &python_node, calls.len()).await;
    drop(python_side);
    delete_queue(&python_queue).await;

    let queue = unique_queue("events-rs");
    let mut config = TestWorker::config(&broker(), &queue);
    config.task_events = true;
    let node = config.node.clone();
    let worker = TestWorker::with_config(config);
    run(queue.clone()).await;
    let rust = task_outcomes(&mut events, &node, calls.len()).await;
    worker.stop().await;
    delete_queue(&queue).await;
    assert_eq!(rust, python);
}

/// The next event of `kind` from `node` (bounded wait).
async fn events_of(events: &mut lapin::Consumer, node: &str, kind: &str) -> serde_json::Value {
    use futures::StreamExt;
    // One deadline for all: other tests' workers beat on the same exchange.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let delivery = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} from {node}"))
            .unwrap()
            .unwrap();
        let event: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        if event["hostname"] == node && event["type"] == kind {
            return event;
        }
    }
}

/// GETs `path` from an HTTP server on loopback; returns status and body.
async fn http_get(port: u16, path: &str) -> (u16, String) {
    http(
        port,
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flower_lists_the_worker_with_its_counts_and_opens_its_page() {
    let (queue, node, worker) = start("flower");
    let caller = celery_pages::caller::Caller::connect(&broker(), &queue)
        .await
        .unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (_flower, _) = celery_background(
        &queue,
        &["flower", "--address=127.0.0.1", &format!("--port={port}")],
    );
    // Flower is up once it answers (bounded retries).
    let mut polls = 0;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        polls += 1;
        assert!(polls < 300, "Flower did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Flower turns task events on, then counts what the worker does.
    let mut polls = 0;
    loop {
        caller
            .call::<i64>(ADD_TASK, &[json!(1), json!(2)], WAIT)
            .await
            .unwrap();
        let _ = caller
            .call::<serde_json::Value>(ADD_TASK, &[json!(1), json!("a")], WAIT)
            .await;
        let (status, body) = http_get(port, "/workers?json=1").await;
        assert_eq!(status, 200, "{body}");
        let dashboard: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ours = dashboard["data"].as_array().and_then(|rows| {
            rows.iter()
                .find(|r| r["hostname"] == node.as_str())
                .cloned()
        });
        // Flower counts the events of each kind it saw from a worker.
        if let Some(row) = ours.filter(|r| {
            r["status"] == true
                && r["task-received"].as_u64() > Some(0)
                && r["task-failed"].as_u64() > Some(0)
        }) {
            assert!(row["task-succeeded"].as_u64() > Some(0), "{row}");
            break;
        }
        polls += 1;
        assert!(
            polls < 30,
            "Flower never showed {node} with its counts: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, body) = http_get(port, &format!("/api/workers?refresh=1&workername={node}")).await;
    assert_eq!(status, 200, "{body}");
    let workers: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(workers[&node]["stats"].is_object(), "{body}");
    assert!(
        workers[&node]["registered"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let (status, page) = http_get(port, &format!("/worker/{node}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&node));
    // The worker page's buttons: pool size, queues, rate and time limits.
    let extra = format!("{queue}.extra");
    for (path, form, said) in [
        (
            format!("/api/worker/pool/grow/{node}?n=2"),
            String::new(),
            "Growing".to_owned(),
        ),
        (
            format!("/api/worker/pool/shrink/{node}?n=1"),
            String::new(),
            "Shrinking".to_owned(),
        ),
        (
            format!("/api/worker/queue/add-consumer/{node}?queue={extra}"),
            String::new(),
            format!("add consumer {extra}"),
        ),
        (
            format!("/api/task/rate-limit/{ADD_TASK}"),
            format!("workername={node}&ratelimit=10/s"),
            "new rate limit set successfully".to_owned(),
        ),
        (
            format!("/api/task/timeout/{ADD_TASK}"),
            format!("workername={node}&hard=5&soft=3"),
            "time limits set successfully".to_owned(),
        ),
    ] {
        let (status, body) = http_post(port, &path, &form).await;
        assert!(
            status == 200 && body.contains(&said),
            "{path}: {status} {body}"
        );
    }
    let (_, body) = http_get(port, &format!("/api/workers?refresh=1&workername={node}")).await;
    let workers: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ours = &workers[&node];
    assert_eq!(
        ours["stats"]["pool"]["max-concurrency"],
        json!(17),
        "{body}"
    );
    assert!(
        ours["registered"]
            .to_string()
            .contains("addTask.add [rate_limit=10/s]"),
        "{body}"
    );
    let queues: Vec<&str> = ours["active_queues"]
        .as_array()
        .map(|queues| queues.iter().filter_map(|q| q["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(queues, [queue.as_str(), extra.as_str()], "{body}");
    caller.close().await;
    worker.stop().await;
    delete_queue(&queue).await;
    delete_queue(&extra).await;
}

/// POSTs `form` to `path` on an HTTP server on loopback; returns status and
/// body.
async fn http_post(port: u16, path: &str, form: &str) -> (u16, String) {
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    http(port, request).await
}

/// Sends one HTTP/1.0 request to a server on loopback; status and body.
async fn http(port: u16, request: String) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut response))
        .await
        .expect("Flower did not answer")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Anyone on the broker can put a command on the `celery.pidbox` fanout:
/// one whose `reply_to` names an exchange that cannot take the reply (one
/// of another type, or none at all) must not blind remote control of the
/// worker. It still answers `ping` afterwards: Python's worker first, then
/// the Rust one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reply_address_does_not_blind_remote_control() {
    let python_queue = unique_queue("pidbox-reply-py");
    let python_side = start_python_worker(&python_queue).await;
    let python_node = format!("py-{python_queue}@{}", celery_pages::message::host_name());
    answers_ping_after_bad_replies(&python_node).await;
    drop(python_side);
    delete_queue(&python_queue).await;

    let (queue, node, worker) = start("pidbox-reply");
    answers_ping_after_bad_replies(&node).await;
    worker.stop().await;
    delete_queue(&queue).await;
}

async fn answers_ping_after_bad_replies(node: &str) {
    use lapin::BasicProperties;
    use lapin::options::{BasicPublishOptions, ExchangeDeleteOptions};

    let node = node.to_owned();
    let broker = broker();
    let pings = || {
        celery_pages::caller::control::broadcast(
            &broker,
            "ping",
            json!({}),
            Some(vec![node.clone()]),
            Some(Duration::from_millis(500)),
        )
    };
    // Bounded wait until the worker answers at all.
    for attempt in 0.. {
        if !pings().await.unwrap().is_empty() {
            break;
        }
        assert!(attempt < 60, "the worker never answered a ping");
    }
    let missing = format!(
        "celery_pages.test.no-such-exchange.{}",
        uuid::Uuid::new_v4().simple()
    );
    let client = RawClient::connect().await;
    for exchange in ["celery.pidbox", missing.as_str()] {
        let command = json!({
            "method": "ping", "arguments": {}, "destination": [node],
            "reply_to": {"exchange": exchange, "routing_key": "nobody"},
        });
        client
            .channel
            .basic_publish(
                "celery.pidbox".into(),
                "".into(),
                BasicPublishOptions::default(),
                command.to_string().as_bytes(),
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await
            .unwrap();
    }
    let mut answered = Vec::new();
    for _ in 0..10 {
        answered = pings().await.unwrap();
        if !answered.is_empty() {
            break;
        }
    }
    assert_eq!(
        answered.len(),
        1,
        "no answer after the bad replies: {answered:?}"
    );
    assert_eq!(answered[0].0, node);
    let _ = client
        .channel
        .exchange_delete(missing.as_str().into(), ExchangeDeleteOptions::default())
        .await;
}
