//! The name server on port 0, driven through the client helper and the CLI.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use rpc_naming::{Error, Location, NameServerClient, NamingError, server};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A lease short enough that tests about expiry take a fraction of a second.
const SHORT_TTL: Duration = Duration::from_millis(300);

struct TestNs {
    addr: String,
    _stop: oneshot::Sender<()>,
}

async fn start_ns(max_names: usize) -> TestNs {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, max_names, async {
        let _ = stopped.await;
    }));
    TestNs { addr, _stop: stop }
}

fn sock(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn naming_error(result: Result<impl std::fmt::Debug, Error>) -> NamingError {
    match result {
        Err(Error::Naming(err)) => err,
        other => panic!("expected a naming error, got {other:?}"),
    }
}

#[tokio::test]
async fn register_lookup_overwrite_and_safe() {
    let ns_server = start_ns(100).await;
    let ns = NameServerClient::connect(&ns_server.addr).await.unwrap();
    ns.ping().await.unwrap();

    ns.register("server", sock(1000), false).await.unwrap();
    assert_eq!(
        ns.lookup("server").await.unwrap(),
        Location::Rust(sock(1000))
    );

    // Pyro4: register overwrites unless safe.
    ns.register("server", sock(2000), false).await.unwrap();
    assert_eq!(
        ns.lookup("server").await.unwrap(),
        Location::Rust(sock(2000))
    );
    let err = naming_error(ns.register("server", sock(3000), true).await);
    assert_eq!(err, NamingError::AlreadyRegistered("server".into()));
    assert_eq!(err.to_string(), "name already registered: server");
    assert_eq!(
        ns.lookup("server").await.unwrap(),
        Location::Rust(sock(2000))
    );

    let err = naming_error(ns.lookup("nobody").await);
    assert_eq!(err.to_string(), "unknown name: nobody");
}

#[tokio::test]
async fn list_and_remove_by_prefix_and_regex() {
    let ns_server = start_ns(100).await;
    let ns = NameServerClient::connect(&ns_server.addr).await.unwrap();
    for (i, name) in [
        "example.chainTopology.1",
        "example.chainTopology.2",
        "example.other",
        "server",
    ]
    .iter()
    .enumerate()
    {
        ns.register(name, sock(1000 + i as u16), false)
            .await
            .unwrap();
    }
    let names =
        |list: Vec<(String, Location)>| list.into_iter().map(|(n, _)| n).collect::<Vec<_>>();

    // The four, and the name server's own entry.
    assert_eq!(names(ns.list(None).await.unwrap()).len(), 5);
    assert_eq!(
        names(ns.list(Some("example.chain")).await.unwrap()),
        ["example.chainTopology.1", "example.chainTopology.2"]
    );
    assert_eq!(
        names(
            ns.list_matching(r"example\.chainTopology\.\d")
                .await
                .unwrap()
        ),
        ["example.chainTopology.1", "example.chainTopology.2"]
    );
    // Anchored at the start, like re.match.
    assert!(ns.list_matching("chainTopology").await.unwrap().is_empty());
    assert!(matches!(
        naming_error(ns.list_matching("(unclosed").await),
        NamingError::InvalidPattern { .. }
    ));

    assert_eq!(ns.remove("server").await.unwrap(), 1);
    assert_eq!(
        ns.remove("server").await.unwrap(),
        0,
        "unknown is 0, not an error"
    );
    assert_eq!(ns.remove_matching(r"example\.chain").await.unwrap(), 2);
    // The name server's own entry is never removed, as in Python.
    assert_eq!(ns.remove("Pyro.NameServer").await.unwrap(), 0);
    assert_eq!(ns.remove_matching(".*").await.unwrap(), 1);
    assert_eq!(names(ns.list(None).await.unwrap()), ["Pyro.NameServer"]);
}

#[tokio::test]
async fn invalid_names_and_a_full_table_are_refused() {
    let ns_server = start_ns(2).await;
    let ns = NameServerClient::connect(&ns_server.addr).await.unwrap();
    for bad in ["", "two words", "tab\there", &"x".repeat(201)] {
        assert!(
            matches!(
                naming_error(ns.register(bad, sock(1), false).await),
                NamingError::InvalidName { .. }
            ),
            "{bad:?}"
        );
    }
    ns.register("a", sock(1), false).await.unwrap();
    ns.register("b", sock(2), false).await.unwrap();
    assert_eq!(
        naming_error(ns.register("c", sock(3), false).await),
        NamingError::TableFull(2)
    );
    // Overwriting an existing name needs no new room.
    ns.register("a", sock(4), false).await.unwrap();
}

#[tokio::test]
async fn an_oversized_frame_is_refused_and_the_server_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ns_server = start_ns(100).await;
    // A raw length prefix of twice the frame limit, as a client that does
    // not share our encoder's limit would send, then the start of the frame.
    let mut raw = tokio::net::TcpStream::connect(&ns_server.addr)
        .await
        .unwrap();
    let len = u32::try_from(2 * rpc_transport::MAX_FRAME).unwrap();
    raw.write_all(&len.to_be_bytes()).await.unwrap();
    let _ = raw.write_all(&[0u8; 4096]).await;
    // The server closes the connection instead of waiting for 2 MiB. (The
    // bound only stops a hang from hanging the test suite.)
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), raw.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the server kept a connection announcing a {len}-byte frame: {closed:?}"
    );
    let fresh = NameServerClient::connect(&ns_server.addr).await.unwrap();
    fresh.register("still", sock(9), false).await.unwrap();
    assert_eq!(
        fresh.lookup("still").await.unwrap(),
        Location::Rust(sock(9))
    );
}

