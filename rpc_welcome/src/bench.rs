//! `rpc_welcome bench`: welcome calls per second, sequential and concurrent,
//! against the raw TCP ping-pong floor ([`rpc_naming::bench`]) in the same
//! run; and the same server called over Pyro4 by this workspace's Pyro4
//! client, against tarpc. With `--python`, also Python's own Pyro4 client
//! ([`python`]) calling this server and calling Python's.

use std::fmt;
use std::sync::Arc;

use plumbing::bench::{Stats, closed_loop, spawn_server_thread};
use rpc_naming::bench::{Floor, PING_SIZE, name_server};

use crate::{Connection, Error, Result, buy, connect, serve};

/// The title every bench call buys.
pub const TITLE: &str = "Sistem Terdistribusi";

/// What a bench run measured.
#[derive(Debug)]
pub struct Report {
    /// What the measured server was reached over: tarpc for a server of
    /// this workspace, Pyro4 for a Python one (with `--ns`).
    pub protocol: &'static str,
    pub sequential: Stats,
    pub raw: Stats,
    pub concurrency: usize,
    pub concurrent: Stats,
    /// The same server, sequential calls over Pyro4.
    pub pyro: Stats,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "welcome_message, sequential:      {}  ({})",
            self.sequential.summary(),
            self.protocol
        )?;
        writeln!(
            f,
            "raw TCP ping-pong, {PING_SIZE} bytes:      {}",
            self.raw.summary()
        )?;
        writeln!(
            f,
            "welcome_message, concurrency {:<3} {}  ({})",
            self.concurrency,
            self.concurrent.summary(),
            self.protocol
        )?;
        writeln!(
            f,
            "welcomeMessage over Pyro4, seq.:  {}",
            self.pyro.summary()
        )?;
        writeln!(
            f,
            "ratio sequential/raw: {:.2}",
            self.sequential.per_second() / self.raw.per_second()
        )?;
        write!(
            f,
            "ratio Pyro4/{}, sequential: {:.2}",
            self.protocol,
            self.pyro.per_second() / self.sequential.per_second()
        )
    }
}

/// Measures the server registered as `name` with the name server `ns`;
/// without `ns`, starts a name server here and a welcome server on a thread
/// of its own (as a separate process would be), registered through it.
pub async fn run(ns: Option<String>, name: &str, calls: u64, concurrency: usize) -> Result<Report> {
    let (ns, own) = name_server(ns).await?;
    let _own_server = if own {
        let object = name.to_owned();
        let server = spawn_server_thread(move |listener, stopped| async move {
            serve(listener, &object, async {
                let _ = stopped.await;
            })
            .await
        })
        .map_err(Error::BenchSetup)?;
        ns.register(name, server.addr, false).await?;
        Some(server)
    } else {
        None
    };
    let client = Arc::new(connect(&ns, name).await?);
    let location = ns.lookup(name).await?;
    let pyro = pyro4_wire::Proxy::connect(&location.pyro_uri(name))
        .await
        .map_err(|source| Error::Pyro {
            name: name.to_owned(),
            source,
        })?;
    let pyro = Arc::new(Connection::Pyro(tokio::sync::Mutex::new(pyro)));
    let floor = Floor::start().await.map_err(Error::BenchSetup)?;
    welcome_calls(&client, name, 1_000, 1).await?; // warm-up
    welcome_calls(&pyro, name, 1_000, 1).await?;

    let sequential = welcome_calls(&client, name, calls, 1).await?;
    let raw = floor.measure(calls).await.map_err(Error::BenchSetup)?;
    let concurrent = welcome_calls(&client, name, calls, concurrency).await?;
    let pyro = welcome_calls(&pyro, name, calls, 1).await?;
    Ok(Report {
        protocol: client.protocol(),
        sequential,
        raw,
        concurrency,
        concurrent,
        pyro,
    })
}

/// `calls` welcome calls, `concurrency` at a time, over one connection
/// (tarpc multiplexes the calls in flight; Pyro4 takes them in turn).
pub async fn welcome_calls(
    client: &Arc<Connection>,
    name: &str,
    calls: u64,
    concurrency: usize,
) -> Result<Stats> {
    let (client, name) = (client.clone(), name.to_owned());
    closed_loop(calls, concurrency, move |_| {
        let (client, name) = (client.clone(), name.clone());
        async move { buy(&client, &name, TITLE).await.map(drop) }
    })
    .await
}

