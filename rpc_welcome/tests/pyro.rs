//! The chapter's Python programs (`tests/python`, run by the real Pyro4
//! 4.82 from the pinned test environment) and this crate's binaries, mixed
//! every way: either name server, either server, either client.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use test_support::TestNameServer;
use test_support::child::{KillOnDrop, line_with, spawn_lines, stdout_of};
use test_support::python::{assert_alike, case_lines, pyro4_script};

const TITLE: &str = "Programming GO";
const BOUGHT: &str = "Buku dengan judul Programming GO berhasil dibeli!";

fn python_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python"))
}

fn rust_server(ns: &TestNameServer) -> KillOnDrop {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rpc_welcome"));
    command
        .args(["server", "--ns", &ns.addr()])
        .envs(ns.peer_env());
    let (process, lines) = spawn_lines(command).unwrap();
    line_with(&lines, &["Ready. Object uri = PYRO:server@127.0.0.1:"]);
    process
}

fn python_server(ns: &TestNameServer) -> KillOnDrop {
    let (process, lines) = spawn_lines(pyro4_script(python_dir(), "pyro_server.py", ns)).unwrap();
    line_with(&lines, &["Ready. Object uri = PYRO:obj_"]);
    process
}

/// `pyro_client.py`, answering its prompt with `title`.
fn python_client(ns: &TestNameServer, title: &str) -> Output {
    python_client_with(ns, title, &ns.peer_env())
}

/// [`python_client`] with the Pyro4 settings `env` instead of those the
/// name server gives its peers.
fn python_client_with(ns: &TestNameServer, title: &str, env: &[(&str, String)]) -> Output {
    let mut command = pyro4_script(python_dir(), "pyro_client.py", ns);
    for (key, _) in ns.peer_env() {
        command.env_remove(key);
    }
    let mut child = command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{title}").unwrap();
    child.wait_with_output().unwrap()
}

fn rust_client(ns: &TestNameServer, title: &str) -> Output {
    rust_client_with(ns, title, &ns.peer_env())
}

/// [`rust_client`] with the Pyro4 settings `env`.
fn rust_client_with(ns: &TestNameServer, title: &str, env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpc_welcome"))
        .args(["client", "--ns", &ns.addr(), "--title", title])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// Both clients buy from `server` through `ns`.
fn both_clients_buy(ns: &TestNameServer) {
    assert_eq!(
        stdout_of(&python_client(ns, TITLE)),
        format!("Mau beli buku dengan judul apa? {BOUGHT}\n")
    );
    assert_eq!(stdout_of(&rust_client(ns, TITLE)), format!("{BOUGHT}\n"));
}

#[test]
fn rust_name_server_and_rust_server() {
    let ns = TestNameServer::rust();
    let _server = rust_server(&ns);
    both_clients_buy(&ns);
}

#[test]
fn rust_name_server_and_python_server() {
    let ns = TestNameServer::rust();
    let _server = python_server(&ns);
    both_clients_buy(&ns);
}

#[test]
fn python_name_server_and_python_server() {
    let ns = TestNameServer::python();
    let _server = python_server(&ns);
    both_clients_buy(&ns);
}

#[test]
fn python_name_server_and_rust_server() {
    let ns = TestNameServer::python();
    let mut server = rust_server(&ns);
    both_clients_buy(&ns);
    // A stopping server removes its name from Python's name server too
    // (which has no leases).
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.child().wait().unwrap().success());
    let err = rust_client(&ns, TITLE);
    assert!(!err.status.success());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains("unknown name: server"), "{stderr}");
}

/// Over TLS (Pyro4's SSL, client certificates required) on every side,
/// every pairing works as in plain text: either name server, either
/// server, either client.
#[test]
fn over_tls_every_name_server_server_and_client_pair_up() {
    for ns in [TestNameServer::rust_tls(), TestNameServer::python_tls()] {
        {
            let _server = rust_server(&ns);
            both_clients_buy(&ns);
        }
        let _server = python_server(&ns);
        both_clients_buy(&ns);
    }
}

/// The differential script over TLS, against Python's server and the Rust
/// one under the Rust name server: every outcome alike.
#[test]
fn a_python_client_cannot_tell_the_servers_apart_over_tls() {
    servers_alike(&TestNameServer::rust_tls());
}