#[tokio::test]
async fn a_lease_lives_while_held_and_is_removed_on_release() {
    let ns_server = start_ns(100).await;
    let ns = NameServerClient::connect(&ns_server.addr).await.unwrap();
    let lease = ns
        .register_lease_for("server", sock(5000), true, SHORT_TTL)
        .await
        .unwrap();
    // Heartbeats keep it past its time to live: four renewals, a third of
    // it apart, span more than all of it.
    let mut renewals = lease.renewals();
    tokio::time::timeout(SHORT_TTL * 100, renewals.wait_for(|&count| count >= 4))
        .await
        .expect("the lease was not renewed")
        .unwrap();
    assert_eq!(
        ns.lookup("server").await.unwrap(),
        Location::Rust(sock(5000))
    );
    assert!(lease.release().await.unwrap());
    assert!(matches!(
        naming_error(ns.lookup("server").await),
        NamingError::UnknownName(_)
    ));
}

/// A lease ends with the connection that took it (a server killed outright
/// closes it), long before its time to live.
#[tokio::test]
async fn a_lease_ends_with_its_connection() {
    let ns_server = start_ns(100).await;
    let holder = NameServerClient::connect(&ns_server.addr).await.unwrap();
    let lease = holder
        .register_lease_for("ephemeral", sock(5002), true, Duration::from_secs(3600))
        .await
        .unwrap();
    let ns = NameServerClient::connect(&ns_server.addr).await.unwrap();
    assert_eq!(
        ns.lookup("ephemeral").await.unwrap(),
        Location::Rust(sock(5002))
    );
    // As a killed process: no release (dropping a lease only stops its
    // heartbeats), the connection simply goes.
    drop(lease);
    drop(holder);
    for polls in 0.. {
        match ns.lookup("ephemeral").await {
            Err(Error::Naming(NamingError::UnknownName(_))) => break,
            Ok(_) => {
                assert!(polls < 300, "the name outlived its server's connection");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => panic!("{err}"),
        }
    }
}

#[tokio::test]
async fn a_dropped_lease_expires_like_a_crashed_server() {
    let ns_server = start_ns(100).await;
    let ns = NameServerClient::connect(&ns_server.addr).await.unwrap();
    let lease = ns
        .register_lease_for("crashy", sock(5001), false, SHORT_TTL)
        .await
        .unwrap();
    drop(lease);
    assert_eq!(
        ns.lookup("crashy").await.unwrap(),
        Location::Rust(sock(5001))
    );
    for polls in 0.. {
        match ns.lookup("crashy").await {
            Ok(_) => {
                assert!(polls < 1000, "the name outlived its lease");
                tokio::time::sleep(SHORT_TTL / 10).await;
            }
            Err(err) => {
                assert!(
                    matches!(err, Error::Naming(NamingError::UnknownName(_))),
                    "{err}"
                );
                break;
            }
        }
    }
    assert_eq!(
        ns.list(None).await.unwrap(),
        [(
            "Pyro.NameServer".to_owned(),
            Location::Rust(ns_server.addr.parse().unwrap())
        )]
    );
}

#[tokio::test]
async fn a_taken_over_lease_is_not_released_by_its_old_holder() {
    let ns_server = start_ns(100).await;
    let ns = NameServerClient::connect(&ns_server.addr).await.unwrap();
    let old = ns.register_lease("server", sock(1), false).await.unwrap();
    ns.register("server", sock(2), false).await.unwrap();
    assert!(!old.release().await.unwrap());
    assert_eq!(ns.lookup("server").await.unwrap(), Location::Rust(sock(2)));
}

#[tokio::test]
async fn no_name_server_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = NameServerClient::connect(&addr).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("no name server at {addr}")),
        "{text}"
    );
    assert!(text.contains("rpc_naming serve"), "{text}");
}

