//! Celery's per-task policies, differentially: one script of calls
//! (`python/policy_calls.py`) from Python's caller against Python's worker,
//! then against the Rust one; the outcomes, the states the caller saw and
//! the task events must be the same.

mod common;

use std::process::Command;

use std::time::Duration;

use celery_pages::message::TaskMessage;
use celery_pages::tasks::{TaskContext, TaskOptions};
use common::{
    EventLog, RawClient, TestWorker, broker, delete_queue, listen_to_events, python, python_script,
    start_python_worker_with, unique_queue,
};
use futures::StreamExt;
use lapin::options::{BasicPublishOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;

/// Runs `policy_calls.py CALL NODE` on `queue`: for each task it sent, its
/// id and the outcome line without it (and `reply` with each remote-control
/// reply it printed).
async fn policy_call(queue: &str, call: &str, node: &str) -> Vec<(String, String)> {
    python_script("policy_calls.py", &[call, node], queue)
        .await
        .iter()
        .map(|line| {
            let (id, outcome) = line.split_once(' ').unwrap();
            (id.to_owned(), outcome.to_owned())
        })
        .collect()
}

/// What one side of a differential test saw: each line's outcome, and
/// the task events that came with it.
type Seen = Vec<(String, Vec<String>)>;

/// Runs `calls` against Python's worker (with `settings`, see
/// `python_worker_command`), then against a Rust worker configured by
/// `configure`, each on a queue of its own; what each side saw.
async fn differential(
    test: &str,
    calls: &[&str],
    settings: &[(&str, &str)],
    configure: impl FnOnce(&mut celery_pages::WorkerConfig, &str),
    with_events: bool,
) -> (Seen, Seen) {
    let python_queue = unique_queue(&format!("{test}-py"));
    let queues = format!("{python_queue},{python_queue}.b");
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|&(key, value)| match (key, value) {
            ("CELERY_QUEUES", "+b") => (key, queues.as_str()),
            other => other,
        })
        .chain([("CELERY_TASK_EVENTS", "1")])
        .collect();
    let python_side = start_python_worker_with(&python_queue, &settings).await;
    let python_node = format!("py-{python_queue}@{}", celery_pages::message::host_name());
    let python = script_with(&python_queue, &python_node, calls, with_events).await;
    drop(python_side);
    for suffix in ["", ".b", ".extra"] {
        delete_queue(&format!("{python_queue}{suffix}")).await;
    }

    let queue = unique_queue(&format!("{test}-rs"));
    let mut config = TestWorker::config(&broker(), &queue);
    config.task_events = true;
    configure(&mut config, &queue);
    let node = config.node.clone();
    let worker = TestWorker::with_config(config);
    let rust = script_with(&queue, &node, calls, with_events).await;
    worker.stop().await;
    for suffix in ["", ".b", ".extra"] {
        delete_queue(&format!("{queue}{suffix}")).await;
    }
    (python, rust)
}

/// Each call's outcome and states, and the task events that came with it
/// (unless `with_events` is off: a task stopped at its hard limit ends
/// without a final event on Python's worker), on the worker named `node`
/// consuming `queue`.
async fn script_with(queue: &str, node: &str, calls: &[&str], with_events: bool) -> Seen {
    let (_connection, events) = listen_to_events().await;
    let mut events = EventLog::new(events);
    let mut seen = Vec::new();
    for call in calls {
        for (id, outcome) in policy_call(queue, call, node).await {
            let events = if with_events
                && !["reply", "registered", "pool", "queues", "prefetch"].contains(&id.as_str())
            {
                events.of_task(node, &id).await
            } else {
                Vec::new()
            };
            seen.push((outcome, events));
        }
    }
    seen
}

/// A Rust worker configured by `configure`, on a queue of its own, and a
/// caller for that queue.
struct RustSide {
    queue: String,
    node: String,
    worker: TestWorker,
    caller: celery_pages::Caller,
}

