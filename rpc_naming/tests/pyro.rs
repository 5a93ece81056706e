//! The name server and its commands against Pyro4 4.82 itself: Python's
//! `nsc` against this name server, this crate's commands against Python's
//! name server, and hostile Pyro4 frames.

use std::process::{Command, Output};
use std::time::Duration;

use num_bigint::BigInt;
use pyro4_wire::io::{read_message, write_message};
use pyro4_wire::message::{FLAG_EXCEPTION, FLAG_META_ON_CONNECT};
use pyro4_wire::serpent::{self, Value};
use pyro4_wire::{Message, MessageType, Proxy, PyroUri};
use rpc_naming::NameServerClient;
use test_support::child::stdout_of;
use test_support::{NameServerKind, TestNameServer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn nsc(ns: &TestNameServer, args: &[&str]) -> String {
    let output = Command::new(test_support::python::python())
        .args(["-m", "Pyro4.nsc"])
        .args(args)
        .env("PYRO_NS_PORT", ns.port().to_string())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn rpc_naming(ns: &TestNameServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpc_naming"))
        .args(args)
        .args(["--ns", &ns.addr()])
        .output()
        .unwrap()
}

#[test]
fn python_nsc_against_this_name_server() {
    let ns = TestNameServer::rust();
    assert_eq!(nsc(&ns, &["ping"]), "Name server ping ok.\n");
    assert_eq!(
        nsc(&ns, &["register", "buku", "PYRO:obj_1@localhost:5555"]),
        "Registered buku\n"
    );
    // A registration of this crate's, with a lease, is a Pyro URI to Python.
    stdout_of(&rpc_naming(&ns, &["register", "rak", "127.0.0.1:4000"]));
    assert_eq!(
        nsc(&ns, &["list"]),
        format!(
            "--------START LIST \n\
             Pyro.NameServer --> PYRO:Pyro.NameServer@{}\n    \
             metadata: ['class:Pyro4.naming.NameServer']\n\
             buku --> PYRO:obj_1@localhost:5555\n\
             rak --> PYRO:rak@127.0.0.1:4000\n\
             --------END LIST \n",
            ns.addr()
        )
    );
    assert_eq!(nsc(&ns, &["lookup", "rak"]), "PYRO:rak@127.0.0.1:4000\n");
    // And what Python registered is seen here.
    assert_eq!(
        stdout_of(&rpc_naming(&ns, &["list", "--regex", "[a-z]"])),
        "buku --> PYRO:obj_1@localhost:5555\nrak --> 127.0.0.1:4000\n"
    );
    assert_eq!(
        stdout_of(&rpc_naming(&ns, &["lookup", "buku"])),
        "PYRO:obj_1@localhost:5555\n"
    );
    assert_eq!(nsc(&ns, &["remove", "buku"]), "Removed buku\n");
    assert_eq!(nsc(&ns, &["remove", "buku"]), "Nothing removed\n");
    let unknown = nsc(&ns, &["lookup", "buku"]);
    assert_eq!(unknown, "Error: NamingError - unknown name: buku\n");
    assert_eq!(
        nsc(&ns, &["listmatching", "r.k"]),
        "--------START LIST - regex 'r.k'\nrak --> PYRO:rak@127.0.0.1:4000\n--------END LIST - regex 'r.k'\n"
    );
}

#[test]
fn this_crates_commands_against_pythons_name_server() {
    let ns = TestNameServer::python();
    assert_eq!(
        stdout_of(&rpc_naming(&ns, &["ping"])),
        "Name server ping ok.\n"
    );
    stdout_of(&rpc_naming(&ns, &["register", "rak", "127.0.0.1:4000"]));
    stdout_of(&rpc_naming(
        &ns,
        &["register", "buku", "PYRO:obj_1@localhost:5555"],
    ));
    let listed = stdout_of(&rpc_naming(&ns, &["list"]));
    let port = ns.port();
    assert_eq!(
        listed,
        format!(
            "Pyro.NameServer --> PYRO:Pyro.NameServer@localhost:{port}\n\
             buku --> PYRO:obj_1@localhost:5555\n\
             rak --> PYRO:rak@127.0.0.1:4000\n"
        )
    );
    assert_eq!(
        stdout_of(&rpc_naming(&ns, &["lookup", "rak"])),
        "PYRO:rak@127.0.0.1:4000\n"
    );
    // What this crate registered, Python's nsc sees.
    assert!(nsc(&ns, &["list"]).contains("rak --> PYRO:rak@127.0.0.1:4000\n"));
    assert_eq!(stdout_of(&rpc_naming(&ns, &["remove", "buku"])), "1\n");
    assert_eq!(stdout_of(&rpc_naming(&ns, &["remove", "buku"])), "0\n");
    let unknown = rpc_naming(&ns, &["lookup", "buku"]);
    assert!(!unknown.status.success());
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "error: unknown name: buku\n"
    );
    let safe = rpc_naming(&ns, &["register", "--safe", "rak", "127.0.0.1:4001"]);
    assert_eq!(
        String::from_utf8_lossy(&safe.stderr),
        "error: name already registered: rak\n"
    );
}

#[test]
fn the_bench_measures_either_name_server_and_leaves_it_as_it_was() {
    for ns in [TestNameServer::python(), TestNameServer::rust()] {
        let before = nsc(&ns, &["list"]);
        let report = stdout_of(&rpc_naming(&ns, &["bench", "--lookups", "300"]));
        let protocol = match ns.kind {
            NameServerKind::Python(_) => "(Pyro4)",
            NameServerKind::Rust(_) => "(tarpc)",
        };
        for line in [
            "lookup, sequential:",
            "raw TCP ping-pong, 64 bytes:",
            "lookup, concurrency 32:",
            "lookup over Pyro4, sequential:",
        ] {
            let found = report.lines().find(|l| l.starts_with(line));
            let found = found.unwrap_or_else(|| panic!("no {line:?} in {report}"));
            assert!(found.contains("(300 in"), "{found}");
            if line.starts_with("lookup,") {
                assert!(found.ends_with(protocol), "{found}");
            }
        }
        assert!(report.contains("ratio sequential/raw: "), "{report}");
        // Its name was registered for the run and removed after.
        assert_eq!(nsc(&ns, &["list"]), before);
    }
    // Without --ns it measures a name server of its own.
    let own = Command::new(env!("CARGO_BIN_EXE_rpc_naming"))
        .args(["bench", "--lookups", "300"])
        .env_remove("RPC_NAMESERVER")
        .output()
        .unwrap();
    assert!(stdout_of(&own).contains("(tarpc)"));
}

/// A Pyro4 message with an arbitrary header: what a broken or hostile peer
/// could send.
fn raw_header(
    magic: &[u8; 4],
    version: u16,
    kind: u16,
    payload_len: i32,
    checksum: u16,
) -> Vec<u8> {
    let mut out = magic.to_vec();
    for field in [version, kind, 0, 0] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out.extend_from_slice(&payload_len.to_be_bytes());
    for field in [1u16, 0, 0, checksum] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out
}

fn checksum(kind: u16, version: u16, payload_len: i32) -> u16 {
    let sum = [
        u32::from(kind),
        u32::from(version),
        payload_len as u32,
        1,
        0x34E9,
    ]
    .into_iter()
    .fold(0u32, u32::wrapping_add);
    (sum & 0xFFFF) as u16
}

/// A connection that has made the handshake with `Pyro.NameServer`.
async fn connected(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let hello = Value::Dict(vec![
        (Value::str("handshake"), Value::str("hello")),
        (Value::str("object"), Value::str("Pyro.NameServer")),
    ]);
    let mut connect = Message::new(MessageType::Connect, 0, serpent::dumps(&hello));
    connect.flags = FLAG_META_ON_CONNECT;
    write_message(&mut stream, &connect).await.unwrap();
    let answer = read_message(&mut stream, 1 << 20).await.unwrap().unwrap();
    assert_eq!(answer.kind, MessageType::ConnectOk);
    stream
}

/// What the server did with `bytes` sent after the handshake: replied
/// (with an exception flag or not), or closed the connection.
async fn answer_to(addr: &str, bytes: &[u8]) -> Option<Message> {
    let mut stream = connected(addr).await;
    stream.write_all(bytes).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(15), read_message(&mut stream, 1 << 20));
    read.await
        .expect("the server neither answered nor closed")
        .ok()
        .flatten()
}

