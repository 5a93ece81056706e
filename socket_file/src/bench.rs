//! `socket_file bench`: a loan as a user runs it, against a plain copy.
//!
//! The loan is timed as a whole program: this binary's own `client`
//! command, started as a process against the real server (running in this
//! process), from its start to its exit, into a fresh output file each
//! time; so start-up, the temporary file, the digest check and the final
//! rename are all in the figure. Its floor is what a careful user would
//! write by hand: a blocking `std::net` receiver reading 256 KiB at a time
//! into a fresh file, fed by an equally plain sender; once unverified, and
//! once hashing BLAKE3 in line as it receives (the floor the loan must
//! reach, since the loan verifies too). The three kinds alternate, run by
//! run, so that a slow moment of the machine does not fall on one kind.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tokio::net::TcpListener;

use socket_file::server::{ServerConfig, serve};

/// The plain copy's read and write size.
const COPY_BUFFER: usize = 256 * 1024;

/// Writes `size` bytes of reproducible pseudo-random data (incompressible,
/// like a real book's bytes would be to the hash) to `path`; returns their
/// BLAKE3 digest.
fn generate_book(path: &Path, size: u64) -> std::io::Result<blake3::Hash> {
    let mut file = std::io::BufWriter::with_capacity(COPY_BUFFER, std::fs::File::create(path)?);
    let mut hasher = blake3::Hasher::new();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut left = size;
    while left > 0 {
        // xorshift64: fast, and good enough to defeat any shortcut.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = state.to_le_bytes();
        let take = left.min(8) as usize;
        file.write_all(&word[..take])?;
        hasher.update(&word[..take]);
        left -= take as u64;
    }
    file.flush()?;
    Ok(hasher.finalize())
}

/// One way of getting the book into a fresh file.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `socket_file client`, as a process.
    Loan,
    /// The plain blocking copy, unverified.
    Copy,
    /// The plain blocking copy, hashing BLAKE3 in line.
    VerifiedCopy,
}

const KINDS: [Kind; 3] = [Kind::Loan, Kind::Copy, Kind::VerifiedCopy];

/// Wall times of every run of each kind, and how long the binary takes to
/// start and exit doing nothing (`--version`), for scale.
#[derive(Debug, Default)]
pub struct Report {
    size: u64,
    loan: Vec<Duration>,
    copy: Vec<Duration>,
    verified_copy: Vec<Duration>,
    process_start: Vec<Duration>,
}

impl Report {
    fn times(&mut self, kind: Kind) -> &mut Vec<Duration> {
        match kind {
            Kind::Loan => &mut self.loan,
            Kind::Copy => &mut self.copy,
            Kind::VerifiedCopy => &mut self.verified_copy,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, what: &str, times: &[Duration]| {
            let shown: Vec<String> = times
                .iter()
                .map(|t| format!("{:.0}", t.as_secs_f64() * 1e3))
                .collect();
            writeln!(
                f,
                "{what:<52} median {:>5.0} ms {:>6.0} MB/s  runs (ms): {}",
                median(times).as_secs_f64() * 1e3,
                self.size as f64 / 1e6 / median(times).as_secs_f64(),
                shown.join(" ")
            )
        };
        row(f, "loan: `socket_file client` as a process", &self.loan)?;
        row(
            f,
            "plain std::net copy to a file, BLAKE3 in line",
            &self.verified_copy,
        )?;
        row(f, "plain std::net copy to a file, unverified", &self.copy)?;
        writeln!(
            f,
            "(starting and ending the binary alone: median {:.1} ms)",
            median(&self.process_start).as_secs_f64() * 1e3
        )?;
        let ratio =
            |floor: &[Duration]| median(floor).as_secs_f64() / median(&self.loan).as_secs_f64();
        write!(
            f,
            "ratio loan/verified copy (speed): {:.2}  (loan/unverified copy: {:.2})",
            ratio(&self.verified_copy),
            ratio(&self.copy)
        )
    }
}

/// The median of a set of measurements.
fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Generates a book of `size_mib` MiB in `dir` (default: a temporary
/// folder), then gets it `runs` times each way, alternating, and deletes
/// the book and every copy.
pub async fn run(size_mib: u64, runs: usize, dir: Option<PathBuf>) -> anyhow::Result<Report> {
    let temp;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let size = size_mib << 20;
    let book = dir.join("book.bin");
    tracing::info!("generating a {size_mib} MiB book in {}", dir.display());
    let digest = tokio::task::spawn_blocking({
        let book = book.clone();
        move || generate_book(&book, size)
    })
    .await??;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let loan_addr = listener.local_addr()?.to_string();
    let mut config = ServerConfig::new(&book);
    config.announce = false;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, config, async {
        let _ = stopped.await;
    }));
    let copy_listener = StdListener::bind("127.0.0.1:0")?;
    let copy_addr = copy_listener.local_addr()?;
    let sender = std::thread::spawn({
        let book = book.clone();
        move || plain_sender(&copy_listener, &book, 2 * runs)
    });