async fn rust_side(
    test: &str,
    configure: impl FnOnce(&mut celery_pages::WorkerConfig),
) -> RustSide {
    let queue = unique_queue(test);
    let mut config = TestWorker::config(&broker(), &queue);
    configure(&mut config);
    let node = config.node.clone();
    let worker = TestWorker::with_config(config);
    let caller = celery_pages::Caller::connect(&broker(), &queue)
        .await
        .unwrap();
    RustSide {
        queue,
        node,
        worker,
        caller,
    }
}

impl RustSide {
    async fn stop(self) {
        self.caller.close().await;
        self.worker.stop().await;
        delete_queue(&self.queue).await;
    }
}

/// The chapter's tasks and `task`.
fn with_task(task: celery_pages::Task) -> std::sync::Arc<celery_pages::Registry> {
    std::sync::Arc::new(celery_pages::Registry::chapter().register(task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_as_on_pythons_worker() {
    let calls = ["retry", "retries-exhausted"];
    let (expected, got) = differential("retry", &calls, &[], |_, _| {}, true).await;

    assert_eq!(got, expected);
    assert_eq!(got[0].0, "5 ['RETRY', 'RETRY', 'SUCCESS']");
    let attempt = |retries: u32, end: &str| {
        [
            format!("task-received retries={retries}"),
            "task-started".into(),
            end.into(),
        ]
    };
    let events: Vec<String> = [
        attempt(0, "task-retried"),
        attempt(1, "task-retried"),
        attempt(2, "task-succeeded"),
    ]
    .concat();
    assert_eq!(got[0].1, events);
    assert_eq!(
        got[1].0,
        "ValueError: attempt 4 failed ['RETRY', 'RETRY', 'RETRY', 'FAILURE']"
    );
}

/// A retry is the same message again: same id, `reply_to` and correlation
/// id, `retries` one more, an `eta`, and every header kept, also one the
/// worker does not know (a trace's `traceparent`). Seen on a spy queue
/// bound to the task queue's exchange, where the worker sends the retry
/// as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_every_header_and_the_callers_address() {
    let queue = unique_queue("retry-headers");
    let worker = TestWorker::start(&broker(), &queue);
    let client = RawClient::connect().await;
    let channel = &client.channel;
    // The exchange as the worker declares it; the spy, a queue of the
    // test's own, hears what it routes.
    celery_pages::amqp::declare_task_queue(channel, &queue.as_str().into())
        .await
        .unwrap();
    let (spy, mut heard) = celery_pages::amqp::reply_queue(channel, "spy")
        .await
        .unwrap();
    channel
        .queue_bind(
            spy.as_str().into(),
            queue.as_str().into(),
            queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let args = [json!(2), json!(3), json!(1)];
    let (body, properties) = TaskMessage {
        id: "retry-headers-1",
        task: celery_pages::tasks::FLAKY_ADD_TASK,
        args: &args,
        reply_to: Some(&client.reply_queue),
        origin: "test",
        ..TaskMessage::default()
    }
    .encode();
    let mut headers = properties.headers().clone().unwrap();
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    headers.insert("traceparent".into(), AMQPValue::LongString(trace.into()));
    let sentry = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1";
    headers.insert("sentry-trace".into(), AMQPValue::LongString(sentry.into()));
    channel
        .basic_publish(
            queue.as_str().into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            properties.with_headers(headers),
        )
        .await
        .unwrap();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), heard.next())
            .await
            .expect("the spy heard nothing")
            .unwrap()
            .unwrap()
    };
    let first = next().await;
    let retry = next().await;
    let header = |delivery: &lapin::message::Delivery, key: &str| {
        delivery
            .properties
            .headers()
            .as_ref()
            .unwrap()
            .inner()
            .get(key)
            .cloned()
    };
    // The retry is sent from the span the worker ran the task in: the same
    // trace, that span's id (as an instrumented Python worker sends it).
    let Some(AMQPValue::LongString(resent)) = header(&retry, "traceparent") else {
        panic!("no traceparent on the retry");
    };
    let resent = resent.to_string();
    assert_eq!(resent[..36], trace[..36], "{resent}");
    assert_ne!(resent, trace);
    // A header the worker does not know travels on unchanged.
    assert_eq!(
        header(&retry, "sentry-trace"),
        Some(AMQPValue::LongString(sentry.into()))
    );
    assert_eq!(header(&first, "id"), header(&retry, "id"));
    assert!(matches!(
        header(&retry, "retries"),
        Some(AMQPValue::LongInt(1) | AMQPValue::LongLongInt(1))
    ));
    assert!(matches!(
        header(&retry, "eta"),
        Some(AMQPValue::LongString(_))
    ));
    assert_eq!(retry.properties.reply_to(), first.properties.reply_to());
    assert_eq!(
        retry.properties.correlation_id(),
        first.properties.correlation_id()
    );
    assert_eq!(retry.data, first.data);
    worker.stop().await;
    delete_queue(&queue).await;
}

