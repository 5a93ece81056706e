//! Celery over amqps, against a RabbitMQ node of the test's own that
//! speaks TLS and requires client certificates (`verify_peer`,
//! `fail_if_no_peer_cert`), with certificates made for the test: Python's
//! caller served by the Rust worker, the Rust caller served by Python's
//! worker, `inspect stats` saying so as Python's worker does, and one clear
//! line for each way it can fail.

mod common;

use std::process::{Command, Output};

use common::{TestWorker, python_script_with, python_worker_with};
use test_support::rabbitmq::RabbitNode;
use test_support::tls::TestCerts;

/// RabbitMQ's TLS parameters for a URL: `ca` trusted, the client
/// certificate shown if `client`.
fn parameters(certs: &TestCerts, ca: &str, client: bool) -> String {
    let mut query = format!("cacertfile={}", certs.file(ca));
    if client {
        query += &format!(
            "&certfile={}&keyfile={}",
            certs.file("client.pem"),
            certs.file("client.key")
        );
    }
    query
}

/// addTask.py's settings for a Python peer on the node's TLS port.
fn python_settings(node: &RabbitNode, certs: &TestCerts) -> Vec<(&'static str, String)> {
    let port = node.tls_port.unwrap();
    vec![
        (
            "CELERY_BROKER",
            format!("amqps://guest:guest@localhost:{port}//"),
        ),
        ("CELERY_SSL_CA", certs.file("ca.pem")),
        ("CELERY_SSL_CERT", certs.file("client.pem")),
        ("CELERY_SSL_KEY", certs.file("client.key")),
    ]
}

/// What `python tls_calls.py ssl NODE` printed: a `broker.ssl` as JSON.
fn ssl_of(lines: &[String]) -> serde_json::Value {
    serde_json::from_str(&lines.join("\n")).unwrap_or_else(|err| panic!("{err}: {lines:?}"))
}

/// `celery_pages ARGS --broker BROKER`, off the runtime.
async fn rust_cli(args: &[&str], broker: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_celery_pages"));
    command.args(args).args(["--broker", broker]);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn amqps_with_client_certificates_both_ways_and_each_refusal_in_one_line() {
    let certs = TestCerts::make();
    let node = tokio::task::block_in_place(|| RabbitNode::start_tls(&certs));
    let good = node.tls_url(&parameters(&certs, "ca.pem", true));
    let python_side = python_settings(&node, &certs);
    let python_side: Vec<(&str, &str)> =
        python_side.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Python's caller, over TLS, served by the Rust worker.
    let queue = "tls_interop";
    let broker: celery_pages::Broker = good.parse().unwrap();
    assert!(broker.is_tls());
    let mut config = TestWorker::config(&broker, queue);
    config.node = "rs.tls@test".into();
    let worker = TestWorker::with_config(config);
    let answered = python_script_with("tls_calls.py", &["add"], queue, &python_side).await;
    assert_eq!(answered, ["14"]);
    // `inspect stats` shows the connection as TLS, with its settings.
    let rust_ssl = ssl_of(
        &python_script_with("tls_calls.py", &["ssl", "rs.tls@test"], queue, &python_side).await,
    );
    worker.stop().await;

    // The Rust caller, over TLS, served by Python's worker.
    let python_queue = "tls_interop_py";
    let python_worker =
        tokio::task::block_in_place(|| python_worker_with(python_queue, &python_side));
    let added = rust_cli(&["add", "4", "10", "--queue", python_queue], &good).await;
    assert!(added.status.success(), "{}", said(&added));
    assert_eq!(String::from_utf8_lossy(&added.stdout).trim(), "14");
    // A failover list may mix plain and TLS nodes: a dead plain one first.
    let dead = format!("amqp://guest:guest@127.0.0.1:{}//", closed_port());
    let mixed = rust_cli(
        &["add", "1", "2", "--queue", python_queue],
        &format!("{dead};{good}"),
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&mixed.stdout).trim(),
        "3",
        "{}",
        said(&mixed)
    );
    // Python's worker shows its broker_use_ssl the same way.
    let python_node = format!("py-{python_queue}@{}", hostname());
    let python_ssl = ssl_of(
        &python_script_with(
            "tls_calls.py",
            &["ssl", &python_node],
            python_queue,
            &python_side,
        )
        .await,
    );
    drop(python_worker);
    assert_eq!(rust_ssl, python_ssl, "broker.ssl of inspect stats");
    assert_eq!(rust_ssl["cert_reqs"], 2);

    // Each refusal: a non-zero exit and one line saying what to look at.
    let refusals = [
        (
            node.tls_url(&parameters(&certs, "other-ca.pem", true)),
            "not signed by a CA we trust",
        ),
        (
            node.tls_url(&format!(
                "{}&server_name_indication=elsewhere.example",
                parameters(&certs, "ca.pem", true)
            )),
            "not for the name connected to",
        ),
        (
            node.tls_url(&parameters(&certs, "ca.pem", false)),
            "refused the connection's client certificate",
        ),
        (
            format!(
                "amqps://guest:guest@localhost:{}/%2f?{}",
                node.port,
                parameters(&certs, "ca.pem", true)
            ),
            "does not speak TLS",
        ),
        (
            format!(
                "amqp://guest:guest@localhost:{}/%2f",
                node.tls_port.unwrap()
            ),
            "is it a TLS port?",
        ),
    ];
    for (url, expected) in refusals {
        let refused = rust_cli(&["add", "1", "2", "--queue", queue], &url).await;
        let text = said(&refused);
        assert!(!refused.status.success(), "{url}: {text}");
        assert!(
            text.contains(expected),
            "{url}: expected {expected:?} in {text}"
        );
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    }
}

