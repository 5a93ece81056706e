//! Rings that mix the chapter's Python servers (`tests/python`, the real
//! Pyro4 4.82) with this crate's, under either name server, called by
//! either client; and Python hops that fail.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use rpc_chain::{ChainError, Connection, server_name};
use rpc_naming::NameServerClient;
use rpc_naming::client::deadline_in;
use test_support::TestNameServer;
use test_support::child::{KillOnDrop, line_with, spawn_lines, stdout_of};
use test_support::python::{assert_alike, case_lines, pyro4_script};

const STATUS: &str = "Status = ['Buku 1 sudah selesai di baca!', 'Buku 2 sudah selesai di baca!', \
                      'Buku 3 sudah selesai di baca!', 'Kembali ke buku 1']";

fn python_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python"))
}

/// A ring server of either language, and what it prints.
struct Hop {
    _process: KillOnDrop,
    lines: Receiver<String>,
}

fn rust_hop(ns: &TestNameServer, id: u32, next: u32) -> Hop {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rpc_chain"));
    command
        .args(["server", "--ns", &ns.addr()])
        .envs(ns.peer_env());
    command.args(["--id", &id.to_string(), "--next", &next.to_string()]);
    started(spawn_lines(command).unwrap(), id)
}

fn python_hop(ns: &TestNameServer, id: u32) -> Hop {
    let script = format!("server_chain_{id}.py");
    started(
        spawn_lines(pyro4_script(python_dir(), &script, ns)).unwrap(),
        id,
    )
}

fn started((process, lines): (KillOnDrop, Receiver<String>), id: u32) -> Hop {
    line_with(&lines, &[&format!("Buku {id} mulai dibaca")]);
    Hop {
        _process: process,
        lines,
    }
}

/// A ring of three with the given languages (true: Python).
fn ring(ns: &TestNameServer, python: [bool; 3]) -> Vec<Hop> {
    (1..=3)
        .map(|id| match python[id as usize - 1] {
            true => python_hop(ns, id),
            false => rust_hop(ns, id, id % 3 + 1),
        })
        .collect()
}

fn python_client(ns: &TestNameServer) -> Output {
    pyro4_script(python_dir(), "client_chain.py", ns)
        .output()
        .unwrap()
}

fn rust_client(ns: &TestNameServer) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpc_chain"))
        .args(["client", "--ns", &ns.addr()])
        .envs(ns.peer_env())
        .output()
        .unwrap()
}

/// Both clients go round the ring; every server prints the chapter's lines.
fn both_clients_go_round(ns: &TestNameServer, hops: &[Hop]) {
    for output in [python_client(ns), rust_client(ns)] {
        assert_eq!(stdout_of(&output), format!("{STATUS}\n"));
        line_with(
            &hops[0].lines,
            &["Buku 1 sudah selesai di baca lanjutkan ke buku 2"],
        );
        line_with(
            &hops[1].lines,
            &["Buku 2 sudah selesai di baca lanjutkan ke buku 3"],
        );
        line_with(
            &hops[2].lines,
            &["Buku 3 sudah selesai di baca lanjutkan ke buku 1"],
        );
        line_with(
            &hops[0].lines,
            &["Kembali ke buku 1; Buku akan di ulang dari halaman 1"],
        );
    }
}

#[test]
fn rust_ring_with_a_python_server_2_under_the_rust_name_server() {
    let ns = TestNameServer::rust();
    let hops = ring(&ns, [false, true, false]);
    both_clients_go_round(&ns, &hops);
}

#[test]
fn rust_ring_with_a_python_server_2_under_the_python_name_server() {
    let ns = TestNameServer::python();
    let hops = ring(&ns, [false, true, false]);
    both_clients_go_round(&ns, &hops);
}

#[test]
fn python_ring_with_a_rust_server_2_under_the_rust_name_server() {
    let ns = TestNameServer::rust();
    let hops = ring(&ns, [true, false, true]);
    both_clients_go_round(&ns, &hops);
}

