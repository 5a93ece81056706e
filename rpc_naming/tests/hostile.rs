//! The name server under hostile and unlucky clients: a full table listed,
//! invisible names, more connections than it serves, a frame that never
//! ends, a deadline no clock can hold, a reply over the frame limit.

use std::net::SocketAddr;
use std::time::Duration;

use rpc_naming::{Error, Location, NameServerClient, NamingError};
use rpc_transport::{MAX_CONNECTIONS, MAX_FRAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start_ns(max_names: usize) -> String {
    rpc_naming::server::spawn_local(max_names).await.unwrap()
}

fn sock(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_table_of_long_names_lists_whole() {
    const NAMES: usize = 10_000;
    let ns_addr = start_ns(NAMES).await;
    let ns = NameServerClient::connect(&ns_addr).await.unwrap();
    let name = |i: usize| {
        format!(
            "{}.{i:05}",
            "example.a-rather-long-registration-name".repeat(3)
        )
    };
    assert!(name(0).len() >= 120);
    for i in 0..NAMES {
        ns.register(&name(i), sock(1000), false).await.unwrap();
    }
    // 10,000 names of ~125 bytes: over 1 MiB in all, listed page by page.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rpc_naming"))
            .args(["list", "--ns", &ns_addr])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.len() > MAX_FRAME, "{} bytes", stdout.len());
    let lines: Vec<_> = stdout.lines().collect();
    // The name server's own entry first, then every name.
    assert_eq!(lines.len(), NAMES + 1);
    assert!(lines[0].starts_with("Pyro.NameServer --> "), "{}", lines[0]);
    assert_eq!(lines[1], format!("{} --> 127.0.0.1:1000", name(0)));
    assert_eq!(
        lines[NAMES],
        format!("{} --> 127.0.0.1:1000", name(NAMES - 1))
    );
    // A regex listing pages the same way.
    assert_eq!(ns.list_matching("example").await.unwrap().len(), NAMES);
}

#[tokio::test]
async fn invisible_and_format_characters_are_refused() {
    let ns = NameServerClient::connect(&start_ns(100).await)
        .await
        .unwrap();
    ns.register("server", sock(1), false).await.unwrap();
    for invisible in [
        '\u{200b}', '\u{202e}', '\u{feff}', '\u{2060}', '\u{0}', '\u{1b}',
    ] {
        let name = format!("ser{invisible}ver");
        match ns.register(&name, sock(2), false).await {
            Err(Error::Naming(NamingError::InvalidName { reason, .. })) => {
                assert!(reason.contains("is not allowed"), "{reason}")
            }
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    assert_eq!(
        ns.list(Some("ser")).await.unwrap(),
        [("server".to_owned(), Location::Rust(sock(1)))]
    );
}

/// A server full of connections that say nothing (more than it holds)
/// does not lock anyone out: a newcomer takes the place of the one silent
/// longest, and its ping is answered at once.
#[tokio::test]
async fn a_server_full_of_silent_connections_makes_room_for_a_newcomer() {
    let ns_addr = start_ns(100).await;
    let mut hogs = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 44 {
        hogs.push(TcpStream::connect(&ns_addr).await.unwrap());
    }
    newcomer_is_served(&ns_addr).await;
    // The first hog (silent longest) was closed to make room.
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), hogs[0].read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
}

/// The same with connections that each announce a 1 MiB frame and trickle
/// it: they never complete a request, so they are the least recently active.
#[tokio::test]
async fn a_server_full_of_trickling_frames_makes_room_for_a_newcomer() {
    let ns_addr = start_ns(100).await;
    let mut tricklers = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 44 {
        let mut trickler = TcpStream::connect(&ns_addr).await.unwrap();
        trickler
            .write_all(&(MAX_FRAME as u32).to_be_bytes())
            .await
            .unwrap();
        trickler.write_all(&[0; 10]).await.unwrap();
        tricklers.push(trickler);
    }
    newcomer_is_served(&ns_addr).await;
    drop(tricklers);
}

/// A new client connects and pings, first time.
async fn newcomer_is_served(ns_addr: &str) {
    let newcomer = NameServerClient::connect(ns_addr).await.unwrap();
    newcomer.ping().await.unwrap();
}

#[tokio::test]
async fn a_frame_begun_and_never_finished_is_dropped() {
    let ns_addr = start_ns(100).await;
    let mut raw = TcpStream::connect(&ns_addr).await.unwrap();
    // Announces a 1 MiB frame, sends 10 bytes of it, and stops.
    raw.write_all(&(MAX_FRAME as u32).to_be_bytes())
        .await
        .unwrap();
    raw.write_all(&[0u8; 10]).await.unwrap();
    let mut rest = Vec::new();
    // The frame timeout (10 s) closes it, well before the idle timeout
    // (60 s); the bound only keeps a broken server from hanging the suite.
    let closed = tokio::time::timeout(Duration::from_secs(40), raw.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    // Others were served meanwhile and still are.
    NameServerClient::connect(&ns_addr)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
}

/// One tarpc request frame for the name server's `ping`, with a deadline of
/// `secs` seconds, written by hand as tarpc's bincode lays it out.
fn ping_frame(secs: u64) -> Vec<u8> {
    let mut payload = vec![0u8]; // ClientMessage::Request
    payload.push(0xfd); // a varint u64 follows
    payload.extend(secs.to_le_bytes());
    payload.push(0); // nanos
    payload.extend([0u8; 16]); // trace id
    payload.extend([0, 0]); // span id, sampling decision
    payload.push(1); // request id
    payload.push(8); // NamingRequest::Ping, the service's ninth method
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    frame
}

#[tokio::test]
async fn a_deadline_of_a_hundred_million_seconds_gets_an_answer() {
    let ns_addr = start_ns(100).await;
    for secs in [100_000_000, u64::MAX] {
        let mut raw = TcpStream::connect(&ns_addr).await.unwrap();
        raw.write_all(&ping_frame(secs)).await.unwrap();
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), raw.read_exact(&mut len))
            .await
            .expect("no answer")
            .expect("the connection closed: the request killed its task");
        let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
        raw.read_exact(&mut reply).await.unwrap();
        // Response { request_id: 1, message: Ok(NamingResponse::Ping(())) }
        assert_eq!(reply, [1, 0, 8], "secs {secs}");
    }
}

/// Answers a client's first connection as this workspace's name server
/// does: a Pyro4 CONNECTOK with the annotation that says "speak tarpc".
async fn answer_the_probe(listener: &TcpListener) {
    use pyro4_wire::io::{read_message, write_message};
    use pyro4_wire::serpent::{self, Value};
    use pyro4_wire::{Message, MessageType};

    let (mut socket, _) = listener.accept().await.unwrap();
    let connect = read_message(&mut socket, 1 << 20).await.unwrap().unwrap();
    let meta = Value::Dict(vec![
        (Value::str("methods"), Value::List(vec![])),
        (Value::str("oneway"), Value::List(vec![])),
        (Value::str("attrs"), Value::List(vec![])),
    ]);
    let data = Value::Dict(vec![
        (Value::str("handshake"), Value::str("hello")),
        (Value::str("meta"), meta),
    ]);
    let mut ok = Message::new(MessageType::ConnectOk, connect.seq, serpent::dumps(&data));
    ok.flags = pyro4_wire::message::FLAG_META_ON_CONNECT;
    ok.annotations = vec![(rpc_transport::TARPC_MARK, Vec::new())];
    write_message(&mut socket, &ok).await.unwrap();
}

#[tokio::test]
async fn a_reply_over_the_frame_limit_is_reported_as_such() {
    // A "name server" that answers every request with a 2 MiB frame.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        answer_the_probe(&listener).await;
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        socket.read_exact(&mut len).await.unwrap();
        let mut request = vec![0u8; u32::from_be_bytes(len) as usize];
        socket.read_exact(&mut request).await.unwrap();
        let huge = 2 * MAX_FRAME as u32;
        let _ = socket.write_all(&huge.to_be_bytes()).await;
        let _ = socket.write_all(&vec![0u8; 64 * 1024]).await;
        let _ = socket.read(&mut len).await;
    });
    let ns = NameServerClient::connect(&addr).await.unwrap();
    match ns.list(None).await {
        Err(err @ Error::ReplyTooLarge { .. }) => {
            assert!(
                err.to_string()
                    .contains("larger than the 1 MiB frame limit"),
                "{err}"
            )
        }
        other => panic!("expected ReplyTooLarge, got {other:?}"),
    }
}
