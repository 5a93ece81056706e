//! The broker setting, parsed once: one AMQP URL, or Celery's failover list
//! of several (`amqp://h1//;amqp://h2//`), tried in order.
//!
//! Every command carries a [`Broker`]; its URLs are checked when it is
//! parsed (so a typo fails before anything connects) and shown with their
//! passwords hidden wherever they are printed or logged.
//!
//! An `amqps://` URL is AMQP over TLS (rustls), with its settings in
//! RabbitMQ's URI query parameters: `cacertfile` (the CA to trust; else the
//! system's store), `certfile` and `keyfile` (a client certificate, for a
//! broker with `fail_if_no_peer_cert`), `verify=verify_peer|verify_none` and
//! `server_name_indication` (the name the certificate is checked for; else
//! the URL's host). Their files are read when the setting is parsed. A list
//! may mix plain and TLS nodes.
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
//! // TLS, trusting the system's CA store:
//! let tls: Broker = "amqps://user:secret@broker.example.com/%2f".parse().unwrap();
//! assert!(tls.is_tls());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::tcp::{AMQPUriTcpExt, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};
use plumbing::tls::{ClientSettings, ClientTls, Identity, Verify};
use serde_json::{Value, json};

use crate::{Error, Result};

/// The chapter's broker (`amqp://guest@localhost//`), spelled out.
pub const DEFAULT_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The environment variable that overrides it, beside `--broker`.
pub const BROKER_ENV: &str = "AMQP_ADDR";
/// The longest a connection to one broker URL may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The URI query parameters that carry TLS settings (RabbitMQ's names).
const TLS_PARAMETERS: [&str; 5] = [
    "cacertfile",
    "certfile",
    "keyfile",
    "verify",
    "server_name_indication",
];

/// One or more AMQP URLs for the same broker (the nodes of a cluster),
/// tried in order: a connection goes to the URL that last worked, and past
/// one that fails to the next, round the list (Celery's round-robin
/// failover). Clones share that position.
#[derive(Clone, Debug)]
pub struct Broker {
    nodes: Arc<[Node]>,
    current: Arc<AtomicUsize>,
}

/// One URL of the list, checked, with its TLS settings read.
#[derive(Debug)]
struct Node {
    /// As given (for messages, redacted).
    url: String,
    /// Parsed, without the TLS parameters lapin does not know.
    uri: AMQPUri,
    tls: Option<NodeTls>,
}

/// An amqps node's TLS: the settings (for `inspect stats`) and what a
/// connection is made with.
#[derive(Debug)]
struct NodeTls {
    settings: ClientSettings,
    /// The name the certificate is checked for.
    server_name: String,
    config: Arc<rustls::ClientConfig>,
}

impl Broker {
    /// How many URLs the list has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: a broker setting has at least one URL.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The URL the next connection tries first, password hidden.
    pub fn current(&self) -> String {
        redact(&self.current_node().url)
    }

    /// Whether the URL the next connection tries first is amqps.
    pub fn is_tls(&self) -> bool {
        self.current_node().tls.is_some()
    }

    fn current_node(&self) -> &Node {
        &self.nodes[self.current.load(Ordering::Relaxed) % self.nodes.len()]
    }

    /// The broker in use as Celery's `inspect stats` shows it: host, port,
    /// vhost, user, and `ssl` as the TLS settings (Python's
    /// `broker_use_ssl`) or `false`.
    pub fn stats(&self) -> Value {
        let node = self.current_node();
        let ssl = match &node.tls {
            None => Value::Bool(false),
            Some(tls) => {
                let path = |path: &std::path::PathBuf| Value::from(path.display().to_string());
                let (certfile, keyfile) = match &tls.settings.identity {
                    Some(identity) => (path(&identity.cert), path(&identity.key)),
                    None => (Value::Null, Value::Null),
                };
                let mut ssl = json!({
                    "ca_certs": tls.settings.ca_file.as_ref().map_or(Value::Null, path),
                    "certfile": certfile,
                    "keyfile": keyfile,
                    // Python's ssl.CERT_REQUIRED and ssl.CERT_NONE.
                    "cert_reqs": if tls.settings.verify == Verify::Peer { 2 } else { 0 },
                });
                if tls.server_name != node.uri.authority.host {
                    ssl["server_hostname"] = tls.server_name.clone().into();
                }
                ssl
            }
        };
        json!({
            "hostname": node.uri.authority.host,
            "userid": node.uri.authority.userinfo.username,
            "virtual_host": node.uri.vhost,
            "port": node.uri.authority.port,
            "insist": false,
            "ssl": ssl,
            "transport": "amqp",
            "login_method": "PLAIN",
            "uri_prefix": null,
            "heartbeat": 0,
            "connect_timeout": CONNECT_TIMEOUT.as_secs(),
            "transport_options": {},
            "alternates": self.nodes.iter().map(|node| redact(&node.url)).collect::<Vec<_>>(),
            "failover_strategy": "round-robin",
        })
    }