#[test]
fn python_ring_with_a_rust_server_2_under_the_python_name_server() {
    let ns = TestNameServer::python();
    let hops = ring(&ns, [true, false, true]);
    both_clients_go_round(&ns, &hops);
}

/// Ring server `id` of the chapter's Python, printing the correlation id of
/// each call it gets (`traced_chain.py`).
fn traced_python_hop(ns: &TestNameServer, id: u32) -> Hop {
    let mut command = pyro4_script(python_dir(), "traced_chain.py", ns);
    command.args([id.to_string(), (id % 3 + 1).to_string()]);
    started(spawn_lines(command).unwrap(), id)
}

/// The correlation id the next call to `hop` carried.
fn correlation_seen(hop: &Hop) -> String {
    line_with(&hop.lines, &["correlation "])
}

/// A client's correlation id goes round a mixed ring whole: every call to
/// a Python hop carries it, whoever called (a Python hop, a Rust hop called
/// over Pyro4, a Rust hop called over tarpc by another Rust hop), from
/// Python's client (`Pyro4.current_context.correlation_id`) and from the
/// Rust one (`--correlation-id`).
#[test]
fn a_clients_correlation_id_reaches_every_python_hop_of_a_mixed_ring() {
    let ns = TestNameServer::rust();
    for python in [
        [true, false, true],
        [false, true, false],
        [false, false, true],
    ] {
        let hops: Vec<Hop> = (1..=3)
            .map(|id| match python[id as usize - 1] {
                true => traced_python_hop(&ns, id),
                false => rust_hop(&ns, id, id % 3 + 1),
            })
            .collect();
        let ids = [
            "6f1c1c2e-8b0a-4a55-9d38-2c3b8c1f0a01",
            "0b7e4d52-3f61-4c1e-8a9b-5d2e6f7a8b02",
        ];
        let python_client = pyro4_script(python_dir(), "traced_client.py", &ns)
            .arg(ids[0])
            .output()
            .unwrap();
        assert_eq!(
            stdout_of(&python_client),
            format!("{STATUS}\n"),
            "{python:?}"
        );
        let rust_client = Command::new(env!("CARGO_BIN_EXE_rpc_chain"))
            .args(["client", "--ns", &ns.addr(), "--correlation-id", ids[1]])
            .output()
            .unwrap();
        assert_eq!(stdout_of(&rust_client), format!("{STATUS}\n"), "{python:?}");
        for id in ids {
            let expected = format!("correlation {id}");
            for (hop, is_python) in hops.iter().zip(python) {
                if !is_python {
                    continue;
                }
                assert_eq!(correlation_seen(hop), expected, "{python:?}");
            }
            // Hop 1 is called twice: at the start and by the last hop.
            if python[0] {
                assert_eq!(correlation_seen(&hops[0]), expected, "{python:?}");
            }
        }
    }
}

/// Mixed rings over TLS (Pyro4's SSL, client certificates required on
/// every hop): each hop's link to the next is TLS too, whatever language
/// either end is.
#[test]
fn mixed_rings_go_round_over_tls_under_either_name_server() {
    for ns in [TestNameServer::rust_tls(), TestNameServer::python_tls()] {
        for python in [[false, true, false], [true, false, true]] {
            let hops = ring(&ns, python);
            both_clients_go_round(&ns, &hops);
        }
    }
}

fn faulty_hop_2(ns: &TestNameServer, mode: &str) -> Hop {
    let mut command = pyro4_script(python_dir(), "faulty_chain.py", ns);
    command.arg(mode);
    started(spawn_lines(command).unwrap(), 2)
}

fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_owned()
}

