//! The `main` preamble every binary shares, and parsers for the values its
//! flags take.
//!
//! A binary's `main` is one call:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     plumbing::cli::run(plumbing::cli::Runtime::CurrentThread, "warn,my_example=info", async {
//!         println!("hello");
//!         Ok(())
//!     })
//! }
//! ```
//!
//! It sets up logging (to stderr, filtered by `RUST_LOG`, coloured only on
//! a terminal), builds the runtime, runs the command, and turns an error into
//! one line, `error: <what failed>: <why>`, and exit code 1. No backtrace,
//! no debug structures: a user reads the line and knows what to do.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Which tokio runtime a command runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// One thread: best for servers whose requests are microseconds of work
    /// (measured faster on two cores than a work-stealing pool).
    CurrentThread,
    /// A work-stealing pool, one thread per core.
    MultiThread,
}

/// Sets up logging, runs `command` on a `runtime`, prints its error if any,
/// and returns the exit code. `default_log` is the filter used when
/// `RUST_LOG` is not set, e.g. `"warn,socket_time=info,plumbing=info"`.
pub fn run(
    runtime: Runtime,
    default_log: &str,
    command: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    init_logging(default_log);
    let built = match runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build();
    let outcome = match built {
        Ok(rt) => {
            let outcome = rt.block_on(command);
            // The command is over: what still runs is abandoned, not waited
            // for (a blocking task a worker stopped waiting for at its time
            // limit must not hold the process).
            rt.shutdown_background();
            outcome
        }
        Err(err) => Err(anyhow::Error::new(err).context("cannot start the async runtime")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", crate::describe(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`), with colour
/// codes only when stderr is a terminal.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}

/// Parses `IP:PORT` for a flag, explaining the form when it is not that.
///
/// ```
/// use plumbing::cli::socket_addr;
/// assert_eq!(socket_addr("127.0.0.1:9999").unwrap().port(), 9999);
/// assert!(socket_addr("127.0.0.1").unwrap_err().contains("IP:PORT"));
/// ```
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
        let hint = if text.parse::<std::net::IpAddr>().is_ok() {
            format!(" (add a port: {text}:PORT)")
        } else if host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
        {
            String::new()
        } else {
            " (a host name is not accepted here; use an IP address such as 127.0.0.1)".to_owned()
        };
        format!("{text:?} is not an address of the form IP:PORT, e.g. 127.0.0.1:9999{hint}")
    })
}

/// Checks `HOST:PORT` (a host name is allowed) for a flag naming a server to
/// connect to, explaining the form when the port is missing.
///
/// ```
/// use plumbing::cli::host_port;
/// assert_eq!(host_port("localhost:9090").unwrap(), "localhost:9090");
/// assert!(host_port("localhost").unwrap_err().contains("HOST:PORT"));
/// ```
pub fn host_port(text: &str) -> Result<String, String> {
    let port_ok = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if port_ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not an address of the form HOST:PORT, e.g. 127.0.0.1:9090"
        ))
    }
}

/// Binds a server's listener on `addr`, saying which address could not be
/// bound, and warns when it is open to the whole network (`0.0.0.0`).
pub async fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}"))
    })?;
    if addr.ip().is_unspecified() {
        tracing::warn!("listening on {addr}: anyone on the network can connect");
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_explain_their_form() {
        assert!(socket_addr("[::1]:80").is_ok());
        let err = socket_addr("127.0.0.1").unwrap_err();
        assert!(err.contains("add a port"), "{err}");
        let err = socket_addr("localhost:80").unwrap_err();
        assert!(err.contains("host name"), "{err}");
        assert!(host_port("[::1]:80").is_ok());
        assert!(host_port(":80").is_err());
        assert!(host_port("host:99999").is_err());
    }
}