fn invoke(payload: Vec<u8>, serializer: u16) -> Vec<u8> {
    let mut message = Message::new(MessageType::Invoke, 1, payload);
    message.serializer = serializer;
    message.encode()
}

/// The name server still answers a proper client.
async fn still_serving(addr: &str) {
    still_serving_with(addr, 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_an_error_or_a_closed_connection_and_the_server_serves_on() {
    let ns = TestNameServer::rust();
    let addr = ns.addr();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let escapes = r#"('\\ \' \" \n \r \t \x00 \u00e9 \U0001F600 \a \b \f \v \0 \N{DASH}',)"#;
    let huge = format!("('Pyro.NameServer','lookup',({},),{{}})", "9".repeat(5_000));
    let not_literal = "('Pyro.NameServer','lookup',(__import__('os').system('true'),),{})";
    let closing: Vec<(&str, Vec<u8>)> = vec![
        (
            "bad magic",
            raw_header(b"PYRX", 48, 4, 0, checksum(4, 48, 0)),
        ),
        (
            "wrong version",
            raw_header(b"PYRO", 502, 4, 0, checksum(4, 502, 0)),
        ),
        ("bad checksum", raw_header(b"PYRO", 48, 4, 0, 1)),
        (
            "over the frame limit",
            raw_header(b"PYRO", 48, 4, 1 << 30, checksum(4, 48, 1 << 30)),
        ),
        (
            "just over the 1 MiB request limit",
            raw_header(b"PYRO", 48, 4, 1 << 20, checksum(4, 48, 1 << 20)),
        ),
        (
            "negative length",
            raw_header(b"PYRO", 48, 4, -5, checksum(4, 48, -5)),
        ),
        (
            "unknown type",
            raw_header(b"PYRO", 48, 99, 0, checksum(99, 48, 0)),
        ),
        (
            "a RESULT from a client",
            raw_header(b"PYRO", 48, 5, 0, checksum(5, 48, 0)),
        ),
    ];
    for (what, bytes) in closing {
        let answer = answer_to(&addr, &bytes).await;
        assert!(answer.is_none(), "{what}: {answer:?}");
        still_serving(&addr).await;
    }
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("not a literal", invoke(not_literal.into(), 1)),
        ("nested 100,000 deep", invoke(deep.clone().into_bytes(), 1)),
        ("nested 100,000 deep in JSON", invoke(deep.into_bytes(), 2)),
        ("escapes, not a call", invoke(escapes.into(), 1)),
        ("a huge integer for a name", invoke(huge.into_bytes(), 1)),
        ("pickle", invoke(b"\x80\x04K\x01.".to_vec(), 4)),
        ("marshal", invoke(b"i\x01\x00\x00\x00".to_vec(), 3)),
        ("not UTF-8", invoke(b"\xff\xfe('a',".to_vec(), 1)),
    ];
    for (what, bytes) in refused {
        let answer = answer_to(&addr, &bytes).await.expect(what);
        assert_eq!(answer.kind, MessageType::Result, "{what}");
        assert_ne!(answer.flags & FLAG_EXCEPTION, 0, "{what}");
        still_serving(&addr).await;
    }
    // A truncated frame: the header promises more than ever comes; the
    // connection is closed after the frame timeout.
    let mut truncated = raw_header(b"PYRO", 48, 4, 100, checksum(4, 48, 100));
    truncated.extend_from_slice(b"# serpent");
    assert!(answer_to(&addr, &truncated).await.is_none());
    still_serving(&addr).await;
}

#[tokio::test]
async fn huge_integers_and_every_escape_survive_a_round_trip() {
    let ns = TestNameServer::rust();
    let addr = ns.addr();
    let mut stream = connected(&addr).await;
    // A lookup of a name needing every escape form: the unknown-name error
    // names it exactly.
    let name = "a\\b'c\"d\ne\tf\u{e9}\u{1F600}";
    let call = Value::Tuple(vec![
        Value::str("Pyro.NameServer"),
        Value::str("lookup"),
        Value::Tuple(vec![Value::str(name)]),
        Value::Dict(vec![]),
    ]);
    write_message(
        &mut stream,
        &Message::new(MessageType::Invoke, 1, serpent::dumps(&call)),
    )
    .await
    .unwrap();
    let answer = read_message(&mut stream, 1 << 20).await.unwrap().unwrap();
    assert_ne!(answer.flags & FLAG_EXCEPTION, 0);
    let exception =
        pyro4_wire::PyroException::from_value(&serpent::loads(&answer.payload).unwrap());
    assert_eq!(exception.class, "Pyro4.errors.NamingError");
    assert_eq!(exception.message, format!("unknown name: {name}"));
    // A huge integer where a flag goes is read (and is true).
    let big: BigInt = "1".repeat(1_000).parse().unwrap();
    let call = Value::Tuple(vec![
        Value::str("Pyro.NameServer"),
        Value::str("list"),
        Value::Tuple(vec![Value::str("nothing-here")]),
        Value::Dict(vec![(Value::str("return_metadata"), Value::Int(big))]),
    ]);
    write_message(
        &mut stream,
        &Message::new(MessageType::Invoke, 2, serpent::dumps(&call)),
    )
    .await
    .unwrap();
    let answer = read_message(&mut stream, 1 << 20).await.unwrap().unwrap();
    assert_eq!(
        (answer.kind, answer.seq, answer.flags),
        (MessageType::Result, 2, 0)
    );
    assert_eq!(
        serpent::loads(&answer.payload).unwrap(),
        Value::Dict(vec![])
    );
}

/// A Pyro4 client that finds the server full of silent connections takes
/// the place of the one silent longest, first time.
#[tokio::test]
async fn a_pyro4_client_finding_the_server_full_takes_the_place_of_a_silent_one() {
    let ns = TestNameServer::rust();
    let addr = ns.addr();
    let mut hogs = Vec::new();
    for _ in 0..rpc_transport::MAX_CONNECTIONS {
        hogs.push(TcpStream::connect(&addr).await.unwrap());
    }
    let uri = PyroUri::parse(&format!("PYRO:Pyro.NameServer@{addr}")).unwrap();
    let mut proxy = Proxy::connect(&uri).await.unwrap();
    proxy.call("ping", vec![], vec![]).await.unwrap();
    drop(hogs);
}

/// Python's proxies keep their connection for life and do not reconnect
/// when it is closed under them (a Python ring server holds one to its next
/// hop): a Pyro4 connection is not closed for being idle, as tarpc's are.
#[tokio::test(start_paused = true)]
async fn a_pyro4_connection_outlives_the_idle_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(rpc_naming::server::serve(
        listener,
        100,
        std::future::pending(),
    ));
    let uri = PyroUri::parse(&format!("PYRO:Pyro.NameServer@127.0.0.1:{port}")).unwrap();
    let mut proxy = Proxy::connect(&uri).await.unwrap();
    proxy.call("ping", vec![], vec![]).await.unwrap();
    let idle = rpc_transport::accept_config("name server").idle_timeout;
    tokio::time::sleep(idle * 3).await;
    proxy.call("ping", vec![], vec![]).await.unwrap();
}