    /// Opens a bare stream to the URL the next connection tries first,
    /// over TLS for amqps (for the raw connection of
    /// [`crate::amqp::quarantine`]); also that node's parsed URL.
    pub(crate) async fn connect_raw(
        &self,
    ) -> std::io::Result<(plumbing::tls::ClientStream, AMQPUri)> {
        let node = self.current_node();
        let host = node.uri.authority.host.as_str();
        let tls = node.tls.as_ref().map(|tls| {
            let client = ClientTls::new(tls.config.clone());
            match plumbing::tls::server_name(&tls.server_name) {
                Ok(name) => client.with_server_name(name),
                Err(_) => client,
            }
        });
        let stream =
            plumbing::tls::connect((host, node.uri.authority.port), host, tls.as_ref()).await?;
        Ok((stream, node.uri.clone()))
    }

    /// Connects to the first URL that answers, starting with the one that
    /// last worked. The error is the last URL's: an unreachable broker (and
    /// how to start one), a refused login or vhost, a failed TLS handshake.
    pub async fn connect(&self) -> Result<Connection> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..self.nodes.len() {
            let index = (start + offset) % self.nodes.len();
            let node = &self.nodes[index];
            match node.connect().await {
                Ok(connection) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(connection);
                }
                Err(err) => {
                    if self.nodes.len() > 1 {
                        tracing::warn!(url = %redact(&node.url), %err, "broker unreachable; trying the next");
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
        let urls: Vec<&str> = setting
            .split(';')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(Error::BadUrl {
                url: setting.to_owned(),
                reason: "no URL given".into(),
            });
        }
        let nodes = urls
            .into_iter()
            .map(Node::parse)
            .collect::<Result<Vec<_>>>()?;
        Ok(Broker {
            nodes: nodes.into(),
            current: Arc::default(),
        })
    }
}

impl fmt::Display for Broker {
    /// The URLs, passwords hidden, separated by `;`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.nodes.iter().map(|node| redact(&node.url)).collect();
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
    // The credentials end at the last '@' before the query (a password may
    // hold a '/'); with no scheme, the text is still searched, since a
    // mistyped setting is echoed in its error.
    let start = url
        .find("://")
        .filter(|&end| {
            url[..end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .map_or(0, |end| end + 3);
    let query = url.find('?').filter(|&q| q >= start).unwrap_or(url.len());
    let Some(at) = url[start..query].rfind('@').map(|at| start + at) else {
        return url.to_owned();
    };
    match url[start..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..start], &url[at..]),
        None => url.to_owned(),
    }
}

impl Node {
    /// Checks `url` and reads its TLS settings' files.
    fn parse(url: &str) -> Result<Node> {
        let bad = |reason: &str| Error::BadUrl {
            url: redact(url),
            reason: reason.to_owned(),
        };
        let tls_wanted = if url.starts_with("amqps://") {
            true
        } else if url.starts_with("amqp://") {
            false
        } else {
            return Err(bad("it must start with amqp:// or amqps://"));
        };
        let (kept, tls_parameters) = split_tls_parameters(url).map_err(|reason| bad(&reason))?;
        let uri: AMQPUri = kept.parse().map_err(|reason: String| bad(&reason))?;
        if !tls_wanted {
            if let Some((name, _)) = tls_parameters.first() {
                return Err(bad(&format!(
                    "{name} is a TLS setting, and this is a plain amqp:// URL: write amqps://"
                )));
            }
            return Ok(Node {
                url: url.to_owned(),
                uri,
                tls: None,
            });
        }
        let mut settings = ClientSettings::default();
        let mut cert = None;
        let mut key = None;
        let mut server_name = uri.authority.host.clone();
        for (name, value) in tls_parameters {
            match name.as_str() {
                "cacertfile" => settings.ca_file = Some(value.into()),
                "certfile" => cert = Some(value),
                "keyfile" => key = Some(value),
                "server_name_indication" => server_name = value,
                "verify" => {
                    settings.verify = match value.as_str() {
                        "verify_peer" => Verify::Peer,
                        "verify_none" => Verify::None,
                        other => {
                            return Err(bad(&format!(
                                "verify={other}: write verify_peer or verify_none"
                            )));
                        }
                    }
                }
                _ => unreachable!("split_tls_parameters keeps only TLS_PARAMETERS"),
            }
        }
        settings.identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(Identity::new(cert, key)),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "certfile and keyfile go together: give both or neither",
                ));
            }
        };
        plumbing::tls::server_name(&server_name).map_err(|reason| bad(&reason))?;
        let config = settings.config().map_err(|source| Error::TlsSettings {
            url: redact(url),
            source: Box::new(source),
        })?;
        Ok(Node {
            url: url.to_owned(),
            uri,
            tls: Some(NodeTls {
                settings,
                server_name,
                config,
            }),
        })
    }

    async fn connect(&self) -> Result<Connection> {
        let properties =
            ConnectionProperties::default().with_connection_name("celery_pages".into());
        let connecting = async {
            let Some(tls) = &self.tls else {
                return Connection::connect_uri(self.uri.clone(), properties).await;
            };
            let runtime = lapin::runtime::default_runtime()?;
            let connector = RustlsConnector::from(tls.config.clone());
            let server_name = tls.server_name.clone();
            let connect = async move |uri: AMQPUri, runtime| {
                // TCP as for amqp://, then our own TLS on it (lapin's own
                // would take neither verify_none nor another name).
                let plain = AMQPUri {
                    scheme: AMQPScheme::AMQP,
                    ..uri
                };
                let stream = plain.connect_async(&runtime).await?;
                let handshake = stream.into_rustls(&connector, &server_name);
                match tokio::time::timeout(plumbing::tls::HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(handshaken) => Ok(handshaken.map_err(plumbing::tls::handshake_failed)?),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no TLS handshake: is this a plain amqp:// port? (amqps is usually 5671)",
                    )
                    .into()),
                }
            };
            Connection::connector(self.uri.clone(), runtime, connect, properties).await
        };
        // lapin has been seen to never answer a refused connection: bound it,
        // or a worker's reconnect loop would wait for ever.
        let url = redact(&self.url);
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| match &self.tls {
                None => Error::BrokerTimeout {
                    url: url.clone(),
                    timeout: CONNECT_TIMEOUT,
                },
                Some(_) => Error::Tls {
                    url: url.clone(),
                    reason: format!("no AMQP answer within {CONNECT_TIMEOUT:?}"),
                },
            })?;
        connected.map_err(|source| self.connect_error(url, source))
    }

    /// What a failed connection means, in one line.
    fn connect_error(&self, url: String, source: lapin::Error) -> Error {
        use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
        match source.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                    Error::LoginRefused { url, source }
                }
                _ => Error::ConnectionRefused { url, source },
            },
            lapin::ErrorKind::IOError(io)
                if self.tls.is_some() && io.kind() != std::io::ErrorKind::ConnectionRefused =>
            {
                Error::Tls {
                    url,
                    reason: plumbing::tls::client_failure(io).unwrap_or_else(|| io.to_string()),
                }
            }
            // A TLS listener answers AMQP's protocol header with a TLS
            // alert, or resets the connection.
            lapin::ErrorKind::ParsingError(_) if self.tls.is_none() => Error::NotAmqp { url },
            lapin::ErrorKind::IOError(io)
                if self.tls.is_none()
                    && matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                    ) =>
            {
                Error::NotAmqp { url }
            }
            _ => Error::Broker { url, source },
        }
    }
}

