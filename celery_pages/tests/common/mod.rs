//! What the Celery tests share: the broker, unique queues, Python with
//! Celery, and a raw AMQP client to send what no well-behaved caller would.

#![allow(dead_code)] // each test file uses its own part of this module

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Channel, Connection, Consumer};
pub use test_support::child::KillOnDrop;

/// The broker the tests use: `AMQP_ADDR`, or the local RabbitMQ. A test
/// that finds no broker fails at once with one line saying so.
pub fn broker() -> celery_pages::Broker {
    broker_url().parse().unwrap()
}

/// [`broker`]'s URL, for a command line or a Python peer.
pub fn broker_url() -> String {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let url = std::env::var(celery_pages::BROKER_ENV)
        .unwrap_or_else(|_| celery_pages::DEFAULT_BROKER.into());
    let reachable = CHECKED.get_or_init(|| {
        let parsed: lapin::uri::AMQPUri = url.parse()?;
        let addr = format!("{}:{}", parsed.authority.host, parsed.authority.port);
        std::net::TcpStream::connect(&addr)
            .map(drop)
            .map_err(|err| {
                format!(
                    "no AMQP broker at {addr} ({err}): start RabbitMQ (`rabbitmq-server -detached`) \
                     or point {} at one",
                    celery_pages::BROKER_ENV
                )
            })
    });
    if let Err(err) = reachable {
        panic!("{err}");
    }
    url
}

/// A queue name of this test's own, so tests running at once never share one.
/// Every broker test starts here, so it also checks the broker is there.
pub fn unique_queue(test: &str) -> String {
    broker_url();
    format!("celery_pages.test.{test}.{}", uuid::Uuid::new_v4().simple())
}

/// Deletes a test's task queue and its exchange.
pub async fn delete_queue(queue: &str) {
    let connection = broker().connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let _ = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(
            queue.into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await;
    let _ = connection.close(200, "test done".into()).await;
}

/// How many messages wait in `queue`, not counting the unacknowledged ones.
pub async fn ready_count(queue: &str) -> u32 {
    let connection = broker().connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let (waiting, _) = celery_pages::amqp::queue_depth(&channel, queue)
        .await
        .unwrap();
    let _ = connection.close(200, "test done".into()).await;
    waiting
}

/// Python with the pinned Celery, from the workspace's test environment
/// (created on first use).
pub fn python() -> PathBuf {
    test_support::python::python()
}

pub fn python_dir() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python")
}

/// Runs the chapter's caller (`addTask_main.py CALL`) on `queue`.
pub fn python_caller(queue: &str, call: &str) -> std::process::Output {
    Command::new(python())
        .arg("addTask_main.py")
        .arg(call)
        .current_dir(python_dir())
        .env("CELERY_QUEUE", queue)
        .env("CELERY_BROKER", python_broker())
        .output()
        .unwrap()
}

/// The broker URL in kombu's spelling (`//` for the default vhost).
pub fn python_broker() -> String {
    broker_url().replace("/%2f", "//").replace("/%2F", "//")
}

/// Starts a Python Celery worker (solo pool) on `queue` and waits until it
/// is ready. It is killed when the guard is dropped.
pub fn python_worker(queue: &str) -> KillOnDrop {
    python_worker_with(queue, &[])
}

/// [`python_worker`] with more of `addTask.py`'s settings in its
/// environment (`CELERY_QUEUE_TYPE`, `CELERY_EXCHANGE_TYPE`,
/// `CELERY_BROKER`).
pub fn python_worker_with(queue: &str, settings: &[(&str, &str)]) -> KillOnDrop {
    let mut child = KillOnDrop::new(python_worker_command(queue, settings).spawn().unwrap());
    let stderr = child.child().stderr.take().unwrap();
    // A test that must explain a failure keeps the whole log in a file.
    let mut log_copy = settings
        .iter()
        .find(|(key, _)| *key == LOG_COPY)
        .map(|(_, path)| std::fs::File::create(path).unwrap());
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(copy) = log_copy.as_mut() {
                let _ = writeln!(copy, "{line}");
            }
            let _ = lines_tx.send(line);
        }
    });
    // Ready once it says so; if it exits first, say what it printed.
    let mut said = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(" ready.") => break,
            Ok(line) => said.push(line),
            Err(_) => panic!(
                "the Python Celery worker did not get ready within 60 s:\n{}",
                said.join("\n")
            ),
        }
    }
    child
}

/// A Rust worker running in the test process.
pub struct TestWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<celery_pages::Result<()>>,
}