/// A Pyro4 client that sends requests and never reads the replies stalls
/// only itself: the server stops reading it once its replies back up, and
/// closes it once a reply has waited 10 s to be taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pyro4_client_that_never_reads_is_closed() {
    use tokio::io::AsyncReadExt;

    let ns = TestNameServer::rust();
    let addr = ns.addr();
    let names = NameServerClient::connect(&addr).await.unwrap();
    for i in 0..500 {
        let name = format!("{}{i:03}", "n".repeat(190));
        names
            .register(
                &name,
                std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
                false,
            )
            .await
            .unwrap();
    }
    let mut stream = connected(&addr).await;
    // Each listing is about 150 KB: 200 of them is far more than the
    // sockets' buffers hold.
    let call = Value::Tuple(vec![
        Value::str("Pyro.NameServer"),
        Value::str("list"),
        Value::Tuple(vec![]),
        Value::Dict(vec![]),
    ]);
    let request = Message::new(MessageType::Invoke, 1, serpent::dumps(&call)).encode();
    let mut sent = 0;
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_secs(2), stream.write_all(&request)).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    assert!(sent > 1, "sent {sent}");
    // The server gives up on the stalled reply and closes the connection;
    // with our requests left unread there, that is a reset, which fails the
    // next write: wait for it (bounded), not for a time.
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        while stream.write_all(&request).await.is_ok() {}
    })
    .await;
    assert!(closed.is_ok(), "the connection was still open after 60 s");
    let mut rest = Vec::new();
    let drained =
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(drained, Ok(Ok(_)) | Ok(Err(_))),
        "the connection was still open after {} bytes",
        rest.len()
    );
    still_serving_with(&addr, 500).await;
}