/// Splits RabbitMQ's TLS parameters off `url`'s query: the URL without them
/// (for lapin), and each one found, its value percent-decoded.
fn split_tls_parameters(url: &str) -> std::result::Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if TLS_PARAMETERS.contains(&name) {
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("{name} is not UTF-8 once decoded"))?;
            tls.push((name.to_owned(), value.into_owned()));
        } else {
            kept.push(pair);
        }
    }
    let url = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((url, tls))
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
        assert!("http://h1//".parse::<Broker>().is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]

        /// Any setting parses or is refused without a panic, and what is
        /// shown of it never holds the password.
        #[test]
        fn any_setting_is_parsed_or_refused_and_never_shows_its_password(
            scheme in "amqps?://|http://|",
            user in "[a-z]{0,6}",
            host in "[a-z0-9.\\[\\]:]{0,12}",
            rest in "[/%2fA-Za-z0-9?&=_.;:@-]{0,40}",
        ) {
            let password = "s3cr3tpass";
            let setting = format!("{scheme}{user}:{password}@{host}{rest}");
            let shown = match setting.parse::<Broker>() {
                Ok(broker) => broker.to_string(),
                Err(err) => err.to_string(),
            };
            proptest::prop_assert!(!shown.contains(password), "{shown}");
            let _ = split_tls_parameters(&setting);
        }
    }
}