#[test]
fn an_exception_in_a_python_hop_reaches_the_rust_client_with_its_type_and_message() {
    let ns = TestNameServer::rust();
    let _two = faulty_hop_2(&ns, "raise");
    let _three = rust_hop(&ns, 3, 1);
    {
        // Through a Rust server 1.
        let _one = rust_hop(&ns, 1, 2);
        assert_eq!(
            failure(&rust_client(&ns)),
            "error: example.chainTopology.2, called from example.chainTopology.1, \
             raised ValueError: halaman hilang"
        );
        // Python's client sees the exception Python raised.
        let python = failure(&python_client(&ns));
        assert!(python.ends_with("ValueError: halaman hilang"), "{python}");
    }
    // Through a Python server 1, which re-raises it.
    let _one = python_hop(&ns, 1);
    assert_eq!(
        failure(&rust_client(&ns)),
        "error: example.chainTopology.1 raised ValueError: halaman hilang"
    );
}

#[test]
fn a_dead_python_hop_is_named() {
    let ns = TestNameServer::rust();
    let _one = rust_hop(&ns, 1, 2);
    let _three = rust_hop(&ns, 3, 1);
    // Server 2 registers and dies; its Pyro4 registration stays.
    drop(python_hop(&ns, 2));
    let err = failure(&rust_client(&ns));
    assert!(
        err.starts_with(
            "error: example.chainTopology.2 cannot be reached from example.chainTopology.1: \
             example.chainTopology.2 is registered at PYRO:obj_"
        ) && err.contains("nothing answers there"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_python_hop_is_named_by_the_hop_before_it() {
    let ns_server = TestNameServer::rust();
    let _two = tokio::task::block_in_place(|| faulty_hop_2(&ns_server, "hang"));
    let _one = tokio::task::block_in_place(|| rust_hop(&ns_server, 1, 2));
    let ns = NameServerClient::connect(&ns_server.addr()).await.unwrap();
    let Connection::Tarpc(client) = rpc_chain::connect(&ns, 1).await.unwrap() else {
        panic!("server 1 is this crate's")
    };
    let ctx = deadline_in(Duration::from_secs(2));
    match client.process(ctx, vec!["hello".into()]).await {
        Ok(Err(ChainError::HopUnreachable { hop, from, reason })) => {
            assert_eq!((hop, from), (server_name(2), server_name(1)), "{reason}");
            assert!(reason.contains("deadline"), "{reason}");
        }
        other => panic!("expected hop 2 to be named, got {other:?}"),
    }
}

#[test]
fn a_rust_hops_error_reaches_the_python_client_as_a_pyro4_exception() {
    let ns = TestNameServer::rust();
    let _one = rust_hop(&ns, 1, 2);
    // No server 2: server 1 names it, and Python raises what it was sent.
    let err = failure(&python_client(&ns));
    assert!(
        err.ends_with(
            "Pyro4.errors.CommunicationError: example.chainTopology.2 cannot be reached \
             from example.chainTopology.1: unknown name: example.chainTopology.2"
        ),
        "{err}"
    );
}

/// Runs `differential.py` against whatever ring is registered: one line
/// per case.
fn differential(ns: &TestNameServer) -> Vec<String> {
    case_lines(&mut pyro4_script(python_dir(), "differential.py", ns))
}

/// One script of calls, against a ring of the chapter's Python servers and
/// against a ring of Rust ones under the same name server: every outcome
/// alike, value or exception type and message (the chapter's
/// `name in message` and `message.append` on a str, a tuple, a dict, an
/// int; Python's `TypeError`s for a wrong call; batches; marshal).
#[test]
fn a_python_client_cannot_tell_the_rings_apart() {
    rings_alike(&TestNameServer::python());
}

/// The same script over TLS, under Python's name server.
#[test]
fn a_python_client_cannot_tell_the_rings_apart_over_tls() {
    rings_alike(&TestNameServer::python_tls());
}

/// [`differential`] against a ring of Python servers, then of Rust ones,
/// under `ns`: every outcome alike.
fn rings_alike(ns: &TestNameServer) {
    let python = {
        let _ring = ring(ns, [true; 3]);
        differential(ns)
    };
    let rust = {
        let _ring = ring(ns, [false; 3]);
        differential(ns)
    };
    assert_alike(&python, &rust, 16);
}