/// The wait before a retry with `retry_backoff`, as Celery computes it
/// (`celery.utils.time.get_exponential_backoff_interval`, without jitter;
/// with jitter, within it).
#[tokio::test]
async fn retry_backoff_waits_as_celerys() {
    let cases: Vec<(u32, u32, u64)> = (1..=3)
        .flat_map(|factor| (0..12).map(move |retries| (factor, retries, 600)))
        .chain([(5, 3, 30), (1, 40, 600)])
        .collect();
    let script = format!(
        "from celery.utils.time import get_exponential_backoff_interval as f\n\
         for factor, retries, maximum in {cases:?}: print(f(factor, retries, maximum))"
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args(["-c", &script])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let python: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    let rust: Vec<f64> = cases
        .iter()
        .map(|&(factor, retries, maximum)| {
            let options = TaskOptions {
                retry_backoff: Some(factor),
                retry_backoff_max: maximum,
                retry_jitter: false,
                ..TaskOptions::default()
            };
            options.countdown(retries, 0)
        })
        .collect();
    assert_eq!(rust, python);
    let jittered = TaskOptions {
        retry_backoff: Some(1),
        ..TaskOptions::default()
    };
    for jitter in [0, 1, 7, u64::MAX] {
        assert!((0.0..=8.0).contains(&jittered.countdown(3, jitter)));
    }
}

/// Time limits from the message (`apply_async(time_limit=...,
/// soft_time_limit=...)`), on a worker of one slot: a hard limit answers
/// `TimeLimitExceeded(1,)` and frees the slot at once (the next task is
/// answered long before the stopped one would have ended); an unhandled
/// soft limit answers `SoftTimeLimitExceeded()`. Python's worker runs
/// prefork, one process (its solo pool has no time limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_limits_stop_tasks_as_on_pythons_worker() {
    let calls = ["hard-limit", "soft-limit"];
    let one_slot = |config: &mut celery_pages::WorkerConfig, _: &str| {
        config.concurrency = 1;
        config.prefetch = 1;
    };
    let settings = [("CELERY_POOL", "prefork")];
    let (expected, got) = differential("limits", &calls, &settings, one_slot, false).await;

    let outcomes = |seen: &[(String, Vec<String>)]| -> Vec<String> {
        seen.iter().map(|(outcome, _)| outcome.clone()).collect()
    };
    assert_eq!(outcomes(&got), outcomes(&expected));
    assert_eq!(
        outcomes(&got),
        [
            "TimeLimitExceeded: TimeLimitExceeded(1,) ['FAILURE']",
            "2 ['SUCCESS']",
            "SoftTimeLimitExceeded: SoftTimeLimitExceeded() ['FAILURE']",
        ]
    );
}

