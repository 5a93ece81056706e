//! The client side: a proxy for one remote object, as Python's
//! `Pyro4.Proxy` is.
//!
//! [`Proxy::connect`] opens a connection and makes the handshake (CONNECT
//! with metadata requested; the reply lists the methods); [`Proxy::call`]
//! sends one INVOKE in serpent and waits for its RESULT. Calls on one proxy
//! go one at a time, on one connection, as in Python.

use plumbing::tls::{ClientStream, ClientTls};

use crate::call::{Call, PayloadError, PyroException, Serializer};
use crate::correlation;
use crate::io::{MAX_MESSAGE, ReadError, read_message, write_message};
use crate::message::{FLAG_EXCEPTION, FLAG_META_ON_CONNECT, Message, MessageType};
use crate::serpent::Value;
use crate::uri::PyroUri;

/// What can go wrong talking to a Pyro object.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot connect to {uri}")]
    Connect { uri: String, source: std::io::Error },
    #[error("the connection to {uri} failed")]
    Read { uri: String, source: ReadError },
    #[error("the connection to {uri} closed")]
    Closed { uri: String },
    #[error("connection to {uri} rejected: {reason}")]
    Rejected { uri: String, reason: String },
    #[error("{uri} sent a reply that cannot be read")]
    Payload { uri: String, source: PayloadError },
    #[error("{uri} broke the protocol: {reason}")]
    Protocol { uri: String, reason: String },
    #[error("{uri} has no method {method} (it offers {offered})")]
    NoSuchMethod {
        uri: String,
        method: String,
        offered: String,
    },
    #[error("the connection to {uri} was left mid-call by a call that gave up; connect again")]
    Abandoned { uri: String },
    /// The remote call raised an exception.
    #[error("{0}")]
    Remote(PyroException),
}

impl ProxyError {
    /// Whether the connection is unusable after this error (anything but a
    /// remote exception or an unknown method).
    pub fn is_broken(&self) -> bool {
        !matches!(
            self,
            ProxyError::Remote(_) | ProxyError::NoSuchMethod { .. }
        )
    }
}

/// A connected proxy for the object at a [`PyroUri`].
#[derive(Debug)]
pub struct Proxy {
    uri: PyroUri,
    stream: ClientStream,
    seq: u16,
    methods: Vec<String>,
    /// What the daemon's CONNECTOK carried besides the metadata.
    connect_annotations: Vec<([u8; 4], Vec<u8>)>,
    /// Set while a call waits for its reply: a call whose future was dropped
    /// (a timeout) leaves the reply unread, and the connection with it.
    in_call: bool,
}

impl Proxy {
    /// Connects to the object at `uri` and makes the handshake.
    pub async fn connect(uri: &PyroUri) -> Result<Proxy, ProxyError> {
        Self::connect_with(uri, None).await
    }

    /// Connects to the object at `uri`, over TLS with `tls` (as Pyro4 with
    /// `SSL` set: the whole connection, the server's certificate checked
    /// for the URI's host), and makes the handshake.
    pub async fn connect_with(uri: &PyroUri, tls: Option<&ClientTls>) -> Result<Proxy, ProxyError> {
        let stream = plumbing::tls::connect((uri.host.as_str(), uri.port), &uri.host, tls)
            .await
            .map_err(|source| ProxyError::Connect {
                uri: uri.to_string(),
                source,
            })?;
        let mut proxy = Proxy {
            uri: uri.clone(),
            stream,
            seq: 0,
            methods: Vec::new(),
            connect_annotations: Vec::new(),
            in_call: false,
        };
        let hello = Value::Dict(vec![
            (Value::str("handshake"), Value::str("hello")),
            (Value::str("object"), Value::str(&uri.object)),
        ]);
        let mut connect = Message::new(MessageType::Connect, 0, Serializer::Serpent.dumps(&hello));
        connect.flags = FLAG_META_ON_CONNECT;
        let answer = proxy.exchange(&connect).await?;
        let data = proxy.payload(&answer)?;
        match answer.kind {
            MessageType::ConnectOk => {
                proxy.methods = methods_of(&data)
                    .ok_or_else(|| proxy.protocol("CONNECTOK without the object's methods"))?;
                proxy.connect_annotations = answer.annotations;
                Ok(proxy)
            }
            MessageType::ConnectFail => Err(ProxyError::Rejected {
                uri: uri.to_string(),
                reason: data.as_str().unwrap_or("no reason given").to_owned(),
            }),
            other => Err(proxy.protocol(&format!("a {other:?} answered CONNECT"))),
        }
    }