/// On a name server and a server that require client certificates, a
/// client without one, or with a CA that did not sign the server's, is
/// refused before any call, Python's and Rust's alike; a plain-text client
/// is told the server may want TLS.
#[test]
fn over_tls_clients_without_a_certificate_or_tls_are_refused() {
    for ns in [TestNameServer::rust_tls(), TestNameServer::python_tls()] {
        let _server = rust_server(&ns);
        let certs = ns.certs().unwrap();
        let without_certificate: Vec<(&str, String)> = ns
            .peer_env()
            .into_iter()
            .filter(|(key, _)| !key.starts_with("PYRO_SSL_CLIENT"))
            .collect();
        let refused = rust_client_with(&ns, TITLE, &without_certificate);
        assert_refused(&refused, "refused the connection's client certificate");
        let python = python_client_with(&ns, TITLE, &without_certificate);
        let stderr = String::from_utf8_lossy(&python.stderr);
        assert!(
            stderr.contains("NamingError: Failed to locate the nameserver"),
            "{stderr}"
        );

        let mut other_ca = ns.peer_env();
        other_ca.push(("PYRO_SSL_CACERTS", certs.file("other-ca.pem")));
        let refused = rust_client_with(&ns, TITLE, &other_ca);
        assert_refused(&refused, "not signed by a CA we trust");

        let refused = rust_client_with(&ns, TITLE, &[("PYRO_SSL", "0".into())]);
        assert_refused(&refused, "does it require TLS?");
        // And everyone with the settings is still served.
        both_clients_buy(&ns);
    }
}