/// A plain (blocking) function past its hard limit: the worker stops
/// waiting for it, answers `TimeLimitExceeded`, and its one slot takes the
/// next task at once, while the function sleeps on in its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_task_past_its_hard_limit_frees_its_slot() {
    fn block(seconds: u64) -> celery_pages::TaskResult<u64> {
        std::thread::sleep(Duration::from_secs(seconds));
        Ok(seconds)
    }
    let side = rust_side("limits-blocking", |config| {
        config.concurrency = 1;
        config.prefetch = 1;
        config.time_limit = Some(1.0);
        config.tasks = with_task(celery_pages::Task::new("test.block", ["seconds"], block));
    })
    .await;
    let caller = &side.caller;
    let blocked = caller.send("test.block", (15,)).await.unwrap();
    let next = caller.send(celery_pages::ADD_TASK, (1, 1)).await.unwrap();
    let err = blocked.wait(Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(
        err.to_string().split_once(" failed: ").map(|(_, why)| why),
        Some("TimeLimitExceeded: TimeLimitExceeded(1,)")
    );
    // Long before the blocked function's 15 s are over.
    assert_eq!(next.wait(Duration::from_secs(8)).await.unwrap(), json!(2));
    side.stop().await;
}

/// A task that handles its soft limit (an async bound task awaiting
/// `soft_limit.reached()`, as a Python task catching
/// `SoftTimeLimitExceeded`) cleans up and returns its own value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_may_handle_its_soft_limit() {
    async fn patient(task: TaskContext, seconds: u64) -> celery_pages::TaskResult<String> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(seconds)) => Ok("done".into()),
            () = task.soft_limit.reached() => Ok("cleaned up".into()),
        }
    }
    let side = rust_side("limits-soft", |config| {
        config.soft_time_limit = Some(1.0);
        config.tasks = with_task(celery_pages::Task::new(
            "test.patient",
            ["seconds"],
            patient,
        ));
    })
    .await;
    let caller = &side.caller;
    let said: String = caller
        .call("test.patient", (60,), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(said, "cleaned up");
    // A task that does not handle it is stopped.
    let err = slow_add_for_a_minute(caller).await;
    assert!(
        err.to_string()
            .ends_with("SoftTimeLimitExceeded: SoftTimeLimitExceeded()"),
        "{err}"
    );
    side.stop().await;
}

/// `slow_add(1, 2, 60)`, which a time limit must stop: the error it ends
/// with.
async fn slow_add_for_a_minute(caller: &celery_pages::caller::Caller) -> celery_pages::Error {
    caller
        .call::<serde_json::Value>(
            celery_pages::tasks::SLOW_ADD_TASK,
            (1, 2, 60),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err()
}

/// Stopping a running task, as `revoke(id, terminate=True)` and `control
/// terminate` do: the caller gets `TaskRevokedError: terminated`, the
/// events say it was terminated and by which signal, and the control
/// replies are Python's (also for a task nobody runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_a_running_task_as_on_pythons_worker() {
    let calls = ["terminate", "control-terminate"];
    let settings = [("CELERY_POOL", "prefork")];
    let (expected, got) = differential("terminate", &calls, &settings, |_, _| {}, true).await;

    assert_eq!(got, expected);
    let terminated = (
        "TaskRevokedError: terminated ['REVOKED']".to_owned(),
        vec![
            "task-received retries=0".to_owned(),
            "task-started".to_owned(),
            "task-revoked terminated=true signum=15".to_owned(),
        ],
    );
    assert_eq!(got[1], terminated);
    assert_eq!(got[0].0, "[{'<node>': {'ok': 'terminate: <id>'}}]");
    assert_eq!(got[2].0, "[{'<node>': {'ok': 'terminate: tasks unknown'}}]");
}

/// `control rate_limit` as Python's worker answers it (unknown task,
/// unreadable limit, set, lifted), `inspect registered` showing the limit,
/// and tasks still served under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_set_and_lifted_as_on_pythons_worker() {
    let calls = ["rate-limit"];
    let (expected, got) = differential("rate", &calls, &[], |_, _| {}, true).await;

    assert_eq!(got, expected);
    let said: Vec<&str> = got.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(
        said[0],
        "rate_limit [{'<node>': {'error': 'unknown task'}}]"
    );
    assert_eq!(
        said[2],
        "rate_limit [{'<node>': {'ok': 'new rate limit set successfully'}}]"
    );
    assert!(
        said[3].contains("'addTask.add [rate_limit=600/m]'"),
        "{said:?}"
    );
    assert_eq!(
        said[6],
        "rate_limit [{'<node>': {'ok': 'rate limit disabled successfully'}}]"
    );
}

