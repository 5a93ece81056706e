//! The book server and client over real sockets on port 0: every size, the
//! error frames, limits and timeouts, and transfers that fail half-way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use socket_file::client::{Event, borrow_book};
use socket_file::protocol::{Kind, header};
use socket_file::server::{ServerConfig, serve};
use socket_file::{CLOSING_MESSAGE, DEFAULT_REQUEST, Error};

struct TestServer {
    addr: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(config: ServerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config, async {
            let _ = stopped.await;
        }));
        TestServer { addr, stop, task }
    }

    async fn lending(book: &Path) -> Self {
        let mut config = ServerConfig::new(book);
        config.announce = false;
        Self::start(config).await
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn write_book(dir: &Path, content: &[u8]) -> PathBuf {
    let path = dir.join("book.bin");
    std::fs::write(&path, content).unwrap();
    path
}

/// Files in `dir` other than the book: what a transfer left behind.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "book.bin")
        .collect()
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test]
async fn every_size_arrives_byte_for_byte_in_blocks_of_at_most_1024() {
    let dir = tempfile::tempdir().unwrap();
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096 + 7).collect();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"x".to_vec(),
        pseudo_random(1023),
        pseudo_random(1024),
        pseudo_random(1025),
        all_bytes,
        pseudo_random(3 * 1024 * 1024 + 17),
    ];
    for content in cases {
        let book = write_book(dir.path(), &content);
        let server = TestServer::lending(&book).await;
        let out = dir.path().join("received.txt");
        // What the client saw, in order: the announced size, then each
        // block's length.
        let (seen, events) = std::sync::mpsc::channel();
        let borrowed = borrow_book(&server.addr, DEFAULT_REQUEST, &out, move |event| {
            let _ = seen.send(match event {
                Event::Started { size } => Err(size),
                Event::Block(block) => Ok(block.len()),
            });
        })
        .await
        .unwrap();
        let events: Vec<_> = events.try_iter().collect();
        assert_eq!(events.first(), Some(&Err(content.len() as u64)));
        let blocks = &events[1..];
        assert!(
            blocks.iter().all(|len| matches!(len, Ok(1..=1024))),
            "{blocks:?}"
        );
        assert_eq!(blocks.len(), content.len().div_ceil(1024));
        assert_eq!(borrowed.size, content.len() as u64);
        assert_eq!(borrowed.closing, CLOSING_MESSAGE);
        assert_eq!(borrowed.digest, *blake3::hash(&content).as_bytes());
        assert_eq!(
            std::fs::read(&out).unwrap(),
            content,
            "size {}",
            content.len()
        );
        std::fs::remove_file(&out).unwrap();
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn wire_bytes_follow_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let content = pseudo_random(1025);
    let server = TestServer::lending(&write_book(dir.path(), &content)).await;
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    let request = b"Pinjam Buku Programming GO";
    socket
        .write_all(&header(Kind::Request, request.len()))
        .await
        .unwrap();
    socket.write_all(request).await.unwrap();
    let mut wire = Vec::new();
    socket.read_to_end(&mut wire).await.unwrap();

    let mut expected = Vec::new();
    expected.extend_from_slice(&[b'B', 0, 0, 0, 8]);
    expected.extend_from_slice(&1025u64.to_be_bytes());
    expected.extend_from_slice(&[b'D', 0, 0, 4, 0]);
    expected.extend_from_slice(&content[..1024]);
    expected.extend_from_slice(&[b'D', 0, 0, 0, 1]);
    expected.extend_from_slice(&content[1024..]);
    expected.extend_from_slice(&[b'S', 0, 0, 0, 32]);
    expected.extend_from_slice(blake3::hash(&content).as_bytes());
    expected.extend_from_slice(&[b'M', 0, 0, 0, CLOSING_MESSAGE.len() as u8]);
    expected.extend_from_slice(CLOSING_MESSAGE.as_bytes());
    assert_eq!(wire, expected);
}

/// Sends raw bytes as a request and returns the error frame's text.
async fn error_reply(addr: &str, raw: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(raw).await.unwrap();
    let mut wire = Vec::new();
    socket.read_to_end(&mut wire).await.unwrap();
    assert_eq!(wire.first(), Some(&b'E'), "{wire:?}");
    let len = u32::from_be_bytes(wire[1..5].try_into().unwrap()) as usize;
    assert_eq!(wire.len(), 5 + len, "one error frame, then close");
    String::from_utf8(wire[5..].to_vec()).unwrap()
}

