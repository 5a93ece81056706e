//! What the Celery tests share: the broker, unique queues, Python with
//! Celery, and a raw AMQP client to send what no well-behaved caller would.

#![allow(dead_code)] // each test file uses its own part of this module

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer};

/// The broker the tests use: `AMQP_ADDR`, or the local RabbitMQ.
pub fn broker() -> String {
    std::env::var(celery_pages::BROKER_ENV).unwrap_or_else(|_| celery_pages::DEFAULT_BROKER.into())
}

/// A queue name of this test's own, so tests running at once never share one.
pub fn unique_queue(test: &str) -> String {
    format!("celery_pages.test.{test}.{}", uuid::Uuid::new_v4().simple())
}

/// Deletes a test's task queue and its exchange.
pub async fn delete_queue(queue: &str) {
    let connection = celery_pages::connect(&broker()).await.unwrap();
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
    let connection = celery_pages::connect(&broker()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "test done".into()).await;
    declared.message_count()
}

/// Python with Celery: `CELERY_PYTHON`, else the workspace's `.venv` (made by
/// `.ci/run`), else `python3`. A Python without Celery fails the test.
pub fn python() -> PathBuf {
    let python = std::env::var_os("CELERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        });
    let check = Command::new(&python)
        .args(["-c", "import celery"])
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", python.display()));
    assert!(
        check.status.success(),
        "{} cannot import celery: run .ci/run, or `python3 -m venv .venv && .venv/bin/pip install 'celery>=5.3,<6'`",
        python.display()
    );
    python
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
fn python_broker() -> String {
    broker().replace("/%2f", "//").replace("/%2F", "//")
}

/// Starts a Python Celery worker (solo pool) on `queue` and waits until it
/// is ready.
pub fn python_worker(queue: &str) -> Child {
    let mut child = Command::new(python())
        .args([
            "-m",
            "celery",
            "-A",
            "addTask",
            "worker",
            "-P",
            "solo",
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
        ])
        .current_dir(python_dir())
        .env("CELERY_QUEUE", queue)
        .env("CELERY_BROKER", python_broker())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(" ready.") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the Python Celery worker did not get ready within 60 s");
    child
}

/// A Rust worker running in the test process.
pub struct TestWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<celery_pages::Result<()>>,
}

impl TestWorker {
    pub fn start(broker: &str, queue: &str) -> Self {
        let mut config = celery_pages::worker::WorkerConfig::new(broker);
        config.queue = queue.to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(celery_pages::worker::run(config, async {
            let _ = stopped.await;
        }));
        TestWorker { stop, task }
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
        let connection = celery_pages::connect(&broker()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let (reply_queue, replies) = celery_pages::reply_queue(&channel, "raw-test-client")
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

    /// The next reply's body as JSON, or `None` if none comes within `wait`.
    pub async fn next_reply(&mut self, wait: Duration) -> Option<serde_json::Value> {
        let delivery = tokio::time::timeout(wait, self.replies.next())
            .await
            .ok()??
            .ok()?;
        Some(serde_json::from_slice(&delivery.data).unwrap())
    }
}
