//! The `socket_file` binary as a user runs it: a 1 GiB book in constant
//! memory on both sides, and the exit status of a refused loan.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use test_support::child::KillOnDrop;

const BIN: &str = env!("CARGO_BIN_EXE_socket_file");

/// Starts `socket_file server` on an ephemeral port and returns it with its
/// address, read from its log line.
fn start_server(book: &Path) -> (KillOnDrop, String) {
    let mut child = KillOnDrop::new(
        Command::new(BIN)
            .args(["server", "--addr", "127.0.0.1:0", "--file"])
            .arg(book)
            .env("RUST_LOG", "socket_file=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = BufReader::new(child.child().stderr.take().unwrap());
    let (found, addr) = std::sync::mpsc::channel();
    // Keep draining the log so the server never writes to a closed pipe.
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = found.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = addr
        .recv()
        .expect("the server exited without saying where it listens");
    (child, addr)
}

/// Peak resident memory of a process, from /proc, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn one_gib_book_streams_in_constant_memory_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("big.bin");
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for chunk in block.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    let mut expected = blake3::Hasher::new();
    let mut file = std::fs::File::create(&book).unwrap();
    for i in 0..1024u32 {
        block[..4].copy_from_slice(&i.to_le_bytes());
        file.write_all(&block).unwrap();
        expected.update(&block);
    }
    drop(file);
    let expected: [u8; 32] = *expected.finalize().as_bytes();

    let (server, addr) = start_server(&book);
    let out = dir.path().join("received.bin");
    // Python's resource module reads the client's peak memory after it exits.
    let measure = "import resource, subprocess, sys\n\
         r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
         print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let output = Command::new("python3")
        .args(["-c", measure, BIN, "client", "--addr", &addr, "--out"])
        .arg(&out)
        .output()
        .expect("python3 must be installed to measure the client's memory");
    let report = String::from_utf8(output.stdout.clone()).unwrap();
    let mut fields = report.split_whitespace();
    assert_eq!(fields.next(), Some("0"), "client failed: {output:?}");
    let client_kib: u64 = fields.next().unwrap().parse().unwrap();
    let server_kib = peak_rss_kib(server.id());
    eprintln!("peak resident memory: client {client_kib} KiB, server {server_kib} KiB");
    drop(server);

    let mut received = blake3::Hasher::new();
    let mut input = std::fs::File::open(&out).unwrap();
    std::io::copy(&mut input, &mut received).unwrap();
    let received: [u8; 32] = *received.finalize().as_bytes();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1 << 30);
    assert_eq!(received, expected);
    assert!(client_kib < 30 * 1024, "client peaked at {client_kib} KiB");
    assert!(server_kib < 30 * 1024, "server peaked at {server_kib} KiB");
}

#[test]
fn a_refused_loan_exits_non_zero_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("missing.txt");
    std::fs::write(&book, "soon gone").unwrap();
    let (server, addr) = start_server(&book);
    std::fs::remove_file(&book).unwrap();
    let out = dir.path().join("received.txt");
    let output = Command::new(BIN)
        .args(["client", "--addr", &addr, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    drop(server);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("book not available: missing.txt"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Peminjaman buku sedang diproses\n"
    );
    assert!(!out.exists());
}

#[test]
fn a_big_book_shows_a_progress_bar_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("big.bin");
    std::fs::write(&book, vec![7u8; 64 << 20]).unwrap();
    let (server, addr) = start_server(&book);
    let client = format!(
        "{BIN} client --addr {addr} --out {}",
        dir.path().join("received.bin").display()
    );

    // `script` (util-linux) runs the client on a pseudo-terminal.
    let on_terminal = Command::new("script")
        .args(["-qec", &client, "/dev/null"])
        .output()
        .expect("`script` from util-linux runs the client on a terminal");
    let screen = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(on_terminal.status.success(), "{screen}");
    assert!(
        screen.contains("/64.00 MiB"),
        "no progress bar in {screen:?}"
    );
    assert!(screen.contains("Buku siap dipinjam!"), "{screen}");

    let piped = Command::new("sh").args(["-c", &client]).output().unwrap();
    drop(server);
    assert!(piped.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&piped.stdout),
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(!all.contains("MiB"), "a progress bar on a pipe: {all:?}");
}

#[test]
fn a_server_without_its_book_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["server", "--addr", "127.0.0.1:0", "--file"])
        .arg(dir.path().join("missing.txt"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: the book ") && stderr.contains("missing.txt does not exist"),
        "{stderr}"
    );
}

#[test]
fn an_address_without_a_port_is_explained() {
    let output = Command::new(BIN)
        .args(["server", "--addr", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("IP:PORT"), "{stderr}");
}

/// A server that starts lending a 1 MiB book, sends 64 KiB of it, then
/// waits for ever (until the test ends).
fn stalling_server() -> String {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut request = [0u8; 5 + 27];
        let _ = socket.read_exact(&mut request);
        let mut wire = vec![b'B', 0, 0, 0, 8];
        wire.extend_from_slice(&(1u64 << 20).to_be_bytes());
        for _ in 0..64 {
            wire.extend_from_slice(&[b'D', 0, 0, 4, 0]);
            wire.extend_from_slice(&[b'x'; 1024]);
        }
        socket.write_all(&wire).unwrap();
        std::thread::park();
    });
    addr
}

#[test]
fn an_interrupted_loan_leaves_no_temporary_file() {
    for signal in ["-INT", "-TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let addr = stalling_server();
        let client = KillOnDrop::new(
            Command::new(BIN)
                .args(["client", "--addr", &addr, "--out"])
                .arg(dir.path().join("received.txt"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Wait (bounded) until the loan has its temporary file.
        let has_part = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".part"))
        };
        let mut waited = 0;
        while !has_part() {
            assert!(waited < 500, "the client never created its temporary file");
            std::thread::sleep(std::time::Duration::from_millis(20));
            waited += 1;
        }
        let killed = Command::new("kill")
            .args([signal, &client.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = client.release().wait_with_output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("interrupted"), "{signal}: {stderr}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{signal} left {left:?}");
    }
}
