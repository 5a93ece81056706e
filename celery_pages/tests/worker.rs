//! The Rust worker and caller against the real RabbitMQ: the chapter's
//! calls, poison messages, a worker killed mid-stream, a broken connection.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use celery_pages::caller::Caller;
use celery_pages::{ADD_TASK, Error};
use common::{KillOnDrop, RawClient, TestWorker, broker, delete_queue, ready_count, unique_queue};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_celery_pages");
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_chapters_calls() {
    let queue = unique_queue("chapter");
    let worker = TestWorker::start(&broker(), &queue);
    let caller = Caller::connect(&broker(), &queue).await.unwrap();
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
    assert_eq!(
        caller
            .call::<serde_json::Value>(ADD_TASK, &[json!(4), json!(10)], WAIT)
            .await
            .unwrap(),
        json!(14)
    );
    assert_eq!(
        caller
            .call::<serde_json::Value>(ADD_TASK, &[json!(1.5), json!(2)], WAIT)
            .await
            .unwrap(),
        json!(3.5)
    );
    assert_eq!(
        caller
            .call::<serde_json::Value>(ADD_TASK, &[json!([1]), json!([2])], WAIT)
            .await
            .unwrap(),
        json!([1, 2])
    );
    match caller
        .call::<serde_json::Value>(ADD_TASK, &[json!(4), json!("halaman")], WAIT)
        .await
    {
        Err(Error::TaskFailed { exception, .. }) => {
            assert_eq!(exception.exc_type, "TypeError");
            assert_eq!(
                exception.message,
                "unsupported operand type(s) for +: 'int' and 'str'"
            );
        }
        other => panic!("expected a TypeError, got {other:?}"),
    }
    // Integers of any size, exactly, as Python's.
    let big = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    assert_eq!(
        caller
            .call::<serde_json::Value>(ADD_TASK, &[json!(u64::MAX), json!(1)], WAIT)
            .await
            .unwrap(),
        big("18446744073709551616")
    );
    assert_eq!(
        caller
            .call::<serde_json::Value>(ADD_TASK, &[big("1180591620717411303424"), json!(1)], WAIT)
            .await
            .unwrap()
            .to_string(),
        "1180591620717411303425"
    );
    caller.close().await;
    worker.stop().await;
    delete_queue(&queue).await;
}

#[tokio::test]
async fn the_command_line_caller() {
    let queue = unique_queue("cli");
    let worker = TestWorker::start(&broker(), &queue);
    let cli_queue = queue.clone();
    let run = move |args: &[&str]| {
        let output = Command::new(BIN)
            .arg("add")
            .args(args)
            .args(["--queue", &cli_queue, "--broker", &common::broker_url()])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["Kamu sudah membaca 4", " halaman"])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "Kamu sudah membaca 4 halaman\n");
    let (ok, out, _) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["4", "10"])
    })
    .await
    .unwrap();
    assert!(ok);
    assert_eq!(out, "14\n");
    let (ok, _, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["4", "halaman"])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        err.contains("TypeError: unsupported operand type(s) for +: 'int' and 'str'"),
        "{err}"
    );
    let (ok, out, _) = tokio::task::spawn_blocking(move || run(&["1", "2", "--no-wait"]))
        .await
        .unwrap();
    assert!(ok);
    assert!(uuid::Uuid::parse_str(out.trim()).is_ok(), "{out}");
    worker.stop().await;
    delete_queue(&queue).await;
}

