//! Rings of real tarpc servers on port 0, found through a real name server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc_chain::{
    Chain, ChainClient, ChainError, Connection, Error, MAX_BYTES, MAX_ITEMS, Placement, RingServer,
    connect, finished, python_list, returned, send, server_name,
};
use rpc_naming::client::deadline_in;
use rpc_naming::{Lease, NameServerClient};
use rpc_transport::{PyroObject, ServerChannel, Service, spawn_request};
use tarpc::context::Context;
use tarpc::server::Channel;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

async fn start_ns() -> NameServerClient {
    let addr = rpc_naming::server::spawn_local(100).await.unwrap();
    NameServerClient::connect(&addr).await.unwrap()
}

async fn start_server(ns: &NameServerClient, id: u32, next: u32) -> RingServer {
    RingServer::start(ns, id, next, false, Placement::Here)
        .await
        .unwrap()
}

async fn start_ring(ns: &NameServerClient, size: u32) -> Vec<RingServer> {
    rpc_chain::start_ring(ns, size, false, Placement::Here)
        .await
        .unwrap()
}

fn hello() -> Vec<String> {
    vec!["hello".to_owned()]
}

#[tokio::test]
async fn three_servers_give_the_chapters_status() {
    let ns = start_ns().await;
    let _ring = start_ring(&ns, 3).await;
    let client = connect(&ns, 1).await.unwrap();
    let status = send(&client, 1, hello()).await.unwrap();
    assert_eq!(
        format!("Status = {}", python_list(&status)),
        "Status = ['Buku 1 sudah selesai di baca!', 'Buku 2 sudah selesai di baca!', \
         'Buku 3 sudah selesai di baca!', 'Kembali ke buku 1']"
    );
    // Starting elsewhere in the ring comes back there.
    let client = connect(&ns, 2).await.unwrap();
    let status = send(&client, 2, hello()).await.unwrap();
    assert_eq!(status, [finished(2), finished(3), finished(1), returned(2)]);
}

/// A ring server full of connections that each announce a 1 MiB frame and
/// trickle it still serves a client, first time, and its quiet links to the
/// other hops (which asked before the flood) are not the ones closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_server_full_of_trickling_frames_still_serves_a_client() {
    use tokio::io::AsyncWriteExt;

    let ns = start_ns().await;
    let _ring = start_ring(&ns, 3).await;
    let client = connect(&ns, 1).await.unwrap();
    assert_eq!(send(&client, 1, hello()).await.unwrap().len(), 4);
    let rpc_naming::Location::Rust(addr) = ns.lookup(&server_name(1)).await.unwrap() else {
        panic!("a server of this workspace registers its address")
    };
    let mut tricklers = Vec::new();
    for _ in 0..300 {
        let mut trickler = tokio::net::TcpStream::connect(addr).await.unwrap();
        trickler
            .write_all(&(1u32 << 20).to_be_bytes())
            .await
            .unwrap();
        trickler.write_all(&[0; 10]).await.unwrap();
        tricklers.push(trickler);
    }
    let newcomer = connect(&ns, 1).await.unwrap();
    assert_eq!(send(&newcomer, 1, hello()).await.unwrap().len(), 4);
    assert_eq!(send(&client, 1, hello()).await.unwrap().len(), 4);
    drop(tricklers);
}

