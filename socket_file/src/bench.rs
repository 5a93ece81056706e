//! `socket_file bench`: the protocol's throughput against a raw TCP copy.
//!
//! All run in this process over loopback, one after the other, with the
//! same size: the protocol lends a generated book from a file to a file
//! (framing, the digest on both ends, temporary file and rename included);
//! its floor copies the same file to a file over one TCP connection with
//! large buffers and no check at all; and, for scale, the same number of
//! bytes goes from memory to memory.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use socket_file::Result;
use socket_file::client::borrow_book;
use socket_file::server::{ServerConfig, serve};

const RAW_BUFFER: usize = 1 << 20;

/// Writes `size` bytes of reproducible pseudo-random data (incompressible,
/// like a real book's bytes would be to the hash) to `path`.
pub fn generate_book(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::with_capacity(RAW_BUFFER, std::fs::File::create(path)?);
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
        left -= take as u64;
    }
    file.flush()
}

/// Lends `book` `runs` times through the real server and client; MB/s per run.
pub async fn protocol_runs(book: &Path, out_dir: &Path, runs: usize) -> Result<Vec<f64>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let mut config = ServerConfig::new(book);
    config.announce = false;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, config, async {
        let _ = stopped.await;
    }));
    let out = out_dir.join("received.bin");
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let borrowed = borrow_book(&addr, socket_file::DEFAULT_REQUEST, &out, |_| {}).await?;
        rates.push(borrowed.size as f64 / 1e6 / started.elapsed().as_secs_f64());
        std::fs::remove_file(&out)?;
    }
    let _ = stop.send(());
    server.await.expect("bench server panicked");
    Ok(rates)
}

/// The floor: `book` copied to a file in `out_dir` over one TCP connection,
/// unverified, `runs` times; MB/s per run.
pub async fn raw_file_runs(book: &Path, out_dir: &Path, runs: usize) -> Result<Vec<f64>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sender = tokio::spawn({
        let book = book.to_owned();
        async move {
            let mut buf = vec![0u8; RAW_BUFFER];
            for _ in 0..runs {
                let (mut socket, _) = listener.accept().await?;
                let mut file = tokio::fs::File::open(&book).await?;
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    socket.write_all(&buf[..n]).await?;
                }
                socket.shutdown().await?;
            }
            std::io::Result::Ok(())
        }
    });
    let out = out_dir.join("raw-copy.bin");
    let mut rates = Vec::with_capacity(runs);
    let mut buf = vec![0u8; RAW_BUFFER];
    for _ in 0..runs {
        let started = Instant::now();
        let mut socket = TcpStream::connect(addr).await?;
        let mut file = tokio::fs::File::create(&out).await?;
        let mut got = 0u64;
        loop {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).await?;
            got += n as u64;
        }
        file.flush().await?;
        drop(file);
        rates.push(got as f64 / 1e6 / started.elapsed().as_secs_f64());
        std::fs::remove_file(&out)?;
    }
    sender.await.expect("raw sender panicked")?;
    Ok(rates)
}

/// For scale: `size` bytes from memory to memory over one TCP connection.
pub async fn raw_runs(size: u64, runs: usize) -> Result<Vec<f64>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sender = tokio::spawn(async move {
        let block = vec![0x5au8; RAW_BUFFER];
        for _ in 0..runs {
            let (mut socket, _) = listener.accept().await?;
            let mut left = size;
            while left > 0 {
                let take = left.min(RAW_BUFFER as u64) as usize;
                socket.write_all(&block[..take]).await?;
                left -= take as u64;
            }
            socket.shutdown().await?;
        }
        std::io::Result::Ok(())
    });
    let mut rates = Vec::with_capacity(runs);
    let mut buf = vec![0u8; RAW_BUFFER];
    for _ in 0..runs {
        let started = Instant::now();
        let mut socket = TcpStream::connect(addr).await?;
        let mut got = 0u64;
        loop {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        assert_eq!(got, size, "raw copy lost bytes");
        rates.push(size as f64 / 1e6 / started.elapsed().as_secs_f64());
    }
    sender.await.expect("raw sender panicked")?;
    Ok(rates)
}

/// What a bench run measured: MB/s per run of each kind.
#[derive(Debug)]
pub struct Report {
    pub protocol: Vec<f64>,
    /// The floor: the same file copied unverified.
    pub raw_file: Vec<f64>,
    pub raw: Vec<f64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |rates: &[f64]| {
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(
            f,
            "protocol (file to file, BLAKE3 verified): median {:>6.0} MB/s  runs: {}",
            median(&self.protocol),
            show(&self.protocol)
        )?;
        writeln!(
            f,
            "raw TCP copy (file to file, unverified):  median {:>6.0} MB/s  runs: {}",
            median(&self.raw_file),
            show(&self.raw_file)
        )?;
        writeln!(
            f,
            "raw TCP copy (memory to memory):           median {:>6.0} MB/s  runs: {}",
            median(&self.raw),
            show(&self.raw)
        )?;
        write!(
            f,
            "ratio protocol/raw file copy: {:.2}  (protocol/memory copy: {:.2})",
            median(&self.protocol) / median(&self.raw_file),
            median(&self.protocol) / median(&self.raw)
        )
    }
}

/// Generates a book of `size_mib` MiB in `dir` (default: a temporary
/// folder), lends it `runs` times, copies as many bytes raw `runs` times,
/// and deletes the book.
pub async fn run(size_mib: u64, runs: usize, dir: Option<PathBuf>) -> Result<Report> {
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
    tokio::task::spawn_blocking({
        let book = book.clone();
        move || generate_book(&book, size)
    })
    .await
    .expect("book generator panicked")?;
    let protocol = protocol_runs(&book, &dir, runs).await?;
    let raw_file = raw_file_runs(&book, &dir, runs).await?;
    let raw = raw_runs(size, runs).await?;
    std::fs::remove_file(&book)?;
    Ok(Report {
        protocol,
        raw_file,
        raw,
    })
}

/// The middle value of a set of measurements.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