fn request_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = header(Kind::Request, payload.len()).to_vec();
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn bad_requests_get_an_error_frame_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let content = pseudo_random(5000);
    let server = TestServer::lending(&write_book(dir.path(), &content)).await;

    let garbage = error_reply(&server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(garbage.contains("expected a request frame"), "{garbage}");

    let mut oversized = header(Kind::Request, 5000).to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 5000));
    let too_long = error_reply(&server.addr, &oversized).await;
    assert!(too_long.contains("5000 bytes"), "{too_long}");

    let not_utf8 = error_reply(&server.addr, &request_frame(&[b'P', 0xff, 0xfe])).await;
    assert!(not_utf8.contains("not valid UTF-8"), "{not_utf8}");

    let empty = error_reply(&server.addr, &request_frame(b"")).await;
    assert!(empty.contains("empty"), "{empty}");

    let out = dir.path().join("received.txt");
    let err = borrow_book(&server.addr, "Beli buku", &out, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused(text) if text.starts_with("request refused")),
        "{err}"
    );
    assert!(!out.exists());

    borrow_book(&server.addr, DEFAULT_REQUEST, &out, |_| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content);
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_book_is_an_error_the_client_reports() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::lending(&dir.path().join("no-such-book.txt")).await;
    let out = dir.path().join("received.txt");
    std::fs::write(&out, b"the previous loan").unwrap();
    let err = borrow_book(&server.addr, DEFAULT_REQUEST, &out, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused(text) if text.contains("book not available: no-such-book.txt")),
        "{err}"
    );
    // A failed loan never clobbers what was there.
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous loan");
    server.shutdown().await;
}

#[tokio::test]
async fn many_clients_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let content = pseudo_random(200 * 1024 + 3);
    let server = TestServer::lending(&write_book(dir.path(), &content)).await;
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let addr = server.addr.clone();
            let out = dir.path().join(format!("received-{i}.txt"));
            tokio::spawn(async move {
                borrow_book(&addr, DEFAULT_REQUEST, &out, |_| {})
                    .await
                    .unwrap();
                std::fs::read(&out).unwrap()
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap(), content);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_and_request_timeout_free_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let book = write_book(dir.path(), b"Peminjaman buku diterima");
    let mut config = ServerConfig::new(&book);
    config.announce = false;
    config.max_connections = 1;
    config.request_timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let out = dir.path().join("received.txt");

    // A silent client takes the only slot (connections are accepted in the
    // order they were made, so it is first)...
    let mut silent = TcpStream::connect(&server.addr).await.unwrap();
    let err = borrow_book(&server.addr, DEFAULT_REQUEST, &out, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused(text) if text.starts_with("server busy")),
        "{err}"
    );

    // ...until its request timeout: it is told why and the slot is free.
    let mut wire = Vec::new();
    silent.read_to_end(&mut wire).await.unwrap();
    assert_eq!(wire.first(), Some(&b'E'));
    assert!(String::from_utf8_lossy(&wire).contains("no request within"));
    borrow_book(&server.addr, DEFAULT_REQUEST, &out, |_| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"Peminjaman buku diterima");
    server.shutdown().await;
}

/// A fake server that answers any request with `reply` and closes.
async fn fake_server(reply: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 5];
        socket.read_exact(&mut head).await.unwrap();
        let mut request = vec![0u8; u32::from_be_bytes(head[1..].try_into().unwrap()) as usize];
        socket.read_exact(&mut request).await.unwrap();
        socket.write_all(&reply).await.unwrap();
    });
    addr
}

fn frames(parts: &[(Kind, &[u8])]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (kind, payload) in parts {
        wire.extend_from_slice(&header(*kind, payload.len()));
        wire.extend_from_slice(payload);
    }
    wire
}