/// The name server still answers a proper client, holding `names` names
/// besides its own.
async fn still_serving_with(addr: &str, names: usize) {
    let uri = PyroUri::parse(&format!("PYRO:Pyro.NameServer@{addr}")).unwrap();
    let mut proxy = Proxy::connect(&uri).await.unwrap();
    let count = proxy.call("count", vec![], vec![]).await.unwrap();
    assert_eq!(count, Value::Int((names + 1).into()));
}

/// Idle Pyro4 connections are kept (see above), so a server full of them
/// makes room: a newcomer closes the least recently active one and takes
/// its place, first time; the recently active ones keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_closes_its_least_recently_active_pyro4_connection() {
    let ns = TestNameServer::rust();
    let uri = PyroUri::parse(&format!("PYRO:Pyro.NameServer@{}", ns.addr())).unwrap();
    let mut proxies = Vec::new();
    for _ in 0..rpc_transport::MAX_CONNECTIONS {
        proxies.push(Proxy::connect(&uri).await.unwrap());
    }
    // The first made a request since: the second is now idle longest.
    proxies[0].call("ping", vec![], vec![]).await.unwrap();
    let mut newcomer = Proxy::connect(&uri).await.unwrap();
    newcomer.call("ping", vec![], vec![]).await.unwrap();
    assert!(
        proxies[1].call("ping", vec![], vec![]).await.is_err(),
        "the connection idle longest was closed"
    );
    proxies[0].call("ping", vec![], vec![]).await.unwrap();
    proxies[2].call("ping", vec![], vec![]).await.unwrap();
}