    let mut report = Report {
        size,
        ..Report::default()
    };
    let measured = tokio::task::spawn_blocking(move || {
        // Untimed: the server hashes a new book on its first loan only.
        let warm_up = dir.join("warm-up.bin");
        loan(&loan_addr, &warm_up)?;
        std::fs::remove_file(&warm_up)?;
        for run in 0..runs {
            report.process_start.push(process_start()?);
            for step in 0..KINDS.len() {
                let kind = KINDS[(run + step) % KINDS.len()];
                let out = dir.join(format!("copy-{run}-{kind:?}.bin"));
                let took = match kind {
                    Kind::Loan => loan(&loan_addr, &out)?,
                    Kind::Copy => plain_receiver(copy_addr, &out, None)?,
                    Kind::VerifiedCopy => plain_receiver(copy_addr, &out, Some(digest))?,
                };
                ensure!(
                    std::fs::metadata(&out)?.len() == size,
                    "{kind:?} did not write the whole book"
                );
                std::fs::remove_file(&out)?;
                report.times(kind).push(took);
            }
        }
        std::fs::remove_file(&book)?;
        anyhow::Ok(report)
    })
    .await?;
    let _ = stop.send(());
    server.await?;
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the plain sender panicked"))?
        .context("the plain sender failed")?;
    measured
}

/// Runs this binary's `client` against `addr`, saving to `out`: its wall
/// time from start to exit (the caller checks what it saved).
fn loan(addr: &str, out: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = Command::new(std::env::current_exe()?)
        .args(["client", "--addr", addr, "--out"])
        .arg(out)
        .stdin(Stdio::null())
        .output()?;
    let took = started.elapsed();
    ensure!(
        output.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
    Ok(took)
}

/// How long this binary takes to start and exit doing nothing.
fn process_start() -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new(std::env::current_exe()?)
        .arg("--version")
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "`socket_file --version` failed");
    Ok(started.elapsed())
}

/// Sends `book` whole to each of `connections` connections, one after the
/// other, with plain blocking reads and writes.
fn plain_sender(listener: &StdListener, book: &Path, connections: usize) -> std::io::Result<()> {
    let mut buffer = vec![0; COPY_BUFFER];
    for _ in 0..connections {
        let (mut socket, _) = listener.accept()?;
        let mut file = std::fs::File::open(book)?;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            socket.write_all(&buffer[..n])?;
        }
    }
    Ok(())
}

/// Receives a book from the plain sender into a fresh file at `out`, and,
/// given the digest to expect, hashes it in line and checks it. Its wall
/// time from connecting to the file closed.
fn plain_receiver(
    addr: std::net::SocketAddr,
    out: &Path,
    expected: Option<blake3::Hash>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut socket = StdStream::connect(addr)?;
    let mut file = std::fs::File::create(out)?;
    let mut hasher = expected.map(|_| blake3::Hasher::new());
    let mut buffer = vec![0; COPY_BUFFER];
    loop {
        let n = socket.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        file.write_all(&buffer[..n])?;
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&buffer[..n]);
        }
    }
    drop(file);
    if let (Some(hasher), Some(expected)) = (hasher, expected) {
        ensure!(
            hasher.finalize() == expected,
            "the plain copy's digest differs"
        );
    }
    Ok(started.elapsed())
}