/// A task type limited to one an hour: the first task runs, the second
/// waits for its token (the worker holds it, unacked, and serves others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_task_waits_for_its_token() {
    let hourly = celery_pages::Task::new(
        "test.hourly",
        ["x"],
        |x: i64| -> celery_pages::TaskResult<i64> { Ok(x) },
    )
    .with_options(TaskOptions {
        rate_limit: Some("1/h".into()),
        ..TaskOptions::default()
    });
    let side = rust_side("rate-wait", |config| config.tasks = with_task(hourly)).await;
    let caller = &side.caller;
    let first = caller.send("test.hourly", (1,)).await.unwrap();
    let second = caller.send("test.hourly", (2,)).await.unwrap();
    assert_eq!(first.wait(Duration::from_secs(30)).await.unwrap(), json!(1));
    // Other task types go on meanwhile.
    let sum: i64 = caller
        .call(celery_pages::ADD_TASK, (2, 2), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(sum, 4);
    let waited = second.wait(Duration::from_secs(2)).await;
    assert!(
        matches!(waited, Err(celery_pages::Error::Timeout { .. })),
        "the second task ran within its hour: {waited:?}"
    );
    side.stop().await;
}

/// The rest of remote control, as Python's worker (prefork, one process)
/// answers it: `clock`, `conf`, `report`, `query_task`, `memsample`,
/// `memdump`, `objgraph`, `autoscale`, `pool_grow` and `pool_shrink` (and
/// `inspect stats` showing the pool's size change), `time_limit`,
/// `revoke_by_stamped_headers`, `heartbeat`; a task still served after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_control_answers_as_pythons_worker() {
    let calls = ["control"];
    let settings = [("CELERY_POOL", "prefork")];
    let (expected, got) = differential("control", &calls, &settings, |_, _| {}, true).await;

    // The pool's size as `inspect stats` shows it right after: the Rust
    // worker's changes at once (one more, then back); Python's prefork pool
    // grows in the background and shows its old size.
    let size = |seen: &[(String, Vec<String>)]| {
        seen.iter().position(|(line, _)| line.starts_with("size "))
    };
    let (at, python_at) = (size(&got).unwrap(), size(&expected).unwrap());
    assert_eq!(got[at].0, "size 1 0");
    assert_eq!(expected[python_at].0, "size 0 0");
    let others = |seen: &[(String, Vec<String>)]| -> Vec<(String, Vec<String>)> {
        seen.iter()
            .filter(|(line, _)| !line.starts_with("size "))
            .cloned()
            .collect()
    };
    assert_eq!(others(&got), others(&expected));
    let said: Vec<&str> = got.iter().map(|(line, _)| line.as_str()).collect();
    assert!(said.contains(&"heartbeat None"), "{said:?}");
    // The prefetch follows the pool, four messages per slot, on both.
    assert!(said.contains(&"after pool_grow 4"), "{said:?}");
}

/// Several queues, as Celery's worker takes them: `-Q a,b` consumed from
/// the start, `add_consumer` serving one more (`inspect active_queues`
/// shows it) and `cancel_consumer` letting it go, with Python's replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_queues_are_consumed_as_on_pythons_worker() {
    let calls = ["queues"];
    let settings = [("CELERY_QUEUES", "+b")];
    let both = |config: &mut celery_pages::WorkerConfig, queue: &str| {
        config.queues = vec![queue.to_owned(), format!("{queue}.b")];
    };
    let (expected, got) = differential("queues", &calls, &settings, both, true).await;

    assert_eq!(got, expected);
    let said: Vec<&str> = got.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(said[0], "['<queue>', '<queue>.b']");
    assert_eq!(said[1], "3 ['SUCCESS']");
    assert_eq!(said[2], "add_consumer {'ok': 'add consumer <queue>.extra'}");
    assert_eq!(said[3], "['<queue>', '<queue>.b', '<queue>.extra']");
    assert_eq!(said[4], "11 ['SUCCESS']");
    assert_eq!(said[6], "['<queue>', '<queue>.b']");
}