impl TestWorker {
    pub fn start(broker: &celery_pages::Broker, queue: &str) -> Self {
        Self::with_config(Self::config(broker, queue))
    }

    /// The configuration [`TestWorker::start`] runs with, to change before
    /// [`TestWorker::with_config`].
    pub fn config(
        broker: &celery_pages::Broker,
        queue: &str,
    ) -> celery_pages::worker::config::WorkerConfig {
        let mut config = celery_pages::worker::config::WorkerConfig::new(broker.clone());
        config.queue = queue.to_owned();
        // A node name of its own: tests run at once on one broker.
        config.node = format!("rs.{queue}@test");
        config
    }

    pub fn with_config(config: celery_pages::worker::config::WorkerConfig) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(celery_pages::worker::run(config, async {
            let _ = stopped.await;
        }));
        TestWorker { stop, task }
    }

    /// Waits (bounded) for it to stop by itself (a remote `shutdown`) and
    /// checks it ended cleanly.
    pub async fn stopped_by_itself(self, wait: Duration) {
        self.outcome(wait).await.unwrap();
    }

    /// Waits (bounded) for it to end by itself and says how it ended.
    pub async fn outcome(self, wait: Duration) -> celery_pages::Result<()> {
        tokio::time::timeout(wait, self.task)
            .await
            .expect("the worker did not stop")
            .unwrap()
    }

    /// Stops it as Ctrl-C would and checks it ended cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A bare AMQP client with a reply queue, for messages Celery would never send.
pub struct RawClient {
    pub connection: Connection,
    pub channel: Channel,
    pub reply_queue: String,
    replies: Consumer,
}

impl RawClient {
    pub async fn connect() -> Self {
        let connection = broker().connect().await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let (reply_queue, replies) = celery_pages::amqp::reply_queue(&channel, "raw-test-client")
            .await
            .unwrap();
        RawClient {
            connection,
            channel,
            reply_queue,
            replies,
        }
    }

    pub async fn publish(&self, queue: &str, properties: BasicProperties, body: &[u8]) {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap();
    }

    /// Sends task `message` to `queue`, its result to this client's reply
    /// queue.
    pub async fn send_task(&self, queue: &str, message: celery_pages::message::TaskMessage<'_>) {
        let (body, properties) = celery_pages::message::TaskMessage {
            reply_to: Some(&self.reply_queue),
            origin: "test",
            ..message
        }
        .encode();
        self.publish(queue, properties, &body).await;
    }

    /// The next reply's body as JSON, or `None` if none comes within `wait`.
    pub async fn next_reply(&mut self, wait: Duration) -> Option<serde_json::Value> {
        let delivery = tokio::time::timeout(wait, self.replies.next())
            .await
            .ok()??
            .ok()?;
        Some(serde_json::from_slice(&delivery.data).unwrap())
    }
}