    pub fn uri(&self) -> &PyroUri {
        &self.uri
    }

    /// The address the connection went to.
    pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        plumbing::tls::tcp(&self.stream).peer_addr()
    }

    /// The methods the object exposes.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// The annotation `key` of the daemon's CONNECTOK answer, if it sent one.
    pub fn connect_annotation(&self, key: [u8; 4]) -> Option<&[u8]> {
        self.connect_annotations
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, data)| data.as_slice())
    }

    /// Calls `method(*args, **kwargs)` on the object, with the current
    /// correlation id ([`correlation::current`]) if there is one.
    pub async fn call(
        &mut self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<Value, ProxyError> {
        if !self.methods.iter().any(|m| m == method) {
            return Err(ProxyError::NoSuchMethod {
                uri: self.uri.to_string(),
                method: method.to_owned(),
                offered: self.methods.join(", "),
            });
        }
        let call = Call {
            object: self.uri.object.clone(),
            method: method.to_owned(),
            args,
            kwargs,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut invoke = Message::new(
            MessageType::Invoke,
            self.seq,
            Serializer::Serpent.dumps_call(&call),
        );
        // As a Python proxy does: the current correlation id goes along.
        if let Some(id) = correlation::current() {
            invoke.annotations.push(correlation::annotation(id));
        }
        let answer = self.exchange(&invoke).await?;
        if answer.kind != MessageType::Result || answer.seq != self.seq {
            return Err(self.protocol(&format!(
                "a {:?} with sequence {} answered call {}",
                answer.kind, answer.seq, self.seq
            )));
        }
        let value = self.payload(&answer)?;
        if answer.flags & FLAG_EXCEPTION != 0 {
            return Err(ProxyError::Remote(PyroException::from_value(&value)));
        }
        Ok(value)
    }

    /// Checks that the object's daemon answers (a Pyro PING).
    pub async fn ping(&mut self) -> Result<(), ProxyError> {
        self.seq = self.seq.wrapping_add(1);
        let answer = self
            .exchange(&Message::new(MessageType::Ping, self.seq, b"ping".to_vec()))
            .await?;
        if answer.kind != MessageType::Ping {
            return Err(self.protocol("PING was not answered with PING"));
        }
        Ok(())
    }

    async fn exchange(&mut self, request: &Message) -> Result<Message, ProxyError> {
        if self.in_call {
            return Err(ProxyError::Abandoned {
                uri: self.uri.to_string(),
            });
        }
        self.in_call = true;
        let uri = || self.uri.to_string();
        write_message(&mut self.stream, request)
            .await
            .map_err(|source| ProxyError::Read {
                uri: uri(),
                source: source.into(),
            })?;
        let answer = read_message(&mut self.stream, MAX_MESSAGE)
            .await
            .map_err(|source| ProxyError::Read { uri: uri(), source })?
            .ok_or_else(|| ProxyError::Closed { uri: uri() })?;
        self.in_call = false;
        Ok(answer)
    }

    /// The payload of `answer`, in serpent as requested.
    fn payload(&self, answer: &Message) -> Result<Value, ProxyError> {
        if answer.serializer != Serializer::Serpent.id() {
            return Err(self.protocol(&format!(
                "the reply uses serializer {}, not serpent as requested",
                answer.serializer
            )));
        }
        let payload = answer
            .inflated_payload(crate::io::MAX_REQUEST)
            .map_err(|reason| self.protocol(&reason))?;
        Serializer::Serpent
            .loads(&payload)
            .map_err(|source| ProxyError::Payload {
                uri: self.uri.to_string(),
                source,
            })
    }

    fn protocol(&self, reason: &str) -> ProxyError {
        ProxyError::Protocol {
            uri: self.uri.to_string(),
            reason: reason.to_owned(),
        }
    }
}

fn methods_of(data: &Value) -> Option<Vec<String>> {
    match data.get("meta")?.get("methods")? {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => items
            .iter()
            .map(|m| m.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}