#[tokio::test]
async fn a_transfer_cut_off_midway_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.txt");
    let block = [7u8; 1024];
    let size = 10_000u64.to_be_bytes();
    let addr = fake_server(frames(&[
        (Kind::Book, &size),
        (Kind::Data, &block),
        (Kind::Data, &block),
        (Kind::Data, &block[..100]),
    ]))
    .await;
    let err = borrow_book(&addr.to_string(), DEFAULT_REQUEST, &out, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Interrupted {
                received: 2148,
                expected: 10_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[tokio::test]
async fn a_wrong_digest_is_caught_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.txt");
    std::fs::write(&out, b"the previous loan").unwrap();
    let addr = fake_server(frames(&[
        (Kind::Book, &3u64.to_be_bytes()),
        (Kind::Data, b"abc"),
        (Kind::Digest, &[0u8; 32]),
        (Kind::Closing, CLOSING_MESSAGE.as_bytes()),
    ]))
    .await;
    let err = borrow_book(&addr.to_string(), DEFAULT_REQUEST, &out, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous loan");
    assert_eq!(leftovers(dir.path()), vec!["received.txt".to_owned()]);
}

#[tokio::test]
async fn a_server_that_lies_about_sizes_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.txt");
    let addr = fake_server(frames(&[
        (Kind::Book, &2u64.to_be_bytes()),
        (Kind::Data, b"abc"),
    ]))
    .await;
    let err = borrow_book(&addr.to_string(), DEFAULT_REQUEST, &out, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn a_client_that_vanishes_midway_does_not_hurt_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let content = pseudo_random(8 * 1024 * 1024);
    let server = TestServer::lending(&write_book(dir.path(), &content)).await;
    for _ in 0..3 {
        let mut socket = TcpStream::connect(&server.addr).await.unwrap();
        socket
            .write_all(&request_frame(DEFAULT_REQUEST.as_bytes()))
            .await
            .unwrap();
        let mut some = vec![0u8; 64 * 1024];
        socket.read_exact(&mut some).await.unwrap();
        drop(socket);
    }
    let out = dir.path().join("received.txt");
    borrow_book(&server.addr, DEFAULT_REQUEST, &out, |_| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_with_no_server_says_where_it_looked() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let err = borrow_book(&addr, DEFAULT_REQUEST, &dir.path().join("r.txt"), |_| {})
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&addr) && text.contains("socket_file server"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let content = pseudo_random(32 * 1024 * 1024);
    let mut config = ServerConfig::new(write_book(dir.path(), &content));
    config.announce = false;
    config.max_connections = 1;
    config.stall_timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;

    // Asks for the book, then reads nothing: the socket buffers fill and the
    // server's sends stall.
    let mut stuck = TcpStream::connect(&server.addr).await.unwrap();
    stuck
        .write_all(&request_frame(DEFAULT_REQUEST.as_bytes()))
        .await
        .unwrap();

    let out = dir.path().join("received.txt");
    for attempt in 0.. {
        match borrow_book(&server.addr, DEFAULT_REQUEST, &out, |_| {}).await {
            Ok(_) => break,
            Err(Error::Refused(text)) if text.starts_with("server busy") => {
                // 100 attempts 100 ms apart: far past the 300 ms stall timeout.
                assert!(attempt < 100, "the stalled client kept its slot");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(std::fs::read(&out).unwrap(), content);
    drop(stuck);
    server.shutdown().await;
}

#[tokio::test]
async fn a_borrower_that_reads_too_slowly_is_dropped_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let content = pseudo_random(32 * 1024 * 1024);
    let mut config = ServerConfig::new(write_book(dir.path(), &content));
    config.announce = false;
    config.max_connections = 1;
    config.min_rate = 1024 * 1024;
    config.rate_grace = Duration::from_millis(300);
    let server = TestServer::start(config).await;

    // Asks for the book, then reads it at about 160 KiB/s, through a small
    // receive buffer: it never stalls, it is only slow.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut slow = socket.connect(server.addr.parse().unwrap()).await.unwrap();
    slow.write_all(&request_frame(DEFAULT_REQUEST.as_bytes()))
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        // 32 MiB at this pace would take over 3 minutes; bounded to 60 s.
        for _ in 0..600 {
            if let Ok(0) | Err(_) = slow.read(&mut buf).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // Meanwhile another borrower waits for the slot, and gets it within 30 s:
    // long before the slow loan could have ended by itself.
    let out = dir.path().join("received.txt");
    for attempt in 0.. {
        match borrow_book(&server.addr, DEFAULT_REQUEST, &out, |_| {}).await {
            Ok(_) => break,
            Err(Error::Refused(text)) if text.starts_with("server busy") => {
                assert!(attempt < 300, "the slow borrower kept its slot");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(std::fs::read(&out).unwrap(), content);
    reader.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn the_servers_text_is_shown_with_its_control_characters_escaped() {
    let text = "busy\u{1b}[2J\u{7}\r\u{202e}!";
    let addr = fake_server(frames(&[(Kind::Error, text.as_bytes())])).await;
    let dir = tempfile::tempdir().unwrap();
    let err = borrow_book(
        &addr.to_string(),
        DEFAULT_REQUEST,
        &dir.path().join("r.txt"),
        |_| {},
    )
    .await
    .unwrap_err();
    let shown = err.to_string();
    assert_eq!(
        shown,
        "the server refused: busy\\u{1b}[2J\\u{7}\\r\\u{202e}!"
    );
    assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
}

/// 64 places taken, then 136 borrowers at once: every one is told the
/// server is busy, never a connection closed with nothing said (the accept
/// loop tells them, however many, without a task each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_borrower_over_the_limit_is_told_the_server_is_busy() {
    const PLACES: usize = 64;
    const REFUSED: usize = 136;
    let dir = tempfile::tempdir().unwrap();
    let book = write_book(dir.path(), b"Peminjaman buku diterima");
    let mut config = ServerConfig::new(&book);
    config.announce = false;
    config.max_connections = PLACES;
    let server = TestServer::start(config).await;
    // Silent connections hold every place (for their 10 s request timeout);
    // connections are accepted in the order they were made.
    let mut holders = Vec::new();
    for _ in 0..PLACES {
        holders.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    let borrowers: Vec<_> = (0..REFUSED)
        .map(|i| {
            let (addr, out) = (server.addr.clone(), dir.path().join(format!("copy{i}")));
            tokio::spawn(async move { borrow_book(&addr, DEFAULT_REQUEST, &out, |_| {}).await })
        })
        .collect();
    let (mut busy, mut other) = (0, Vec::new());
    for borrower in borrowers {
        match borrower.await.unwrap() {
            Err(Error::Refused(text)) if text.starts_with("server busy") => busy += 1,
            Ok(_) => other.push("lent the book".to_owned()),
            Err(err) => other.push(err.to_string()),
        }
    }
    println!("{REFUSED} refused borrowers: {busy} told busy");
    assert!(other.is_empty(), "{} not told busy: {other:?}", other.len());
    assert_eq!(busy, REFUSED);
    drop(holders);
    server.shutdown().await;
}