/// Runs `celery_pages ARGS --broker <the test broker>` off the async
/// runtime's threads; returns what it printed and its status.
pub async fn cli(args: &[&str]) -> std::process::Output {
    let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    full.extend(["--broker".into(), broker_url()]);
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_celery_pages"))
            .args(&full)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// [`cli`] with `--queue QUEUE`.
pub async fn cli_on_queue(args: &[&str], queue: &str) -> std::process::Output {
    let mut with_queue = args.to_vec();
    with_queue.extend(["--queue", queue]);
    cli(&with_queue).await
}

/// `celery_pages worker --queue QUEUE -n <a node name of its own>` on the
/// test broker (`AMQP_ADDR`; a `--broker` added after wins); callers add
/// their own options, log level and pipes.
pub fn worker_command(queue: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_celery_pages"));
    command
        .args(["worker", "--queue", queue, "-n", &node_name(queue)])
        .env("AMQP_ADDR", broker_url());
    command
}

/// A node name no other worker in this test run has: each worker process
/// a test starts gets its own, so a killed one's name is never in the way.
pub fn node_name(queue: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("rs{n}.{queue}@%h")
}

/// The pseudo-setting naming a file [`python_worker_with`] copies the
/// worker's whole log to.
pub const LOG_COPY: &str = "CELERY_LOG_COPY";

/// The command [`python_worker_with`] runs: its log on stderr (piped).
/// The app is `addTask`, or the module a `CELERY_APP` setting names; the
/// pool is solo, or one prefork process with `CELERY_POOL=prefork` (time
/// limits need it); it consumes `queue`, or the queues `CELERY_QUEUES`
/// lists (`a,b`).
pub fn python_worker_command(queue: &str, settings: &[(&str, &str)]) -> Command {
    let setting = |name: &str, default: &str| {
        settings
            .iter()
            .find(|(key, _)| *key == name)
            .map_or(default.to_owned(), |(_, value)| (*value).to_owned())
    };
    let (app, pool) = (
        setting("CELERY_APP", "addTask"),
        setting("CELERY_POOL", "solo"),
    );
    let queues = setting("CELERY_QUEUES", queue);
    let mut command = Command::new(python());
    command
        .args([
            "-m",
            "celery",
            "-A",
            &app,
            "worker",
            "-P",
            &pool,
            "-c",
            "1",
            "-Q",
            &queues,
            // A node name of its own: two workers named alike (the default,
            // celery@<host>) fight over one pidbox queue, and one dies.
            "-n",
            &format!("py-{queue}@%h"),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
        ])
        .current_dir(python_dir())
        .env("CELERY_QUEUE", queue)
        .env("CELERY_BROKER", python_broker())
        .envs(settings.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// [`python_worker`] off the async runtime's threads.
pub async fn start_python_worker(queue: &str) -> KillOnDrop {
    start_python_worker_with(queue, &[]).await
}

/// [`python_worker_with`] off the async runtime's threads.
pub async fn start_python_worker_with(queue: &str, settings: &[(&str, &str)]) -> KillOnDrop {
    let queue = queue.to_owned();
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        python_worker_with(&queue, &settings)
    })
    .await
    .unwrap()
}

/// A queue of the test's own bound to every worker event, and the
/// connection it lives on.
pub async fn listen_to_events() -> (lapin::Connection, lapin::Consumer) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
    use lapin::types::FieldTable;
    let connection = broker().connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            celery_pages::worker::events::EXCHANGE.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (queue, consumer) = celery_pages::amqp::reply_queue(&channel, "test-events")
        .await
        .unwrap();
    for events in ["worker.#", "task.#"] {
        channel
            .queue_bind(
                queue.as_str().into(),
                celery_pages::worker::events::EXCHANGE.into(),
                events.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    (connection, consumer)
}

/// The task events heard so far, kept: one message may carry the events
/// of several tasks (`task.multi`).
pub struct EventLog {
    events: Consumer,
    heard: Vec<serde_json::Value>,
}

impl EventLog {
    pub fn new(events: Consumer) -> Self {
        EventLog {
            events,
            heard: Vec::new(),
        }
    }

    /// The types of the task events `node` sends about task `id`, in
    /// order, up to and with the first that ends it (succeeded, failed,
    /// revoked); `task-received` with its `retries`, `task-revoked` with
    /// how and by which signal.
    pub async fn of_task(&mut self, node: &str, id: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut seen = Vec::new();
            for event in self
                .heard
                .iter()
                .filter(|e| e["hostname"] == node && e["uuid"] == id)
            {
                let kind = event["type"].as_str().unwrap_or_default().to_owned();
                let last = matches!(
                    kind.as_str(),
                    "task-succeeded" | "task-failed" | "task-revoked"
                );
                seen.push(match kind.as_str() {
                    "task-received" => format!("{kind} retries={}", event["retries"]),
                    "task-revoked" => format!(
                        "{kind} terminated={} signum={}",
                        event["terminated"], event["signum"]
                    ),
                    _ => kind,
                });
                if last {
                    return seen;
                }
            }
            let delivery = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("only {seen:?} about {id} from {node}"))
                .unwrap()
                .unwrap();
            match serde_json::from_slice(&delivery.data).unwrap() {
                serde_json::Value::Array(batch) => self.heard.extend(batch),
                event => self.heard.push(event),
            }
        }
    }
}

/// Runs `python <script> <args>` from `tests/python/` against `queue`, off
/// the async runtime's threads; the lines it printed (it must succeed).
pub async fn python_script(script: &str, args: &[&str], queue: &str) -> Vec<String> {
    python_script_with(script, args, queue, &[]).await
}

/// [`python_script`] with more of `addTask.py`'s settings in its
/// environment (`CELERY_BROKER` overrides the test broker).
pub async fn python_script_with(
    script: &str,
    args: &[&str],
    queue: &str,
    settings: &[(&str, &str)],
) -> Vec<String> {
    let mut command = Command::new(python());
    command
        .arg(script)
        .args(args)
        .current_dir(python_dir())
        .env("CELERY_QUEUE", queue)
        .env("CELERY_BROKER", python_broker())
        .envs(settings.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    said.lines().map(str::to_owned).collect()
}