/// A port nothing listens on for a moment (bound, then let go).
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// Runs `differential.py` against the name server answering broadcasts on
/// UDP `bcport`, with `env` (Pyro4 settings): one line per case.
fn differential(bcport: u16, env: &[(&str, String)]) -> Vec<String> {
    test_support::python::case_lines(
        Command::new(test_support::python::python())
            .arg("differential.py")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python"))
            // The local try first fails: nothing listens on this port.
            .env("PYRO_NS_PORT", free_port(false).to_string())
            .env("PYRO_NS_BCPORT", bcport.to_string())
            .env("PYRO_BROADCAST_ADDRS", "127.0.0.1")
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}

/// One script of calls, run against Python's name server and against this
/// one, each found by `Pyro4.locateNS()`'s broadcast: itself registered as
/// `Pyro.NameServer` (listed, counted, looked up, never removed), metadata
/// (register, set, look up, search all/any, `nsc yplookup_*` / `setmeta`),
/// and Python's errors for bad arguments; every outcome alike.
#[test]
fn a_python_program_cannot_tell_the_name_servers_apart() {
    name_servers_alike(&[]);
}

/// The same script over TLS: both name servers, and the script, with
/// Pyro4's SSL settings (client certificates required).
#[test]
fn a_python_program_cannot_tell_the_name_servers_apart_over_tls() {
    let certs = test_support::tls::TestCerts::make();
    name_servers_alike(&certs.pyro_env());
}

/// The same again with both keys encrypted (`PYRO_SSL_*KEYPASSWD`) and the
/// CA given as a hashed directory, as Python's `ssl` reads them; and this
/// crate's client, with those settings, against Python's name server.
#[test]
fn a_python_program_cannot_tell_the_name_servers_apart_with_encrypted_keys_and_a_ca_directory() {
    let certs = test_support::tls::TestCerts::make();
    let env = certs.pyro_env_encrypted();
    name_servers_alike(&env);

    let python = test_support::python::PythonNameServer::start(&env);
    let output = Command::new(env!("CARGO_BIN_EXE_rpc_naming"))
        .args(["list", "--ns", &python.addr()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let listed = test_support::child::stdout_of(&output);
    assert!(listed.contains("Pyro.NameServer"), "{listed}");
}

/// [`differential`] against Python's name server and this one, both
/// started with `env`: every outcome alike.
fn name_servers_alike(env: &[(&str, String)]) {
    use test_support::child::{line_with, spawn_lines};

    // Python's answers broadcasts only when it listens beyond loopback;
    // its broadcast socket stays on loopback.
    let bcport = free_port(true);
    let mut command = Command::new(test_support::python::python());
    command.args(["-u", "-m", "Pyro4.naming", "-n", "0.0.0.0", "-p"]);
    command.arg(free_port(false).to_string());
    command.args(["--bchost", "127.0.0.1", "--bcport", &bcport.to_string()]);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let python = {
        let (_server, lines) = spawn_lines(command).unwrap();
        line_with(&lines, &["NS running on"]);
        differential(bcport, env)
    };

    let bcport = free_port(true);
    let mut command = Command::new(env!("CARGO_BIN_EXE_rpc_naming"));
    command.args(["serve", "--addr", "127.0.0.1:0", "--broadcast"]);
    command.arg(bcport.to_string());
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let rust = {
        let (_server, lines) = spawn_lines(command).unwrap();
        let running = line_with(&lines, &["NS running on"]);
        assert_eq!(running.ends_with("(TLS)"), !env.is_empty(), "{running}");
        line_with(&lines, &["Broadcast server running on"]);
        differential(bcport, env)
    };
    test_support::python::assert_alike(&python, &rust, 33);
}

/// This crate's metadata commands (`setmeta`, `list --meta-all` /
/// `--meta-any`, `lookup` showing it) against Python's name server and
/// against this one: the same output, line for line.
#[test]
fn the_metadata_commands_answer_alike_on_either_name_server() {
    let session = |ns: &TestNameServer| -> Vec<String> {
        let run = |args: &[&str]| {
            let output = rpc_naming(ns, args);
            format!(
                "{args:?}: {} {}{}",
                output.status.success(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        };
        vec![
            run(&["register", "shop.books", "PYRO:obj_books@localhost:4000"]),
            run(&["register", "shop.pens", "PYRO:obj_pens@localhost:4001"]),
            run(&["setmeta", "shop.books", "kind:books", "city:malang"]),
            run(&["setmeta", "shop.pens", "kind:pens"]),
            run(&["lookup", "shop.books"]),
            run(&[
                "list",
                "--meta-all",
                "kind:books",
                "--meta-all",
                "city:malang",
            ]),
            run(&[
                "list",
                "--meta-any",
                "kind:pens",
                "--meta-any",
                "kind:books",
            ]),
            run(&["list", "--meta-all", "nope"]),
            run(&["setmeta", "shop.pens"]),
            run(&["lookup", "shop.pens"]),
            run(&["setmeta", "shop.none", "x"]),
        ]
    };
    let python = session(&TestNameServer::python());
    let rust = session(&TestNameServer::rust());
    assert!(
        python[6].contains("shop.books --> PYRO:obj_books@localhost:4000"),
        "{python:#?}"
    );
    test_support::python::assert_alike(&python, &rust, 11);
}
