//! One trace across Python and Rust hops: Python's caller and worker
//! instrumented with OpenTelemetry's Celery instrumentation (the pinned
//! `opentelemetry-instrumentation-celery`, spans written by
//! `tests/python/otel_setup.py`), the Rust worker and caller between them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use celery_pages::message::trace::TraceContext;
use common::{
    TestWorker, broker, delete_queue, python_script, python_script_with, start_python_worker_with,
    unique_queue,
};
use serde_json::Value;
use std::process::Stdio;
use test_support::child::{KillOnDrop, line_with, lines_of};

/// The spans a Python peer wrote to `file` so far.
fn spans(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Waits (bounded) for the span named `name` about task `task_id` (any
/// task, without one) in `file`, as a Python peer or the Rust worker wrote
/// it: a worker writes its run span when the task ends, about when the
/// caller gets its result.
async fn span_of(file: &Path, name: &str, task_id: Option<&str>) -> Value {
    let started = Instant::now();
    loop {
        let found = spans(file).into_iter().find(|span| {
            span["name"] == name
                && task_id.is_none_or(|id| span["attributes"]["messaging.message.id"] == id)
        });
        if let Some(span) = found {
            return span;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {name} span for task {task_id:?} in {}: {:#?}",
            file.display(),
            spans(file)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `python trace_calls.py ARGS` as an instrumented caller writing its spans
/// to `file`; the lines it printed.
async fn traced_caller(args: &[&str], queue: &str, file: &Path) -> Vec<String> {
    let file = file.display().to_string();
    python_script_with(
        "trace_calls.py",
        args,
        queue,
        &[("CELERY_OTEL_FILE", &file)],
    )
    .await
}

/// An instrumented Python worker on `queue`, writing its spans to `file`.
async fn traced_python_worker(queue: &str, file: &Path) -> test_support::child::KillOnDrop {
    let file = file.display().to_string();
    start_python_worker_with(queue, &[("CELERY_OTEL_FILE", &file)]).await
}

/// The Rust worker as its binary runs it, on `queue`, exporting its spans
/// to `file` (`--trace FILE`); ready when it says so. Its log lines are
/// read for as long as the guard lives (a full pipe would stall it).
async fn traced_rust_worker(
    queue: &str,
    file: &Path,
) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
    let mut command = common::worker_command(queue);
    command
        .arg("--trace")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut worker = KillOnDrop::new(command.spawn().unwrap());
        let lines = lines_of(worker.child().stderr.take().unwrap());
        line_with(&lines, &["worker ready"]);
        (worker, lines)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_through_the_rust_worker_stays_in_the_callers_trace() {
    let (pyq, rsq) = (unique_queue("trace-py"), unique_queue("trace-rs"));
    let dir = tempfile::tempdir().unwrap();
    let (caller_file, worker_file) = (dir.path().join("caller"), dir.path().join("worker"));
    let rust_file = dir.path().join("rust");
    let rust = traced_rust_worker(&rsq, &rust_file).await;
    let python_worker = traced_python_worker(&pyq, &worker_file).await;

    // add(4, 10) on Python, add(6) on Rust, add(1) on Python.
    let printed = traced_caller(&["chain", &pyq, &rsq], &pyq, &caller_file).await;
    assert_eq!(printed[0], "21");
    let ids: Vec<&str> = printed[1].split(' ').collect();
    let first = span_of(&worker_file, "run/addTask.add", Some(ids[0])).await;
    let third = span_of(&worker_file, "run/addTask.add", Some(ids[2])).await;
    let caller = spans(&caller_file);
    let sent = caller
        .iter()
        .find(|span| span["name"] == "apply_async/addTask.add")
        .expect("the caller's publish span");

    // Every Python span, the caller's and the worker's, is in one trace.
    let python_spans: Vec<Value> = caller.iter().cloned().chain(spans(&worker_file)).collect();
    for span in &python_spans {
        assert_eq!(span["trace_id"], sent["trace_id"], "{span}");
    }
    assert_eq!(first["parent_id"], sent["span_id"]);
    // The third step's parent is the span the Rust worker ran the second
    // step in (exported by it), whose parent is the Python worker's publish
    // of that step.
    let python_ids: Vec<&Value> = python_spans.iter().map(|span| &span["span_id"]).collect();
    assert!(!python_ids.contains(&&third["parent_id"]), "{third}");
    let rust_span = span_of(&rust_file, "run/addTask.add", Some(ids[1])).await;
    assert_eq!(rust_span["span_id"], third["parent_id"], "{rust_span}");
    assert_eq!(rust_span["trace_id"], sent["trace_id"]);
    let second_sent = span_of(&worker_file, "apply_async/addTask.add", Some(ids[1])).await;
    assert_eq!(
        rust_span["parent_id"], second_sent["span_id"],
        "{rust_span}"
    );

    drop(python_worker);
    drop(rust);
    delete_queue(&pyq).await;
    delete_queue(&rsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_and_a_link_callback_on_the_rust_worker_keep_the_trace() {
    let (pyq, rsq) = (unique_queue("trace-py"), unique_queue("trace-rs"));
    let dir = tempfile::tempdir().unwrap();
    let (caller_file, worker_file) = (dir.path().join("caller"), dir.path().join("worker"));
    let rust = TestWorker::start(&broker(), &rsq);
    let python_worker = traced_python_worker(&pyq, &worker_file).await;

    // flaky_add fails once on the Rust worker, is retried there, then its
    // link callback add(5) runs on Python's.
    let link_id = uuid::Uuid::new_v4().to_string();
    let printed = traced_caller(&["retry_link", &pyq, &rsq, &link_id], &pyq, &caller_file).await;
    assert_eq!(printed, ["3"]);
    let callback = span_of(&worker_file, "run/addTask.add", Some(&link_id)).await;
    let sent = spans(&caller_file)
        .into_iter()
        .find(|span| span["name"] == "apply_async/addTask.flaky_add")
        .expect("the caller's publish span");
    assert_eq!(callback["trace_id"], sent["trace_id"]);
    assert_ne!(
        callback["parent_id"], sent["span_id"],
        "sent by the Rust worker"
    );

    drop(python_worker);
    rust.stop().await;
    delete_queue(&pyq).await;
    delete_queue(&rsq).await;
}

/// The Rust caller continues the trace it runs in (`TRACEPARENT`) and
/// writes it on its message: Python's worker runs the task in that trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_caller_continues_the_trace_it_runs_in() {
    let queue = unique_queue("trace-caller");
    let dir = tempfile::tempdir().unwrap();
    let worker_file = dir.path().join("worker");
    let python_worker = traced_python_worker(&queue, &worker_file).await;

    let outer = TraceContext::root();
    let mut command = Command::new(env!("CARGO_BIN_EXE_celery_pages"));
    command
        .args(["add", "4", "10", "--queue", &queue, "--broker"])
        .arg(common::broker_url())
        .env(
            celery_pages::message::trace::TRACEPARENT_ENV,
            outer.traceparent(),
        );
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "14");
    let span = span_of(&worker_file, "run/addTask.add", None).await;
    assert_eq!(span["trace_id"], format!("{:032x}", outer.trace_id));
    assert_ne!(
        span["parent_id"],
        format!("{:016x}", outer.span_id),
        "a span of the caller's own"
    );
    drop(python_worker);
    delete_queue(&queue).await;
}

/// What a stand-in OpenTelemetry collector received: each request's
/// first line, content type and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A stand-in collector on a free port: answers every OTLP/HTTP request
/// with 200 and keeps what it got. Its thread ends with the test process.
fn collector() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = Received::default();
    let keep = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            loop {
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    break;
                }
                let (mut length, mut content_type) = (0, String::new());
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if let Some(value) = lower.strip_prefix("content-type:") {
                        content_type = value.trim().to_owned();
                    }
                }
                let mut body = vec![0; length.min(1 << 20)];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                keep.lock()
                    .unwrap()
                    .push((first.trim().to_owned(), content_type, body));
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        }
    });
    (endpoint, received)
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the caller's span goes to the
/// collector over OTLP/HTTP (protobuf), flushed before the process ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_to_the_collector_otel_exporter_otlp_endpoint_names() {
    let queue = unique_queue("trace-otlp");
    let worker = TestWorker::start(&broker(), &queue);
    let (endpoint, received) = collector();
    let mut command = Command::new(env!("CARGO_BIN_EXE_celery_pages"));
    command
        .args(["add", "4", "10", "--queue", &queue, "--broker"])
        .arg(common::broker_url())
        .env(celery_pages::telemetry::OTLP_ENDPOINT_ENV, &endpoint);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "14");
    let received = received.lock().unwrap().clone();
    let exported = received
        .iter()
        .find(|(first, _, _)| first.starts_with("POST /v1/traces"))
        .unwrap_or_else(|| panic!("nothing exported: {received:?}"));
    assert_eq!(exported.1, "application/x-protobuf");
    let name = b"apply_async/addTask.add";
    assert!(
        exported.2.windows(name.len()).any(|window| window == name),
        "the span's name is in the export"
    );
    worker.stop().await;
    delete_queue(&queue).await;
}

/// Headers the worker does not know travel on as Python's worker passes
/// them: a chain's next step, sent by either worker, carries the same
/// headers beyond Celery's own (none: Celery builds the step from its
/// signature).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chains_next_step_carries_the_headers_pythons_worker_gives_it() {
    let next_step_headers = async |first: &str, second: &str| {
        python_script("header_calls.py", &[first, second], first).await
    };
    let (py1, py2) = (unique_queue("headers-py"), unique_queue("headers-py-next"));
    let python = {
        let _worker = common::start_python_worker(&py1).await;
        next_step_headers(&py1, &py2).await
    };
    let (rs1, rs2) = (unique_queue("headers-rs"), unique_queue("headers-rs-next"));
    let rust = {
        let worker = TestWorker::start(&broker(), &rs1);
        let headers = next_step_headers(&rs1, &rs2).await;
        worker.stop().await;
        headers
    };
    assert_eq!(rust, python);
    for queue in [py1, rs1] {
        delete_queue(&queue).await;
    }
}