const BIN: &str = env!("CARGO_BIN_EXE_rpc_naming");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_reports_success_and_failure_by_exit_status() {
    let ns_server = start_ns(100).await;
    let run = |args: &[&str]| {
        let output = Command::new(BIN)
            .args(args)
            .env("RPC_NAMESERVER", &ns_server.addr)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // The CLI blocks; run it off the runtime's threads.
    let (ok, out, _) =
        tokio::task::block_in_place(|| run(&["register", "server", "127.0.0.1:7000"]));
    assert!(ok, "{out}");
    let (ok, out, _) = tokio::task::block_in_place(|| run(&["lookup", "server"]));
    assert!(ok);
    assert_eq!(out.trim(), "127.0.0.1:7000");
    let (ok, _, err) =
        tokio::task::block_in_place(|| run(&["register", "server", "127.0.0.1:7001", "--safe"]));
    assert!(!ok);
    assert!(err.contains("name already registered: server"), "{err}");
    let (ok, out, _) = tokio::task::block_in_place(|| run(&["list", "ser"]));
    assert!(ok);
    assert_eq!(out.trim(), "server --> 127.0.0.1:7000");
    let (ok, _, err) = tokio::task::block_in_place(|| run(&["lookup", "nosuch"]));
    assert!(!ok);
    assert!(err.contains("unknown name: nosuch"), "{err}");
    let (ok, out, _) = tokio::task::block_in_place(|| run(&["remove", "server"]));
    assert!(ok);
    assert_eq!(out.trim(), "1");
    let (ok, out, _) = tokio::task::block_in_place(|| run(&["ping"]));
    assert!(ok, "{out}");

    let output = tokio::task::block_in_place(|| {
        Command::new(BIN)
            .args(["ping", "--ns", "127.0.0.1:1"])
            .output()
            .unwrap()
    });
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no name server at 127.0.0.1:1"));
}

#[tokio::test]
async fn a_lease_comes_back_after_the_name_server_restarts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let first = tokio::spawn(server::serve(listener, 100, async {
        let _ = stopped.await;
    }));
    let ns = NameServerClient::connect(&addr.to_string()).await.unwrap();
    let _lease = ns
        .register_lease_for("server", sock(6000), false, SHORT_TTL)
        .await
        .unwrap();

    // The name server goes away and comes back empty on the same address.
    let _ = stop.send(());
    first.await.unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(server::serve(listener, 100, std::future::pending()));
    let fresh = NameServerClient::connect(&addr.to_string()).await.unwrap();

    // The heartbeats notice and register the name again.
    for polls in 0.. {
        match fresh.lookup("server").await {
            Ok(found) => {
                assert_eq!(found, Location::Rust(sock(6000)));
                break;
            }
            Err(_) => {
                assert!(polls < 1000, "the lease was not registered again");
                tokio::time::sleep(SHORT_TTL / 10).await;
            }
        }
    }
}