/// The host name Celery puts in a default node name (`%h`).
fn hostname() -> String {
    let output = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn tls_settings_are_checked_when_the_broker_is_parsed() {
    let certs = TestCerts::make();
    let parse = |url: String| url.parse::<celery_pages::Broker>().map(|_| ());
    let base = "amqps://guest:guest@localhost:5671/%2f";
    let missing = parse(format!("{base}?cacertfile=/nonexistent/ca.pem")).unwrap_err();
    assert!(
        plumbing::describe(&missing).contains("cannot read CA file /nonexistent/ca.pem"),
        "{}",
        plumbing::describe(&missing)
    );
    let half = parse(format!("{base}?certfile={}", certs.file("client.pem"))).unwrap_err();
    assert!(
        half.to_string()
            .contains("certfile and keyfile go together"),
        "{half}"
    );
    let plain = parse(format!(
        "amqp://guest:guest@localhost//?cacertfile={}",
        certs.file("ca.pem")
    ))
    .unwrap_err();
    assert!(plain.to_string().contains("write amqps://"), "{plain}");
    let verify = parse(format!("{base}?verify=maybe")).unwrap_err();
    assert!(
        verify.to_string().contains("verify_peer or verify_none"),
        "{verify}"
    );
    // No URI parameter gives a key's password (Python's dict of
    // broker_use_ssl has none either): an encrypted key is named as such.
    let encrypted = parse(format!(
        "{base}?certfile={}&keyfile={}",
        certs.file("client.pem"),
        certs.file("client-encrypted.key")
    ))
    .unwrap_err();
    assert!(
        plumbing::describe(&encrypted)
            .contains("client-encrypted.key is encrypted: nothing here gives its password"),
        "{}",
        plumbing::describe(&encrypted)
    );
    // A CA directory, as for Pyro4.
    parse(format!("{base}?cacertfile={}", certs.file("cadir"))).unwrap();
    // Percent-encoded paths, as RabbitMQ's URI examples write them.
    let encoded = certs.file("ca.pem").replace('/', "%2F");
    parse(format!("{base}?cacertfile={encoded}&heartbeat=10")).unwrap();
}
