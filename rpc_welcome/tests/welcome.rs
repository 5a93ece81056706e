//! The welcome server and client found through a real name server on port 0,
//! in process and as the binary a user runs.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use std::time::Duration;
use test_support::child::KillOnDrop;

use rpc_naming::client::LEASE_TTL;
use rpc_naming::{NameServerClient, NamingError};
use rpc_welcome::{CALL_TIMEOUT, DEFAULT_NAME, Error, buy, connect, serve};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_rpc_welcome");

async fn start_ns() -> String {
    rpc_naming::server::spawn_local(100).await.unwrap()
}

#[tokio::test]
async fn client_finds_the_server_by_name() {
    let ns_addr = start_ns().await;
    let ns = NameServerClient::connect(&ns_addr).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lease = ns
        .register_lease(DEFAULT_NAME, listener.local_addr().unwrap(), false)
        .await
        .unwrap();
    tokio::spawn(serve(listener, DEFAULT_NAME, std::future::pending()));

    let client = std::sync::Arc::new(connect(&ns, DEFAULT_NAME).await.unwrap());
    assert_eq!(
        buy(&client, DEFAULT_NAME, "Pemrograman Rust")
            .await
            .unwrap(),
        "Buku dengan judul Pemrograman Rust berhasil dibeli!"
    );
    // Many calls in flight on one connection.
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { buy(&client, DEFAULT_NAME, &format!("Buku {i}")).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(
            call.await.unwrap().unwrap(),
            format!("Buku dengan judul Buku {i} berhasil dibeli!")
        );
    }
    lease.release().await.unwrap();
}