#[test]
fn no_broker_says_where_it_looked_and_how_to_start_one() {
    for args in [&["add", "1", "2"][..], &["worker"][..], &[][..]] {
        let output = Command::new(BIN)
            .args(args)
            .env("AMQP_ADDR", "amqp://guest:secret@127.0.0.1:1/%2f")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // No cause said twice (lapin's error repeats its io error's text).
        assert!(
            stderr.matches("Connection refused").count() <= 1,
            "{args:?}: a cause said twice: {stderr}"
        );
        assert!(
            stderr.contains("cannot reach the AMQP broker at amqp://guest:***@127.0.0.1:1/%2f")
                && stderr.contains("docker compose up -d")
                && !stderr.contains("secret"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_refused_login_an_unknown_vhost_and_a_bad_url_are_told_apart() {
    let url = common::broker_url();
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, host_and_vhost) = rest.rsplit_once('@').unwrap();
    let (host, _) = host_and_vhost.split_once('/').unwrap();
    for (broker_url, expected) in [
        (
            format!("{scheme}://guest:wrong-password@{host}/%2f"),
            "refused the login: check the user name and password",
        ),
        (
            format!("{scheme}://guest:guest@{host}/no-such-vhost"),
            "refused the connection (is the vhost right?",
        ),
        (
            "localhost".to_owned(),
            "is not an AMQP URL: write amqp://USER:PASSWORD@HOST:PORT/VHOST",
        ),
    ] {
        let output = Command::new(BIN)
            .args(["add", "1", "2", "--broker", &broker_url])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{broker_url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error: "), "{broker_url}: {stderr}");
        assert!(stderr.contains(expected), "{broker_url}: {stderr}");
        // One line, no cause said twice, no password.
        assert_eq!(stderr.lines().count(), 1, "{broker_url}: {stderr}");
        assert!(!stderr.contains("cannot reach"), "{broker_url}: {stderr}");
        assert!(!stderr.contains("wrong-password"), "{broker_url}: {stderr}");
    }
}

fn task_properties(headers: Value, reply_to: &str) -> BasicProperties {
    let AMQPValue::FieldTable(table) = celery_pages::message::to_amqp(&headers) else {
        unreachable!()
    };
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(table)
        .with_reply_to(reply_to.into())
}

#[tokio::test]
async fn poison_messages_are_rejected_answered_and_the_worker_keeps_going() {
    let queue = unique_queue("poison");
    let worker = TestWorker::start(&broker(), &queue);
    let mut client = RawClient::connect().await;
    // Declared here too: the worker may not have declared it yet, and a
    // message published to a queue that does not exist is dropped.
    celery_pages::amqp::declare_task_queue(&client.channel, &celery_pages::TaskQueue::from(&queue))
        .await
        .unwrap();
    let reply_to = client.reply_queue.clone();
    let embed = r#"{"callbacks": null, "errbacks": null, "chain": null, "chord": null}"#;
    let good_body = format!("[[4, 10], {{}}, {embed}]");

    // (properties, body, the exception expected in the FAILURE reply)
    let cases: Vec<(BasicProperties, Vec<u8>, &str)> = vec![
        (
            task_properties(json!({"task": ADD_TASK, "id": "bad-json"}), &reply_to),
            b"[[4, 10], {".to_vec(),
            "InvalidTaskError",
        ),
        (
            task_properties(json!({"task": ADD_TASK}), &reply_to)
                .with_correlation_id("no-id".into()),
            good_body.clone().into_bytes(),
            "InvalidTaskError",
        ),
        (
            BasicProperties::default()
                .with_headers(
                    match celery_pages::message::to_amqp(&json!({"task": ADD_TASK, "id": "no-ct"}))
                    {
                        AMQPValue::FieldTable(t) => t,
                        _ => FieldTable::default(),
                    },
                )
                .with_reply_to(reply_to.as_str().into()),
            good_body.clone().into_bytes(),
            "InvalidTaskError",
        ),
        (
            task_properties(json!({"task": ADD_TASK, "id": "bad-shape"}), &reply_to),
            b"{\"args\": [4, 10]}".to_vec(),
            "InvalidTaskError",
        ),
        (
            task_properties(
                json!({"task": "addTask.multiply", "id": "unknown-task"}),
                &reply_to,
            ),
            good_body.clone().into_bytes(),
            "NotRegistered",
        ),
        (
            task_properties(json!({"task": ADD_TASK, "id": "three-args"}), &reply_to),
            format!("[[1, 2, 3], {{}}, {embed}]").into_bytes(),
            "TypeError",
        ),
    ];
    for (properties, body, _) in &cases {
        client.publish(&queue, properties.clone(), body).await;
    }
    let mut failures = std::collections::HashMap::new();
    for _ in &cases {
        let reply = client
            .next_reply(WAIT)
            .await
            .expect("a FAILURE reply for each poison message");
        assert_eq!(reply["status"], "FAILURE", "{reply}");
        failures.insert(
            reply["task_id"].as_str().unwrap().to_owned(),
            reply["result"]["exc_type"].as_str().unwrap().to_owned(),
        );
    }
    for (id, expected) in [
        ("bad-json", "InvalidTaskError"),
        ("no-id", "InvalidTaskError"),
        ("no-ct", "InvalidTaskError"),
        ("bad-shape", "InvalidTaskError"),
        ("unknown-task", "NotRegistered"),
        ("three-args", "TypeError"),
    ] {
        assert_eq!(
            failures.get(id).map(String::as_str),
            Some(expected),
            "{id}: {failures:?}"
        );
    }

    // A message with no `task` header and no reply address: nothing to
    // answer, but it must not stop the worker either.
    client
        .publish(
            &queue,
            task_properties(json!({"id": "x"}), "").with_reply_to("".into()),
            b"[]",
        )
        .await;

    // The worker still answers a good task...
    client
        .publish(
            &queue,
            task_properties(json!({"task": ADD_TASK, "id": "good"}), &reply_to),
            good_body.as_bytes(),
        )
        .await;
    let reply = client.next_reply(WAIT).await.unwrap();
    assert_eq!(
        (reply["task_id"].as_str(), &reply["result"]),
        (Some("good"), &json!(14))
    );

    // ...and none of the poison came back to the queue.
    worker.stop().await;
    assert_eq!(ready_count(&queue).await, 0);
    delete_queue(&queue).await;
}

fn spawn_worker_process(queue: &str, concurrency: u32) -> KillOnDrop {
    KillOnDrop::new(
        common::worker_command(queue)
            .args(["--prefetch", "100"])
            .args(["--concurrency", &concurrency.to_string()])
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_loses_nothing() {
    const TASKS: usize = 3000;
    let queue = unique_queue("kill");
    let caller = Arc::new(Caller::connect(&broker(), &queue).await.unwrap());
    let mut pending = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        pending.push(caller.send(ADD_TASK, &[json!(i), json!(1)]).await.unwrap());
    }
    let first = spawn_worker_process(&queue, 1);
    // Kill it once it is well under way, with tasks still queued.
    let started = Instant::now();
    loop {
        let ready = ready_count(&queue).await as usize;
        if ready < TASKS * 3 / 4 {
            assert!(ready > 0, "the worker finished before it could be killed");
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the worker did not start consuming"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(first);

    let second = spawn_worker_process(&queue, 1);
    for (i, result) in pending.into_iter().enumerate() {
        assert_eq!(result.wait(WAIT).await.unwrap(), json!(i + 1), "task {i}");
    }
    drop(second);
    delete_queue(&queue).await;
}

/// A TCP proxy to RabbitMQ that the test can cut and restore.
struct Proxy {
    addr: String,
    down: Arc<AtomicBool>,
    /// Connections turned away while cut: the worker's reconnect attempts.
    turned_away: Arc<AtomicUsize>,
    links: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let down = Arc::new(AtomicBool::new(false));
        let turned_away = Arc::new(AtomicUsize::new(0));
        let links: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (down2, links2, turned_away2) = (
            Arc::clone(&down),
            Arc::clone(&links),
            Arc::clone(&turned_away),
        );
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if down2.load(Ordering::SeqCst) {
                    turned_away2.fetch_add(1, Ordering::SeqCst);
                    drop(inbound);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links2.lock().unwrap().push(link);
            }
        });
        Proxy {
            addr,
            down,
            turned_away,
            links,
        }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_cut_broker_connection_is_retried_and_consumption_resumes() {
    let queue = unique_queue("proxy");
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let through_proxy = common::broker_url().replace("127.0.0.1:5672", &proxy.addr);
    assert_ne!(
        through_proxy,
        common::broker_url(),
        "the proxy test needs the broker at 127.0.0.1:5672"
    );
    let worker = TestWorker::start(&through_proxy.parse().unwrap(), &queue);
    let caller = Caller::connect(&broker(), &queue).await.unwrap();
    assert_eq!(
        caller
            .call::<serde_json::Value>(ADD_TASK, &[json!(1), json!(2)], WAIT)
            .await
            .unwrap(),
        json!(3)
    );

    proxy.cut();
    let during = caller
        .send(ADD_TASK, &[json!(20), json!(22)])
        .await
        .unwrap();
    // Restore once the worker has tried to reconnect and been turned away.
    let started = Instant::now();
    while proxy.turned_away.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < WAIT,
            "the worker never tried to reconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.restore();
    assert_eq!(during.wait(WAIT).await.unwrap(), json!(42));
    assert_eq!(
        caller
            .call::<serde_json::Value>(ADD_TASK, &[json!(2), json!(2)], WAIT)
            .await
            .unwrap(),
        json!(4)
    );
    // Remote control came back with the connection (bounded retries: the
    // broker drops the old connection's queue in its own time).
    let node = format!("rs.{queue}@test");
    let mut polls = 0;
    loop {
        let answers = celery_pages::caller::control::broadcast(
            &broker(),
            "ping",
            json!({}),
            Some(vec![node.clone()]),
            Some(Duration::from_millis(500)),
        )
        .await
        .unwrap();
        if answers == [(node.clone(), json!({"ok": "pong"}))] {
            break;
        }
        polls += 1;
        assert!(
            polls < 40,
            "no remote control after the reconnect: {answers:?}"
        );
    }

    caller.close().await;
    worker.stop().await;
    delete_queue(&queue).await;
}

/// Collects replies from `client` until `want` distinct task ids have
/// answered or nothing comes for `quiet`; returns how many replies each id
/// got.
async fn collect_replies(
    client: &mut RawClient,
    want: usize,
    quiet: Duration,
    seen: &mut HashMap<String, usize>,
) {
    while seen.len() < want {
        let Some(reply) = client.next_reply(quiet).await else {
            return;
        };
        let id = reply["task_id"].as_str().unwrap().to_owned();
        *seen.entry(id).or_default() += 1;
    }
}

#[tokio::test]
async fn ctrl_c_finishes_the_tasks_in_flight() {
    const TASKS: usize = 2000;
    let queue = unique_queue("sigint");
    let mut client = RawClient::connect().await;
    // Declared as Celery does, before the worker starts.
    Caller::connect(&broker(), &queue)
        .await
        .unwrap()
        .close()
        .await;
    for i in 0..TASKS {
        let id = format!("sigint-{i}");
        let props = task_properties(json!({"task": ADD_TASK, "id": id}), &client.reply_queue);
        client
            .publish(&queue, props, format!("[[{i}, 0], {{}}, {{}}]").as_bytes())
            .await;
    }
    let worker = spawn_worker_process(&queue, 64);
    // Interrupt it once it is answering, with most tasks still queued.
    let mut seen = HashMap::new();
    collect_replies(&mut client, 1, WAIT, &mut seen).await;
    assert_eq!(seen.len(), 1, "the worker never answered");
    let status = Command::new("kill")
        .args(["-INT", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || worker.release().wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    // Every task it answered was acked (none is back in the queue), and
    // every task it did not answer is back in the queue (none was lost).
    collect_replies(&mut client, TASKS, Duration::from_millis(500), &mut seen).await;
    let answered_by_first = seen.len();
    assert!(
        answered_by_first < TASKS,
        "the worker finished before Ctrl-C"
    );
    assert_eq!(
        ready_count(&queue).await as usize,
        TASKS - answered_by_first
    );

    // A new worker answers the rest, and nothing twice.
    let second = spawn_worker_process(&queue, 16);
    collect_replies(&mut client, TASKS, WAIT, &mut seen).await;
    drop(second);
    assert_eq!(seen.len(), TASKS);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_unreadable_properties_is_set_aside_and_the_queue_moves_on() {
    let queue = unique_queue("unreadable");
    let side = celery_pages::amqp::quarantine::side_queue(&queue);
    Caller::connect(&broker(), &queue)
        .await
        .unwrap()
        .close()
        .await;
    let mut client = RawClient::connect().await;
    let host = lapin::uri::AMQPUri::from_str(&common::broker_url())
        .unwrap()
        .authority;
    let published = {
        let (queue, reply_to) = (queue.clone(), client.reply_queue.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(common::python())
                .arg("publish_unreadable.py")
                .arg(format!("{}:{}", host.host, host.port))
                .args([&queue, &reply_to])
                .current_dir(common::python_dir())
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    assert!(published.status.success(), "{published:?}");

    let worker = TestWorker::start(&broker(), &queue);
    // Both good tasks are answered, the one behind the unreadable message too.
    let mut seen = HashMap::new();
    collect_replies(&mut client, 2, WAIT, &mut seen).await;
    assert!(
        seen.contains_key("id-0") && seen.contains_key("id-2"),
        "{seen:?}"
    );
    worker.stop().await;
    // The unreadable one waits in the side queue, byte for byte; nothing is
    // left in the task queue.
    assert_eq!(ready_count(&side).await, 1);
    assert_eq!(ready_count(&queue).await, 0);
    delete_queue(&side).await;
    delete_queue(&queue).await;
}

/// Celery's failover list (`URL;URL;...`): a node that does not answer is
/// passed over for the next, by the worker and by the caller alike;
/// Python's worker first, given the same list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_list_passes_over_a_node_that_does_not_answer() {
    // A port nothing listens on: bound, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let list = format!("amqp://guest:guest@{dead}/%2f;{}", common::broker_url());
    let add_through_the_list = |queue: String, list: String| async move {
        let args = ["add", "4", "10", "--queue", &queue, "--broker", &list];
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let output = tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output())
            .await
            .unwrap()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "14\n");
    };

    let python_queue = unique_queue("failover-py");
    let python_list = list.replace("/%2f", "//").replace("/%2F", "//");
    let python_side =
        common::start_python_worker_with(&python_queue, &[("CELERY_BROKER", &python_list)]).await;
    add_through_the_list(python_queue.clone(), list.clone()).await;
    drop(python_side);
    delete_queue(&python_queue).await;

    let queue = unique_queue("failover");
    let worker = TestWorker::start(&list.parse().unwrap(), &queue);
    add_through_the_list(queue.clone(), list.clone()).await;
    worker.stop().await;
    delete_queue(&queue).await;
}

/// A queue that exists with other arguments (here a quorum queue, as a
/// Celery app with `task_default_queue_type = "quorum"` declares it) is a
/// configuration error: the worker stops with the broker's own reason and
/// what to change, instead of reconnecting for ever. Python's worker
/// first: it exits with "Unrecoverable error: PreconditionFailed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_otherwise_stops_the_worker_with_the_brokers_reason() {
    let queue = unique_queue("quorum");
    let connection = broker().connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
    let python_side = common::python_worker_command(&queue, &[]);
    let output = tokio::task::spawn_blocking(move || {
        let mut guard = KillOnDrop::new({ python_side }.spawn().unwrap());
        for _ in 0..600 {
            if guard.child().try_wait().unwrap().is_some() {
                return guard.release().wait_with_output().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Python worker kept going on a queue it cannot declare");
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("PRECONDITION_FAILED"), "{said}");

    let worker = TestWorker::start(&broker(), &queue);
    let err = worker.outcome(WAIT).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("PRECONDITION_FAILED"), "{text}");
    assert!(text.contains("x-queue-type"), "{text}");
    assert!(text.contains("Not retried"), "{text}");
    let _ = connection.close(200, "test done".into()).await;
    delete_queue(&queue).await;
}

/// `--queue-type quorum` (Celery's `task_default_queue_type = "quorum"`):
/// the worker creates its queue as a quorum queue, consumes it without a
/// channel-wide prefetch (which quorum queues refuse), and serves a caller
/// that declares it the same way; a second worker starts on the queue that
/// now exists. Python's worker (`task_default_queue_type = "quorum"`)
/// first, served by the same caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_is_created_and_served() {
    use celery_pages::{QueueType, TaskQueue};

    let python_queue = unique_queue("quorum-served-py");
    let python_side =
        common::start_python_worker_with(&python_queue, &[("CELERY_QUEUE_TYPE", "quorum")]).await;
    let quorum = TaskQueue {
        kind: QueueType::Quorum,
        ..TaskQueue::from(&python_queue)
    };
    let caller = Caller::connect(&broker(), quorum).await.unwrap();
    let sum = caller
        .call::<serde_json::Value>(ADD_TASK, &[json!(4), json!(10)], WAIT)
        .await
        .unwrap();
    assert_eq!(sum, json!(14));
    caller.close().await;
    drop(python_side);
    delete_queue(&python_queue).await;

    let queue = unique_queue("quorum-served");
    let quorum = TaskQueue {
        kind: QueueType::Quorum,
        ..TaskQueue::from(&queue)
    };
    let start = || {
        let mut config = TestWorker::config(&broker(), &queue);
        config.queue_type = QueueType::Quorum;
        TestWorker::with_config(config)
    };
    let first = start();
    // The caller declares it as a quorum queue too: were it classic, that
    // declaration would be refused.
    let caller = Caller::connect(&broker(), quorum.clone()).await.unwrap();
    let sum = caller
        .call::<serde_json::Value>(ADD_TASK, &[json!(4), json!(10)], WAIT)
        .await
        .unwrap();
    assert_eq!(sum, json!(14));
    first.stop().await;
    let second = start();
    let sum = caller
        .call::<serde_json::Value>(ADD_TASK, &[json!(1), json!(2)], WAIT)
        .await
        .unwrap();
    assert_eq!(sum, json!(3));
    second.stop().await;
    caller.close().await;
    delete_queue(&queue).await;
}