#[tokio::test]
async fn rings_of_one_and_five() {
    let ns = start_ns().await;
    let _ring = start_ring(&ns, 1).await;
    let client = connect(&ns, 1).await.unwrap();
    assert_eq!(
        send(&client, 1, hello()).await.unwrap(),
        [finished(1), returned(1)]
    );

    let ns = start_ns().await;
    let _ring = start_ring(&ns, 5).await;
    let client = connect(&ns, 1).await.unwrap();
    let mut expected: Vec<String> = (1..=5).map(finished).collect();
    expected.push(returned(1));
    assert_eq!(send(&client, 1, hello()).await.unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_at_once_all_get_their_reply() {
    let ns = start_ns().await;
    let _ring = start_ring(&ns, 3).await;
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let ns = ns.clone();
            tokio::spawn(async move {
                let client = connect(&ns, 1).await.unwrap();
                let word = format!("word-{i}");
                let status = send(&client, 1, vec![word]).await.unwrap();
                assert_eq!(status.len(), 4);
                status
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap().last().unwrap(), "Kembali ke buku 1");
    }
}

#[tokio::test]
async fn a_missing_hop_is_named_quickly_and_it_can_join_later() {
    let ns = start_ns().await;
    let _one = start_server(&ns, 1, 2).await;
    let _two = start_server(&ns, 2, 3).await;
    let client = connect(&ns, 1).await.unwrap();

    // Named as unknown, not left to a deadline: the error says why.
    let err = send(&client, 1, hello()).await.unwrap_err();
    match &err {
        Error::Chain(ChainError::HopUnreachable { hop, from, reason }) => {
            assert_eq!(hop, "example.chainTopology.3");
            assert_eq!(from, "example.chainTopology.2");
            assert!(reason.contains("unknown name"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string()
            .starts_with("example.chainTopology.3 cannot be reached")
    );

    // The servers kept serving: once 3 joins, the ring works.
    let _three = start_server(&ns, 3, 1).await;
    assert_eq!(send(&client, 1, hello()).await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_dead_hop_is_named_and_a_restarted_hop_is_found_again() {
    let ns = start_ns().await;
    let mut ring = start_ring(&ns, 3).await;
    let client = connect(&ns, 1).await.unwrap();
    assert_eq!(send(&client, 1, hello()).await.unwrap().len(), 4);

    // Server 3 goes away but its name stays (as after a crash, until the
    // lease runs out): registered, yet nothing answers.
    let three = ring.pop().unwrap();
    let dead_addr = ns.lookup(&server_name(3)).await.unwrap();
    three.stop().await.unwrap();
    ns.register(&server_name(3), dead_addr, false)
        .await
        .unwrap();
    // A refused connection, not a deadline: the error says nothing answers.
    let err = send(&client, 1, hello()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Chain(ChainError::HopUnreachable { hop, reason, .. })
            if hop == "example.chainTopology.3" && reason.contains("nothing answers")),
        "{err}"
    );

    // It restarts on another port: server 2 resolves the name again.
    ns.remove(&server_name(3)).await.unwrap();
    let _three = start_server(&ns, 3, 1).await;
    assert_eq!(send(&client, 1, hello()).await.unwrap().len(), 4);
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let ns = start_ns().await;
    let _ring = start_ring(&ns, 3).await;
    let client = connect(&ns, 1).await.unwrap();

    let many = vec!["w".to_owned(); MAX_ITEMS];
    let err = send(&client, 1, many).await.unwrap_err();
    assert!(
        matches!(&err, Error::Chain(ChainError::TooLarge { server, items, .. })
            if server == "example.chainTopology.1" && *items == MAX_ITEMS),
        "{err}"
    );
    let big = vec!["x".repeat(MAX_BYTES + 1)];
    assert!(matches!(
        send(&client, 1, big).await.unwrap_err(),
        Error::Chain(ChainError::TooLarge { .. })
    ));
    // Grown hop by hop to the limit: refused further down the ring.
    let nearly = vec!["w".to_owned(); MAX_ITEMS - 2];
    let err = send(&client, 1, nearly).await.unwrap_err();
    assert!(
        matches!(&err, Error::Chain(ChainError::TooLarge { server, .. }) if server == "example.chainTopology.3"),
        "{err}"
    );
    // And the ring still works.
    assert_eq!(send(&client, 1, hello()).await.unwrap().len(), 4);
}

/// A hop that records the deadline it was called with and never answers in time.
#[derive(Clone)]
struct SlowHop {
    seen: Arc<Mutex<Option<Instant>>>,
}

impl Service for SlowHop {
    type Req = rpc_chain::ChainRequest;
    type Resp = rpc_chain::ChainResponse;

    fn run(
        self,
        channel: ServerChannel<rpc_chain::ChainRequest, rpc_chain::ChainResponse>,
    ) -> impl Future<Output = ()> + Send {
        channel.execute(self.serve()).for_each(spawn_request)
    }
}

impl Chain for SlowHop {
    async fn process(self, ctx: Context, _: Vec<String>) -> Result<Vec<String>, ChainError> {
        *self.seen.lock().unwrap() = Some(ctx.deadline);
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Vec::new())
    }
}

impl pyro4_wire::daemon::Object for SlowHop {
    fn class_name(&self) -> &'static str {
        "Chain"
    }

    fn methods(&self) -> &[&'static str] {
        &["process"]
    }

    async fn invoke(
        &self,
        _: pyro4_wire::Call,
    ) -> Result<pyro4_wire::serpent::Value, pyro4_wire::PyroException> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(pyro4_wire::serpent::Value::List(Vec::new()))
    }
}

/// The tarpc client of a ring server of this workspace.
async fn tarpc_client(ns: &NameServerClient, id: u32) -> ChainClient {
    match connect(ns, id).await.unwrap() {
        Connection::Tarpc(client) => client,
        Connection::Pyro(_) => panic!("server {id} should be reached over tarpc"),
    }
}

#[tokio::test]
async fn the_callers_deadline_travels_along_the_chain() {
    let ns = start_ns().await;
    let _one = start_server(&ns, 1, 2).await;
    let _two = start_server(&ns, 2, 3).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    ns.register(&server_name(3), listener.local_addr().unwrap(), false)
        .await
        .unwrap();
    let slow = SlowHop {
        seen: Arc::new(Mutex::new(None)),
    };
    let serving = slow.clone();
    tokio::spawn(rpc_transport::serve(
        listener,
        "spy server",
        std::future::pending(),
        serving,
        PyroObject::new(&server_name(3), slow.clone()),
    ));

    let client = tarpc_client(&ns, 1).await;
    let ctx = deadline_in(Duration::from_millis(800));
    let result = client.process(ctx, hello()).await;
    // Either the client's own deadline fires, or server 1's wait for the
    // next hop does first and it answers with an error: never a reply.
    assert!(!matches!(result, Ok(Ok(_))), "{result:?}");
    let seen = slow.seen.lock().unwrap().expect("the slow hop was called");
    // Hop 3 got the caller's deadline (already past by now), not a deadline
    // of its own (tarpc's default is 10 s from the hop's call).
    assert!(
        seen <= Instant::now(),
        "hop 3 saw a deadline {:?} away, not the caller's 800 ms",
        seen - Instant::now()
    );
}

#[test]
fn the_demo_prints_the_chapters_lines() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rpc_chain"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "Buku 1 mulai dibaca \n\
         Buku 2 mulai dibaca \n\
         Buku 3 mulai dibaca \n\
         Buku 1 sudah selesai di baca lanjutkan ke buku 2\n\
         Buku 2 sudah selesai di baca lanjutkan ke buku 3\n\
         Buku 3 sudah selesai di baca lanjutkan ke buku 1\n\
         Kembali ke buku 1; Buku akan di ulang dari halaman 1\n\
         Status = ['Buku 1 sudah selesai di baca!', 'Buku 2 sudah selesai di baca!', \
         'Buku 3 sudah selesai di baca!', 'Kembali ke buku 1']\n"
    );
}

/// The most common thing a student does: kill a server outright and start
/// it again at once. Its name must be free at once (the lease went with its
/// connection), not when the lease would have run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_outright_can_start_again_at_once() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let ns_addr = rpc_naming::server::spawn_local(100).await.unwrap();
    let start = || {
        let mut child = test_support::child::KillOnDrop::new(
            Command::new(env!("CARGO_BIN_EXE_rpc_chain"))
                .args(["server", "--ns", &ns_addr, "--id", "1", "--next", "2"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut ready = String::new();
        std::io::BufReader::new(child.child().stdout.as_mut().unwrap())
            .read_line(&mut ready)
            .unwrap();
        (child, ready)
    };
    for round in 0..3 {
        let (mut server, ready) = tokio::task::block_in_place(start);
        let said = if ready.is_empty() {
            let output = server.release().wait_with_output().unwrap();
            String::from_utf8_lossy(&output.stderr).into_owned()
        } else {
            // SIGKILL: no clean stop, no release.
            server.child().kill().unwrap();
            server.child().wait().unwrap();
            ready.clone()
        };
        assert_eq!(said, "Buku 1 mulai dibaca \n", "round {round}: {said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_with_the_same_id_refuses_to_take_the_name() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let ns_addr = rpc_naming::server::spawn_local(100).await.unwrap();
    let server = |id: &str| {
        Command::new(env!("CARGO_BIN_EXE_rpc_chain"))
            .args(["server", "--ns", &ns_addr, "--id", id, "--next", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = test_support::child::KillOnDrop::new(server("1"));
    let mut ready = String::new();
    tokio::task::block_in_place(|| {
        std::io::BufReader::new(first.child().stdout.as_mut().unwrap()).read_line(&mut ready)
    })
    .unwrap();
    assert_eq!(ready, "Buku 1 mulai dibaca \n");

    let second = tokio::task::block_in_place(|| server("1").wait_with_output().unwrap());
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("example.chainTopology.1 is already registered by a live server"),
        "{stderr}"
    );
    // The first keeps its name.
    let ns = NameServerClient::connect(&ns_addr).await.unwrap();
    let client = connect(&ns, 1).await.unwrap();
    assert!(
        send(&client, 1, hello()).await.is_err(),
        "server 2 is missing"
    );
    drop(first);
}

/// Starts a hop that never answers in time as server `id`.
async fn start_slow_hop(ns: &NameServerClient, id: u32) -> Lease {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lease = ns
        .register_lease(&server_name(id), listener.local_addr().unwrap(), false)
        .await
        .unwrap();
    let slow = SlowHop {
        seen: Arc::new(Mutex::new(None)),
    };
    let pyro = PyroObject::new(&server_name(id), slow.clone());
    tokio::spawn(rpc_transport::serve(
        listener,
        "slow hop",
        std::future::pending(),
        slow,
        pyro,
    ));
    lease
}

#[tokio::test]
async fn a_hung_hop_is_named_by_the_hop_before_it() {
    let ns = start_ns().await;
    let _one = start_server(&ns, 1, 2).await;
    let _two = start_slow_hop(&ns, 2).await;
    let _three = start_server(&ns, 3, 1).await;
    // Nine clients at once, each with its own connection and deadline.
    let calls: Vec<_> = (0..9)
        .map(|_| {
            let ns = ns.clone();
            tokio::spawn(async move {
                let client = tarpc_client(&ns, 1).await;
                client
                    .process(deadline_in(Duration::from_secs(2)), hello())
                    .await
            })
        })
        .collect();
    for call in calls {
        match call.await.unwrap() {
            Ok(Err(ChainError::HopUnreachable { hop, from, reason })) => {
                assert_eq!(
                    (hop.as_str(), from.as_str()),
                    ("example.chainTopology.2", "example.chainTopology.1"),
                    "{reason}"
                );
                assert!(reason.contains("deadline"), "{reason}");
            }
            other => panic!("expected hop 2 to be named, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_ring_keeps_working_after_its_name_server_restarts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ns_addr = listener.local_addr().unwrap();
    let (stop_ns, ns_stopped) = oneshot::channel::<()>();
    let first_ns = tokio::spawn(rpc_naming::server::serve(listener, 100, async {
        let _ = ns_stopped.await;
    }));
    let ns = NameServerClient::connect(&ns_addr.to_string())
        .await
        .unwrap();
    let mut ring = start_ring(&ns, 3).await;
    let client = connect(&ns, 1).await.unwrap();
    assert_eq!(send(&client, 1, hello()).await.unwrap().len(), 4);

    // Server 2 stops, and the name server goes and comes back empty on the
    // same address; server 2 starts again elsewhere under the new one.
    ring.remove(1).stop().await.unwrap();
    let _ = stop_ns.send(());
    first_ns.await.unwrap();
    let listener = TcpListener::bind(ns_addr).await.unwrap();
    tokio::spawn(rpc_naming::server::serve(
        listener,
        100,
        std::future::pending(),
    ));
    let _two = start_server(&ns, 2, 3).await;

    // Servers 1 and 3 register again through their heartbeats (bounded
    // wait), and server 1 finds the new server 2 through the new name server.
    for polls in 0.. {
        if ns.list(Some("example.chainTopology.")).await.unwrap().len() == 3 {
            break;
        }
        assert!(polls < 100, "the ring did not register again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = send(&client, 1, hello()).await.unwrap();
    assert_eq!(status, [finished(1), finished(2), finished(3), returned(1)]);
    drop(ring);
}