#[tokio::test]
async fn an_unknown_name_is_reported() {
    let ns = NameServerClient::connect(&start_ns().await).await.unwrap();
    let err = connect(&ns, "nosuch").await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Naming(rpc_naming::Error::Naming(NamingError::UnknownName(n))) if n == "nosuch"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_died_after_registering_is_reported() {
    let ns = NameServerClient::connect(&start_ns().await).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    ns.register(DEFAULT_NAME, dead, false).await.unwrap();
    let err = connect(&ns, DEFAULT_NAME).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("nothing answers there") && text.contains(&dead.to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_that_hangs_hits_the_deadline() {
    let ns = NameServerClient::connect(&start_ns().await).await.unwrap();
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    ns.register(DEFAULT_NAME, listener.local_addr().unwrap(), false)
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = connect(&ns, DEFAULT_NAME).await.unwrap();
    // The call's own deadline ends it (the wait is bounded, not timed).
    let err = tokio::time::timeout(CALL_TIMEOUT * 4, buy(&client, DEFAULT_NAME, "x"))
        .await
        .expect("the call outlived its deadline")
        .unwrap_err();
    assert!(matches!(err, Error::Call { .. }), "{err}");
}

/// Starts `rpc_welcome server` and waits for its `Ready.` line. It is
/// killed when the guard is dropped.
fn start_server_process(ns: &str) -> KillOnDrop {
    let mut child = KillOnDrop::new(
        Command::new(BIN)
            .args(["server", "--ns", ns])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(child.child().stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(
        ready.starts_with("Ready. Object uri = PYRO:server@127.0.0.1:"),
        "{ready}"
    );
    child
}

fn signal(child: &KillOnDrop, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_prompts_and_a_stopped_server_deregisters() {
    let ns_addr = start_ns().await;
    let ns = NameServerClient::connect(&ns_addr).await.unwrap();
    let mut server = tokio::task::block_in_place(|| start_server_process(&ns_addr));

    let output = tokio::task::block_in_place(|| {
        let mut client = Command::new(BIN)
            .args(["client", "--ns", &ns_addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        client
            .stdin
            .take()
            .unwrap()
            .write_all(b"  Pemrograman Terdistribusi \n")
            .unwrap();
        client.wait_with_output().unwrap()
    });
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "Mau beli buku dengan judul apa? Buku dengan judul Pemrograman Terdistribusi berhasil dibeli!\n"
    );

    // Ctrl-C (SIGINT) and SIGTERM both stop it cleanly, removing its name.
    signal(&server, "INT");
    let status = tokio::task::block_in_place(|| server.child().wait().unwrap());
    assert!(status.success(), "{status}");
    assert!(matches!(
        ns.lookup(DEFAULT_NAME).await,
        Err(rpc_naming::Error::Naming(NamingError::UnknownName(_)))
    ));
    let mut server = tokio::task::block_in_place(|| start_server_process(&ns_addr));
    assert!(ns.lookup(DEFAULT_NAME).await.is_ok());
    signal(&server, "TERM");
    let status = tokio::task::block_in_place(|| server.child().wait().unwrap());
    assert!(status.success(), "{status}");
    assert!(ns.lookup(DEFAULT_NAME).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_disappears_from_the_name_server() {
    let ns_addr = start_ns().await;
    let ns = NameServerClient::connect(&ns_addr).await.unwrap();
    let mut server = tokio::task::block_in_place(|| start_server_process(&ns_addr));
    assert!(ns.lookup(DEFAULT_NAME).await.is_ok());
    signal(&server, "KILL");
    tokio::task::block_in_place(|| server.child().wait().unwrap());
    // Its lease runs out (bounded: polls every 100 ms, far past the TTL).
    let mut polls = 0;
    while ns.lookup(DEFAULT_NAME).await.is_ok() {
        assert!(polls < 300, "the killed server's name outlived its lease");
        polls += 1;
        tokio::time::sleep(LEASE_TTL / 30).await;
    }
    // The client now gets a clear error rather than a hang.
    let output = tokio::task::block_in_place(|| {
        Command::new(BIN)
            .args(["client", "--ns", &ns_addr, "--title", "x"])
            .output()
            .unwrap()
    });
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown name: server"));
}

#[test]
fn no_name_server_fails_fast_with_a_hint() {
    let output = Command::new(BIN)
        .args(["client", "--ns", "127.0.0.1:1", "--title", "x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no name server at 127.0.0.1:1") && stderr.contains("rpc_naming serve"),
        "{stderr}"
    );
}

/// Resident memory of a process, from /proc, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 300 connections that never say a word (more than the 256 a server
/// holds) do not lock clients out: the next client takes the place of the
/// one silent longest and is served, first time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_full_of_silent_connections_still_serves_a_client() {
    let ns_addr = start_ns().await;
    let ns = NameServerClient::connect(&ns_addr).await.unwrap();
    let _server = tokio::task::block_in_place(|| start_server_process(&ns_addr));
    let rpc_naming::Location::Rust(addr) = ns.lookup(DEFAULT_NAME).await.unwrap() else {
        panic!("a server of this workspace registers its address")
    };
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let client = connect(&ns, DEFAULT_NAME).await.unwrap();
    assert_eq!(
        buy(&client, DEFAULT_NAME, "Sistem Terdistribusi")
            .await
            .unwrap(),
        "Buku dengan judul Sistem Terdistribusi berhasil dibeli!"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_replies_holds_bounded_memory() {
    use futures::SinkExt;
    use rpc_welcome::{WelcomeRequest, WelcomeResponse};

    const FLOOD: u64 = 5_000;
    let ns_addr = start_ns().await;
    let ns = NameServerClient::connect(&ns_addr).await.unwrap();
    let server = tokio::task::block_in_place(|| start_server_process(&ns_addr));
    let rpc_naming::Location::Rust(addr) = ns.lookup(DEFAULT_NAME).await.unwrap() else {
        panic!("a server of this workspace registers its address")
    };

    // Pipelines up to 5,000 requests of 64 KiB (320 MB, as many replies)
    // and never reads a reply. Once the server stops reading, the sends
    // block: after 2 s of that the flood stops.
    let mut flood =
        rpc_transport::connect::<WelcomeRequest, WelcomeResponse>(addr, "127.0.0.1", None)
            .await
            .unwrap();
    let title = "x".repeat(64 * 1024);
    let mut sent = 0;
    for id in 0..FLOOD {
        let request = tarpc::ClientMessage::Request(tarpc::Request {
            context: rpc_naming::client::deadline_in(Duration::from_secs(30)),
            id,
            message: WelcomeRequest::WelcomeMessage {
                name: title.clone(),
            },
        });
        match tokio::time::timeout(Duration::from_secs(2), flood.send(request)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(err)) => panic!("the server dropped the flooding client: {err}"),
            Err(_) => break,
        }
    }
    assert!(sent < FLOOD, "the server read all {sent} requests");
    let rss = rss_kib(server.id());
    println!("server resident memory after {sent} pipelined requests: {rss} KiB");
    assert!(
        rss < 50 * 1024,
        "the server holds {rss} KiB after {sent} requests"
    );

    // Other clients are served meanwhile.
    let client = connect(&ns, DEFAULT_NAME).await.unwrap();
    assert_eq!(
        buy(&client, DEFAULT_NAME, "Buku").await.unwrap(),
        "Buku dengan judul Buku berhasil dibeli!"
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_name_server_restart_sigterm_still_removes_the_name() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ns_addr = listener.local_addr().unwrap();
    let (stop_ns, ns_stopped) = tokio::sync::oneshot::channel::<()>();
    let first_ns = tokio::spawn(rpc_naming::server::serve(listener, 100, async {
        let _ = ns_stopped.await;
    }));
    let server = tokio::task::block_in_place(|| start_server_process(&ns_addr.to_string()));

    // The name server goes and comes back empty on the same address.
    let _ = stop_ns.send(());
    first_ns.await.unwrap();
    let listener = TcpListener::bind(ns_addr).await.unwrap();
    tokio::spawn(rpc_naming::server::serve(
        listener,
        100,
        std::future::pending(),
    ));
    let ns = NameServerClient::connect(&ns_addr.to_string())
        .await
        .unwrap();
    // The server's heartbeats register its name again (bounded wait)...
    for polls in 0.. {
        if ns.lookup(DEFAULT_NAME).await.is_ok() {
            break;
        }
        assert!(polls < 100, "the name was not registered again");
        tokio::time::sleep(LEASE_TTL / 30).await;
    }
    // ...and SIGTERM removes it through the new name server.
    signal(&server, "TERM");
    let mut server = server;
    let status = tokio::task::block_in_place(|| server.child().wait().unwrap());
    assert!(status.success(), "{status}");
    assert!(matches!(
        ns.lookup(DEFAULT_NAME).await,
        Err(rpc_naming::Error::Naming(NamingError::UnknownName(_)))
    ));
}
