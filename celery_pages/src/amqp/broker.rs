//! The broker setting, parsed once: one AMQP URL, or Celery's failover list
//! of several (`amqp://h1//;amqp://h2//`), tried in order.
//!
//! Every command carries a [`Broker`]; its URLs are checked when it is
//! parsed (so a typo fails before anything connects) and shown with their
//! passwords hidden wherever they are printed or logged.
//!
//! ```
//! use celery_pages::amqp::broker::Broker;
//!
//! let broker: Broker = "amqp://guest:secret@h1:5672/%2f;amqp://guest:secret@h2:5672/%2f"
//!     .parse()
//!     .unwrap();
//! assert_eq!(broker.len(), 2);
//! assert_eq!(
//!     broker.to_string(),
//!     "amqp://guest:***@h1:5672/%2f;amqp://guest:***@h2:5672/%2f"
//! );
//! assert!("localhost".parse::<Broker>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::{Error, Result};

/// The chapter's broker (`amqp://guest@localhost//`), spelled out.
pub const DEFAULT_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The environment variable that overrides it, beside `--broker`.
pub const BROKER_ENV: &str = "AMQP_ADDR";
/// The longest a connection to one broker URL may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One or more AMQP URLs for the same broker (the nodes of a cluster),
/// tried in order: a connection goes to the URL that last worked, and past
/// one that fails to the next, round the list (Celery's round-robin
/// failover). Clones share that position.
#[derive(Clone, Debug)]
pub struct Broker {
    urls: Arc<[String]>,
    current: Arc<AtomicUsize>,
}

impl Broker {
    /// How many URLs the list has.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Never true: a broker setting has at least one URL.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The URL the next connection tries first, password hidden.
    pub fn current(&self) -> String {
        redact(self.current_url())
    }

    /// The URL the next connection tries first, as it is (for the raw
    /// connection of [`crate::amqp::quarantine`]).
    pub(crate) fn current_url(&self) -> &str {
        &self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// Connects to the first URL that answers, starting with the one that
    /// last worked. The error is the last URL's: an unreachable broker (and
    /// how to start one), a refused login or vhost.
    pub async fn connect(&self) -> Result<Connection> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..self.urls.len() {
            let index = (start + offset) % self.urls.len();
            match connect_url(&self.urls[index]).await {
                Ok(connection) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(connection);
                }
                Err(err) => {
                    if self.urls.len() > 1 {
                        tracing::warn!(url = %redact(&self.urls[index]), %err, "broker unreachable; trying the next");
                    }
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.expect("a broker has at least one URL"))
    }

    /// Moves past the URL in use, after its connection was lost: the next
    /// [`connect`](Self::connect) tries the next node first.
    pub fn fail_over(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for Broker {
    fn default() -> Self {
        DEFAULT_BROKER
            .parse()
            .expect("the default broker URL is valid")
    }
}

impl FromStr for Broker {
    type Err = Error;

    /// One URL, or several separated by `;` (Celery's `broker_url` list).
    fn from_str(setting: &str) -> Result<Self> {
        let urls: Vec<String> = setting
            .split(';')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(Error::BadUrl {
                url: setting.to_owned(),
                reason: "no URL given".into(),
            });
        }
        for url in &urls {
            check_url(url)?;
        }
        Ok(Broker {
            urls: urls.into(),
            current: Arc::default(),
        })
    }
}

impl fmt::Display for Broker {
    /// The URLs, passwords hidden, separated by `;`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.write_str(&shown.join(";"))
    }
}

/// A broker URL with its password hidden, for messages and logs.
///
/// ```
/// assert_eq!(
///     celery_pages::amqp::broker::redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
///     "amqp://guest:***@127.0.0.1:5672/%2f"
/// );
/// ```
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Checks that `url` is an AMQP URL this crate can use.
fn check_url(url: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::BadUrl {
            url: redact(url),
            reason: reason.to_owned(),
        })
    };
    if url.starts_with("amqps://") {
        return bad("amqps:// (TLS) is not supported: lapin is built without TLS here");
    }
    if !url.starts_with("amqp://") {
        return bad("it must start with amqp://");
    }
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(_) => Ok(()),
        Err(reason) => bad(&reason),
    }
}

/// Connects to one checked URL.
async fn connect_url(url: &str) -> Result<Connection> {
    let connecting = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("celery_pages".into()),
    );
    // lapin has been seen to never answer a refused connection: bound it,
    // or a worker's reconnect loop would wait for ever.
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| Error::BrokerTimeout {
            url: redact(url),
            timeout: CONNECT_TIMEOUT,
        })?;
    connected.map_err(|source| {
        use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
        let url = redact(url);
        match source.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                    Error::LoginRefused { url, source }
                }
                _ => Error::ConnectionRefused { url, source },
            },
            _ => Error::Broker { url, source },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact(DEFAULT_BROKER),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://localhost//"), "amqp://localhost//");
        assert_eq!(
            redact("amqp://guest@localhost//"),
            "amqp://guest@localhost//"
        );
    }

    #[test]
    fn a_list_is_read_as_celery_writes_it() {
        let broker: Broker = "amqp://h1//; amqp://h2//;;amqp://h3//;".parse().unwrap();
        assert_eq!(broker.len(), 3);
        assert_eq!(broker.current(), "amqp://h1//");
        broker.fail_over();
        assert_eq!(broker.current(), "amqp://h2//");
        broker.clone().fail_over();
        assert_eq!(broker.current(), "amqp://h3//", "clones share the position");
        broker.fail_over();
        assert_eq!(broker.current(), "amqp://h1//", "round the list");
    }

    #[test]
    fn every_url_of_a_list_is_checked() {
        let err = "amqp://h1//;localhost".parse::<Broker>().unwrap_err();
        assert!(
            err.to_string().contains("\"localhost\" is not an AMQP URL"),
            "{err}"
        );
        assert!(";".parse::<Broker>().is_err());
        assert!("amqps://h1//".parse::<Broker>().is_err());
    }
}
