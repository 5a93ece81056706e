//! The time server and client over real sockets on port 0, and interop with
//! the chapter's Python programs.

use std::net::SocketAddr;
use std::process::Stdio;

use chrono::{Local, NaiveDateTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use socket_time::{fetch_time, serve};

struct TestServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start_server() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    // `announce: false` keeps the test output clean; the line itself is
    // checked by a unit test.
    let task = tokio::spawn(serve(listener, false, async {
        let _ = stopped.await;
    }));
    TestServer { addr, stop, task }
}

/// Parses a `ctime()` string and checks it is the current local time.
fn assert_is_now(time: &str) {
    let parsed = NaiveDateTime::parse_from_str(time, "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|err| panic!("{time:?} is not a ctime() string: {err}"));
    let drift = (Local::now().naive_local() - parsed).num_seconds().abs();
    assert!(drift < 120, "{time:?} is {drift} s away from now");
}

#[tokio::test]
async fn client_receives_the_current_time() {
    let server = start_server().await;
    let time = fetch_time(&server.addr.to_string()).await.unwrap();
    assert_eq!(time.len(), 24, "{time:?}");
    assert_is_now(&time);
    let _ = server.stop.send(());
    server.task.await.unwrap();
}

#[tokio::test]
async fn wire_bytes_are_one_ascii_ctime_line_then_close() {
    let server = start_server().await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = Vec::new();
    socket.read_to_end(&mut bytes).await.unwrap();
    assert_eq!(bytes.len(), 26, "{bytes:?}");
    assert!(bytes.ends_with(b"\r\n"));
    assert!(bytes.is_ascii());
    assert_is_now(std::str::from_utf8(&bytes[..24]).unwrap());
}

#[tokio::test]
async fn serves_many_clients_at_once() {
    let server = start_server().await;
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let addr = server.addr.to_string();
            tokio::spawn(async move { fetch_time(&addr).await })
        })
        .collect();
    for client in clients {
        assert_is_now(&client.await.unwrap().unwrap());
    }
}

#[tokio::test]
async fn a_silent_peer_does_not_block_others_and_a_stopped_server_accepts_no_more() {
    let server = start_server().await;
    // A peer that never reads: the server's small write still completes.
    let _idle = TcpStream::connect(server.addr).await.unwrap();
    assert_is_now(&fetch_time(&server.addr.to_string()).await.unwrap());
    let _ = server.stop.send(());
    server.task.await.unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn client_reports_a_missing_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = fetch_time(&addr.to_string()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("socket_time server"), "{text}");
}

#[tokio::test]
async fn client_rejects_a_reply_that_is_not_a_time_line() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut socket, b"no line ending")
            .await
            .unwrap();
    });
    let err = fetch_time(&addr.to_string()).await.unwrap_err();
    assert!(matches!(err, socket_time::Error::BadReply { .. }), "{err}");
}

fn python_script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn python_client_reads_the_rust_server() {
    let server = start_server().await;
    let output = Command::new("python3")
        .arg(python_script("time_client.py"))
        .arg(server.addr.port().to_string())
        .output()
        .await
        .expect("python3 must be installed for the interop tests");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let time = stdout
        .strip_prefix("Telah melakukan check out buku dongeng pada:")
        .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
    // Python prints the reply as received, `\r\n` included, then its own `\n`.
    assert!(time.ends_with("\r\n\n"), "{time:?}");
    assert_is_now(time.trim_end());
}

#[tokio::test]
async fn rust_client_reads_the_python_server() {
    let mut python = Command::new("python3")
        .arg(python_script("time_server.py"))
        .arg("0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 must be installed for the interop tests");
    let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let port: u16 = lines.next_line().await.unwrap().unwrap().parse().unwrap();

    let time = fetch_time(&format!("127.0.0.1:{port}")).await.unwrap();
    assert_is_now(&time);

    let sale = lines.next_line().await.unwrap().unwrap();
    assert!(
        sale.starts_with("Telah terjual buku dongeng oleh ip [port]('127.0.0.1', "),
        "{sale}"
    );
    python.kill().await.unwrap();
}

#[tokio::test]
async fn the_server_logs_without_colour_to_a_pipe_and_one_line_when_it_stops() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_socket_time"))
        .args(["server", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    let listening = log.next_line().await.unwrap().unwrap();
    assert!(
        listening.contains("time server listening on 127.0.0.1:"),
        "{listening}"
    );
    assert!(
        !listening.contains('\x1b'),
        "colour codes on a pipe: {listening:?}"
    );

    let pid = server.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    assert!(server.wait().await.unwrap().success());
    let mut rest = Vec::new();
    while let Some(line) = log.next_line().await.unwrap() {
        rest.push(line);
    }
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(
        rest[0].contains("time server on 127.0.0.1:") && rest[0].ends_with("stopped"),
        "{rest:?}"
    );
}