/// A task's own request to run again (`task.retry(...)`, Celery's
/// `self.retry()`): retried while it has retries left, then Celery's
/// `MaxRetriesExceededError` with Python's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_asking_to_retry_runs_as_on_pythons_worker() {
    fn retry_add(task: TaskContext, x: i64, y: i64, retries: u32) -> celery_pages::TaskResult<i64> {
        if task.retries < retries {
            return Err(task.retry(None, None));
        }
        Ok(x + y)
    }
    let calls = ["asked-retry"];
    let settings = [("CELERY_APP", "policy_tasks")];
    let own_task = |config: &mut celery_pages::WorkerConfig, _: &str| {
        let options = TaskOptions {
            max_retries: Some(1),
            default_retry_delay: 1.0,
            ..TaskOptions::default()
        };
        config.tasks = with_task(
            celery_pages::Task::new("policy.retry_add", ["x", "y", "retries"], retry_add)
                .with_options(options),
        );
    };
    let (expected, got) = differential("asked-retry", &calls, &settings, own_task, true).await;

    assert_eq!(got, expected);
    assert_eq!(got[0].0, "3 ['RETRY', 'SUCCESS']");
    assert_eq!(
        got[1].0,
        "MaxRetriesExceededError: Can't retry policy.retry_add[<id>] args:(1, 2, 5) kwargs:{} ['RETRY', 'FAILURE']"
    );
}

/// `control time_limit` sets a task type's limits on a running worker:
/// the next task of that type is stopped at them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_limit_set_by_remote_control_stops_the_next_task() {
    let side = rust_side("limits-control", |_| {}).await;
    let (caller, node) = (&side.caller, side.node.clone());
    // The worker is up once it answers a task.
    let sum: i64 = caller
        .call(celery_pages::ADD_TASK, (1, 1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(sum, 2);
    let arguments =
        json!({"task_name": celery_pages::tasks::SLOW_ADD_TASK, "hard": 1, "soft": null});
    let replies = celery_pages::caller::control::broadcast(
        &broker(),
        "time_limit",
        arguments,
        Some(vec![node.clone()]),
        Some(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(
        replies,
        [(node, json!({"ok": "time limits set successfully"}))]
    );
    let err = slow_add_for_a_minute(caller).await;
    assert!(
        err.to_string()
            .ends_with("TimeLimitExceeded: TimeLimitExceeded(1,)"),
        "{err}"
    );
    side.stop().await;
}

/// A rate limit set by remote control on a worker that had none: the next
/// tasks of that type wait for their tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_set_by_remote_control_holds_the_next_task() {
    let side = rust_side("rate-control", |_| {}).await;
    let caller = &side.caller;
    let arguments = json!({"task_name": celery_pages::ADD_TASK, "rate_limit": "1/h"});
    let replies = celery_pages::caller::control::broadcast(
        &broker(),
        "rate_limit",
        arguments,
        Some(vec![side.node.clone()]),
        Some(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(
        replies[0].1,
        json!({"ok": "new rate limit set successfully"})
    );
    let first = caller.send(celery_pages::ADD_TASK, (1, 1)).await.unwrap();
    let second = caller.send(celery_pages::ADD_TASK, (2, 2)).await.unwrap();
    assert_eq!(first.wait(Duration::from_secs(30)).await.unwrap(), json!(2));
    let waited = second.wait(Duration::from_secs(2)).await;
    assert!(
        matches!(waited, Err(celery_pages::Error::Timeout { .. })),
        "the second add ran within its hour: {waited:?}"
    );
    side.stop().await;
}