fn assert_refused(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

/// `rpc_welcome client --correlation-id` makes its call carry that id, as
/// Pyro4's `current_context.correlation_id` does; without it, a new one
/// each time.
#[test]
fn the_rust_client_sends_the_correlation_id_it_is_given() {
    let ns = TestNameServer::rust();
    let (_server, lines) =
        spawn_lines(pyro4_script(python_dir(), "traced_server.py", &ns)).unwrap();
    line_with(&lines, &["Ready. Object uri = PYRO:obj_"]);
    let id = "3e0f6a1c-58b2-4d7e-9c41-7a2b9d0e5f11";
    let bought = Command::new(env!("CARGO_BIN_EXE_rpc_welcome"))
        .args([
            "client",
            "--ns",
            &ns.addr(),
            "--title",
            TITLE,
            "--correlation-id",
            id,
        ])
        .output()
        .unwrap();
    assert_eq!(stdout_of(&bought), format!("{BOUGHT}\n"));
    assert_eq!(
        line_with(&lines, &["correlation "]),
        format!("correlation {id}")
    );
    let (first, second) = (rust_client(&ns, TITLE), rust_client(&ns, TITLE));
    assert!(first.status.success() && second.status.success());
    let (first, second) = (
        line_with(&lines, &["correlation "]),
        line_with(&lines, &["correlation "]),
    );
    assert_ne!(first, second, "a new id each time");
}

#[test]
fn an_unknown_name_is_pyro4s_naming_error_in_python_and_a_clear_error_in_rust() {
    for ns in [TestNameServer::rust(), TestNameServer::python()] {
        let python = python_client(&ns, TITLE);
        assert!(!python.status.success());
        let stderr = String::from_utf8_lossy(&python.stderr);
        assert!(
            stderr.contains("Pyro4.errors.NamingError: unknown name: server"),
            "{stderr}"
        );

        let rust = rust_client(&ns, TITLE);
        assert!(!rust.status.success());
        let stderr = String::from_utf8_lossy(&rust.stderr);
        assert_eq!(stderr.trim_end(), "error: unknown name: server");
    }
}

#[test]
fn a_crashed_rust_servers_name_on_pythons_name_server_is_taken_over_by_its_successor() {
    let ns = TestNameServer::python();
    // SIGKILL: no clean stop, so the name stays (Python's name server has
    // no leases) and leads where nothing answers.
    drop(rust_server(&ns));
    let stale = rust_client(&ns, TITLE);
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(
        stderr.contains("nothing answers there") && stderr.contains("stays until removed"),
        "{stderr}"
    );
    // The next server takes the name over instead of refusing to start.
    let _successor = rust_server(&ns);
    both_clients_buy(&ns);
    // While it lives, a second one is refused.
    let second = Command::new(env!("CARGO_BIN_EXE_rpc_welcome"))
        .args(["server", "--ns", &ns.addr()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("server is already registered by a live server"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_talks_to_rust_over_tarpc_and_to_python_over_pyro4_under_pythons_name_server() {
    use rpc_welcome::Connection;

    let ns_server = tokio::task::block_in_place(TestNameServer::python);
    let ns = rpc_naming::NameServerClient::connect(&ns_server.addr())
        .await
        .unwrap();
    assert!(ns.is_pyro());
    let rust = tokio::task::block_in_place(|| rust_server(&ns_server));
    // Python's name server hands out a Pyro URI; the server's handshake
    // says it speaks tarpc too.
    let connection = rpc_welcome::connect(&ns, "server").await.unwrap();
    assert!(matches!(connection, Connection::Tarpc(_)), "{connection:?}");
    assert_eq!(
        rpc_welcome::buy(&connection, "server", TITLE)
            .await
            .unwrap(),
        BOUGHT
    );
    drop(rust);
    let _python = tokio::task::block_in_place(|| python_server(&ns_server));
    let connection = rpc_welcome::connect(&ns, "server").await.unwrap();
    assert!(matches!(connection, Connection::Pyro(_)), "{connection:?}");
    assert_eq!(
        rpc_welcome::buy(&connection, "server", TITLE)
            .await
            .unwrap(),
        BOUGHT
    );
}

/// Runs `differential.py` (one line per case: a value, or an exception's
/// type and message) against whatever is registered as `server`.
fn differential(ns: &TestNameServer) -> Vec<String> {
    case_lines(&mut pyro4_script(python_dir(), "differential.py", ns))
}

/// One script of calls, run against Python's `pyro_server.py` and then
/// against the Rust server under the same name server: every case has the
/// same outcome, value or exception type and message (a title that is no
/// string is the chapter's own `TypeError` from `"..." + name`; wrong
/// arguments are Python's `TypeError`s word for word; the proxy sees the
/// same methods, with nothing of the Rust plumbing).
#[test]
fn a_python_client_cannot_tell_the_servers_apart() {
    servers_alike(&TestNameServer::python());
}

/// [`differential`] against Python's server, then the Rust one, under
/// `ns`: every outcome alike.
fn servers_alike(ns: &TestNameServer) {
    let python = {
        let _server = python_server(ns);
        differential(ns)
    };
    let rust = {
        let _server = rust_server(ns);
        differential(ns)
    };
    assert_alike(&python, &rust, 20);
}

/// A TCP port nothing listens on for a moment (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pyro4's own programs under `ns`, with the Rust welcome server
/// registered: `python -m Pyro4.test.echoserver -n` and a client of it
/// found through the name server, and `python -m Pyro4.utils.httpgateway`
/// listing the names (its home page looks them up in a batch) and calling
/// both servers. One line per case.
fn pyro4s_programs(ns: &TestNameServer) -> Vec<String> {
    let _server = rust_server(ns);
    let mut echo = pyro4_script(python_dir(), "-m", ns);
    echo.args(["Pyro4.test.echoserver", "-n"]);
    let (_echo, lines) = spawn_lines(echo).unwrap();
    line_with(&lines, &["echoserver running."]);
    let port = free_port().to_string();
    let mut gateway = pyro4_script(python_dir(), "-W", ns);
    gateway.args(["ignore", "-m", "Pyro4.utils.httpgateway", "-H", "127.0.0.1"]);
    gateway.args(["-p", &port, "-e", r"server|test\."]);
    let (_gateway, lines) = spawn_lines(gateway).unwrap();
    line_with(&lines, &["Pyro HTTP gateway running on"]);
    case_lines(
        pyro4_script(python_dir(), "pyro4_programs.py", ns).arg(format!("http://127.0.0.1:{port}")),
    )
}

/// Pyro4's own programs (its echo server, its HTTP gateway) work against
/// the Rust name server exactly as against Python's.
#[test]
fn pyro4s_own_programs_work_against_the_rust_name_server() {
    let python = pyro4s_programs(&TestNameServer::python());
    let rust = pyro4s_programs(&TestNameServer::rust());
    assert!(python[6].contains("Buku dengan judul Go"), "{python:#?}");
    assert_alike(&python, &rust, 9);
}