/// Calls per Python run: Python's client makes a few thousand a second.
pub const PYTHON_CALLS: u64 = 5_000;

/// What Python's Pyro4 client managed, in calls per second, against this
/// crate's server and against Python's own (`pyro_server.py`'s object).
#[derive(Debug)]
pub struct PythonReport {
    pub threads: usize,
    /// (sequential, with `threads` threads) against the Rust server.
    pub rust: (f64, f64),
    /// The same against the Python server.
    pub python: (f64, f64),
}

impl fmt::Display for PythonReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let threads = self.threads;
        writeln!(f, "Python's Pyro4 client, {PYTHON_CALLS} calls a run:")?;
        writeln!(
            f,
            "  to the Rust server:   {:>7.0}/s sequential  {:>7.0}/s with {threads} threads",
            self.rust.0, self.rust.1
        )?;
        writeln!(
            f,
            "  to the Python server: {:>7.0}/s sequential  {:>7.0}/s with {threads} threads",
            self.python.0, self.python.1
        )?;
        write!(
            f,
            "ratio Rust/Python server: {:.2} sequential, {:.2} with {threads} threads",
            self.rust.0 / self.python.0,
            self.rust.1 / self.python.1
        )
    }
}

/// The Python half of the bench (`bench.py`, run by the workspace's pinned
/// Python environment, or `PEER_PYTHON`).
pub mod python {
    use std::process::Command;

    use super::*;

    const SCRIPT: &str = include_str!("bench.py");

    fn setup(what: impl fmt::Display) -> Error {
        Error::BenchSetup(std::io::Error::other(what.to_string()))
    }

    fn script(python: &std::path::Path, args: &[&str]) -> Command {
        let mut command = Command::new(python);
        command.arg("-c").arg(SCRIPT).args(args);
        command
    }

    /// Calls/s of `calls` calls over `threads` threads to `uri`.
    fn calls_per_second(python: &std::path::Path, uri: &str, threads: usize) -> Result<f64> {
        let output = script(
            python,
            &["call", uri, &PYTHON_CALLS.to_string(), &threads.to_string()],
        )
        .output()
        .map_err(Error::BenchSetup)?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim().parse().map_err(|_| {
            setup(format!(
                "Python's bench client failed: {}",
                String::from_utf8_lossy(&output.stderr).trim_end()
            ))
        })
    }

    /// Runs Python's client against a server of this crate (on a thread of
    /// its own) and against Python's server, sequential and with `threads`.
    pub async fn run(threads: usize) -> Result<PythonReport> {
        let python = plumbing::python::try_python().map_err(setup)?;
        let rust_server = spawn_server_thread(|listener, stopped| async move {
            serve(listener, crate::DEFAULT_NAME, async {
                let _ = stopped.await;
            })
            .await
        })
        .map_err(Error::BenchSetup)?;
        let rust_uri = format!("PYRO:{}@{}", crate::DEFAULT_NAME, rust_server.addr);
        let (python_server, lines) =
            plumbing::child::spawn_lines(script(&python, &["serve"])).map_err(Error::BenchSetup)?;
        let python_uri = tokio::task::spawn_blocking(move || {
            lines.recv_timeout(std::time::Duration::from_secs(30))
        })
        .await
        .map_err(setup)?
        .map_err(|_| setup("Python's bench server did not start"))?;
        let measure = move || -> Result<PythonReport> {
            let rust = (
                calls_per_second(&python, &rust_uri, 1)?,
                calls_per_second(&python, &rust_uri, threads)?,
            );
            let python_side = (
                calls_per_second(&python, &python_uri, 1)?,
                calls_per_second(&python, &python_uri, threads)?,
            );
            Ok(PythonReport {
                threads,
                rust,
                python: python_side,
            })
        };
        let report = tokio::task::spawn_blocking(measure).await.map_err(setup)?;
        drop(python_server);
        report
    }
}
