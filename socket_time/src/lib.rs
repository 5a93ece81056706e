//! The simplest socket pattern: connect, receive one line, done.
//!
//! This is the chapter's `server.py` / `client.py` pair. The server accepts a
//! connection, prints who bought a fairy-tale book, sends the current local
//! time in Python's `time.ctime()` format followed by `\r\n` (ASCII), and
//! closes. The close *is* the framing: the client reads until end of stream,
//! so the message may arrive in any number of TCP segments (the original
//! client did a single `recv`, which only works by luck on loopback).
//!
//! The wire format is kept byte for byte, so the Python programs and these
//! interoperate in both directions.
//!
//! A server and a client in one program:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?.to_string();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(socket_time::serve(listener, false, async {
//!     let _ = stopped.await;
//! }));
//! let time = socket_time::fetch_time(&addr).await?;
//! println!("{}", socket_time::checkout_line(&time));
//! let _ = stop.send(());
//! server.await?;
//! # Ok(())
//! # }
//! ```

pub mod commands;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone};
use plumbing::accept::{self, AcceptConfig, Connection};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where the chapter's server listens (`server.py` used port 9999).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9999";

/// A `ctime()` line is 24 characters plus `\r\n`; anything much longer is not
/// a time server talking.
pub const MAX_REPLY: u64 = 256;

/// How long the client waits to connect, and then for the whole reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to the time server at {addr} (is `socket_time server` running there?)")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("the time server at {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("reading the reply from {addr} failed")]
    Read {
        addr: String,
        source: std::io::Error,
    },
    #[error("the reply from {addr} is not a time line: {reason}")]
    BadReply { addr: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a time like Python's `time.ctime()`: `Tue Nov 24 06:29:34 2026`,
/// with the day of the month padded by a space (`Nov  4`).
pub fn ctime<Tz: TimeZone>(time: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    time.format("%a %b %e %H:%M:%S %Y").to_string()
}

/// The bytes the server sends: the current local time, `\r\n`, ASCII.
pub fn time_reply() -> String {
    format!("{}\r\n", ctime(&Local::now()))
}

/// The line the server prints for each connection, as `server.py` printed it
/// (Python's `print("...", addr)` of the address tuple).
pub fn sale_line(peer: SocketAddr) -> String {
    format!(
        "Telah terjual buku dongeng oleh ip [port]('{}', {})",
        peer.ip(),
        peer.port()
    )
}

/// The line the client prints with the time it received.
pub fn checkout_line(time: &str) -> String {
    format!("Telah melakukan check out buku dongeng pada:{time}")
}

/// Connections served at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 512;

/// Serves the time on `listener` until `shutdown` completes, then waits for
/// the connections in flight and returns.
///
/// Connections are accepted by the workspace's one accept loop
/// ([`plumbing::accept`]): each runs in its own task, so a slow peer never
/// delays the others, at most [`MAX_CONNECTIONS`] at once, and a peer that
/// takes no byte for [`CLIENT_TIMEOUT`] is dropped. With `announce` the
/// chapter's line is printed per connection (benches turn it off to measure
/// the protocol, not the terminal).
pub async fn serve(listener: TcpListener, announce: bool, shutdown: impl Future<Output = ()>) {
    let config = AcceptConfig {
        max_connections: MAX_CONNECTIONS,
        idle_timeout: CLIENT_TIMEOUT,
        ..AcceptConfig::new("time server")
    };
    let send = move |connection: Connection| async move {
        if announce {
            // One locked write per line keeps lines whole under concurrency.
            let _ = writeln!(std::io::stdout().lock(), "{}", sale_line(connection.peer));
        }
        if let Err(err) = send_time(connection.stream).await {
            tracing::debug!(peer = %connection.peer, %err, "could not send the time");
        }
    };
    accept::serve(listener, &config, shutdown, send, accept::close).await;
}

async fn send_time(mut socket: impl AsyncWrite + Unpin) -> std::io::Result<()> {
    socket.write_all(time_reply().as_bytes()).await?;
    socket.shutdown().await
}

/// Connects to a time server and returns the time it sent, without the
/// trailing `\r\n`.
pub async fn fetch_time(addr: &str) -> Result<String> {
    let work = async {
        let socket = TcpStream::connect(addr)
            .await
            .map_err(|source| Error::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        read_reply(socket, addr).await
    };
    tokio::time::timeout(CLIENT_TIMEOUT, work)
        .await
        .map_err(|_| Error::Timeout {
            addr: addr.to_owned(),
            timeout: CLIENT_TIMEOUT,
        })?
}

/// Reads a whole reply (until the server closes) and checks it is one ASCII
/// line ending in `\r\n`.
async fn read_reply(socket: TcpStream, addr: &str) -> Result<String> {
    let mut reply = Vec::with_capacity(32);
    socket
        .take(MAX_REPLY + 1)
        .read_to_end(&mut reply)
        .await
        .map_err(|source| Error::Read {
            addr: addr.to_owned(),
            source,
        })?;
    let bad = |reason: &str| Error::BadReply {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    if reply.len() as u64 > MAX_REPLY {
        return Err(bad("longer than a time line"));
    }
    if !reply.is_ascii() {
        return Err(bad("not ASCII"));
    }
    let text = String::from_utf8(reply).map_err(|_| bad("not ASCII"))?;
    let line = text
        .strip_suffix("\r\n")
        .ok_or_else(|| bad(&format!("{text:?} does not end with \\r\\n")))?;
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};

    #[test]
    fn ctime_matches_python() {
        let t = NaiveDate::from_ymd_opt(2026, 11, 24)
            .and_then(|d| d.and_hms_opt(6, 29, 34))
            .expect("valid date")
            .and_utc();
        assert_eq!(ctime(&t), "Tue Nov 24 06:29:34 2026");
        let t = t.with_timezone(&Utc) - chrono::Duration::days(20);
        // Single-digit days are padded with a space, as C's asctime does.
        assert_eq!(ctime(&t), "Wed Nov  4 06:29:34 2026");
    }

    #[test]
    fn sale_line_matches_python_tuple() {
        let peer: SocketAddr = "127.0.0.1:50123".parse().expect("valid address");
        assert_eq!(
            sale_line(peer),
            "Telah terjual buku dongeng oleh ip [port]('127.0.0.1', 50123)"
        );
    }
}
