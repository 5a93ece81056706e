//! Remote procedure call, found by name: the chapter's first Pyro4 example.
//!
//! A server object with one method, `welcome_message(name)`, registers under
//! the name `server` with the name server ([`rpc_naming`]); the client looks
//! the name up, connects, and calls the method as if it were local. Here the
//! service is a tarpc trait ([`Welcome`]); the name server hands out the
//! address, and the registration is a lease, so a crashed server's name
//! disappears within seconds.
//!
//! The chapter's Python programs mix with these: the server also answers
//! Pyro4 on its port ([`PyroWelcome`], method `welcomeMessage`, the object
//! id being the name it registered), so `pyro_client.py` can buy from it;
//! and [`connect`] speaks Pyro4 to a server the name server knows by a Pyro
//! URI, such as `pyro_server.py`.
//!
//! The whole example in one program:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rpc_naming::NameServerClient;
//!
//! let ns = NameServerClient::connect(&rpc_naming::server::spawn_local(100).await?).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let _lease = ns.claim("server", listener.local_addr()?).await?;
//! tokio::spawn(rpc_welcome::serve(listener, "server", std::future::pending()));
//!
//! let client = rpc_welcome::connect(&ns, "server").await?;
//! let reply = rpc_welcome::buy(&client, "server", "Sistem Terdistribusi").await?;
//! assert_eq!(reply, "Buku dengan judul Sistem Terdistribusi berhasil dibeli!");
//! # Ok(())
//! # }
//! ```

pub mod commands;

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use pyro4_wire::serpent::Value;
use pyro4_wire::{Proxy, ProxyError, PyroException};
use rpc_naming::client::deadline_in;
use rpc_naming::{Endpoint, NameServerClient};
use rpc_transport::{PyroObject, ServerChannel, Service, spawn_request};
use tarpc::client::RpcError;
use tarpc::context::Context;
use tarpc::server::Channel;

/// The name the chapter's server registers under.
pub const DEFAULT_NAME: &str = "server";
/// The client's prompt, as in `pyro_client.py`.
pub const PROMPT: &str = "Mau beli buku dengan judul apa? ";
/// The title the demo buys, and every bench call.
pub const TITLE: &str = "Sistem Terdistribusi";
/// Deadline of one call: past it the client reports the server as hung.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The remote object's interface.
#[tarpc::service]
pub trait Welcome {
    /// The message for a buyer of the book titled `name`.
    async fn welcome_message(name: String) -> String;
}

/// The chapter's reply to buying the book `title`.
pub fn welcome_message(title: &str) -> String {
    format!("Buku dengan judul {title} berhasil dibeli!")
}

/// The line the server prints once it is registered and ready, with the
/// URI a Pyro4 client could use, as `pyro_server.py` prints it.
pub fn ready_line(name: &str, addr: std::net::SocketAddr) -> String {
    format!("Ready. Object uri = PYRO:{name}@{addr}")
}

/// The server object: stateless, so cloning it per connection is free.
#[derive(Clone, Copy, Debug)]
pub struct WelcomeServer;

impl Welcome for WelcomeServer {
    async fn welcome_message(self, _: Context, name: String) -> String {
        welcome_message(&name)
    }
}

/// The method's name in Python, as `pyro_server.py` exposes it.
pub const PYRO_METHOD: &str = "welcomeMessage";
/// Its qualified name, as Python's messages about its arguments say it.
const PYRO_QUALNAME: &str = "Server.welcomeMessage";

/// The server object as Pyro4 clients see it.
#[derive(Clone, Copy, Debug)]
pub struct PyroWelcome;

impl pyro4_wire::daemon::Object for PyroWelcome {
    fn class_name(&self) -> &'static str {
        "Server"
    }

    fn methods(&self) -> &[&'static str] {
        &[PYRO_METHOD]
    }

    async fn invoke(&self, call: pyro4_wire::Call) -> Result<Value, PyroException> {
        let bound = call.bind(PYRO_QUALNAME, &["name"])?;
        match bound.first() {
            Some(Value::Str(title)) => Ok(Value::Str(welcome_message(title))),
            // What the chapter's `"Buku dengan judul " + name + ...` raises.
            other => Err(PyroException::new(
                "builtins.TypeError",
                format!(
                    "can only concatenate str (not \"{}\") to str",
                    other.map_or("NoneType", |value| value.python_type())
                ),
            )),
        }
    }
}

/// Everything that can go wrong for a user of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Naming(#[from] rpc_naming::Error),
    #[error("{name} did not answer (is the server stuck or gone?)")]
    Call { name: String, source: RpcError },
    #[error("{name} did not answer within {CALL_TIMEOUT:?} (is the server stuck?)")]
    Timeout { name: String },
    #[error("the call to {name} failed")]
    Pyro { name: String, source: ProxyError },
    #[error("{name} answered with {reply}, not a string")]
    NotAString { name: String, reply: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Service for WelcomeServer {
    type Req = WelcomeRequest;
    type Resp = WelcomeResponse;

    fn run(
        self,
        channel: ServerChannel<WelcomeRequest, WelcomeResponse>,
    ) -> impl Future<Output = ()> + Send {
        channel.execute(self.serve()).for_each(spawn_request)
    }
}

/// Serves [`WelcomeServer`] on `listener` (plain, or TLS) until `shutdown`
/// completes, over tarpc and, as the object `name` (the name it registers),
/// Pyro4.
pub async fn serve(
    listener: impl Into<rpc_transport::Listener>,
    name: &str,
    shutdown: impl Future<Output = ()>,
) {
    let pyro = PyroObject::new(name, PyroWelcome);
    rpc_transport::serve(listener, "welcome server", shutdown, WelcomeServer, pyro).await;
}

/// A connection to a welcome server, in the protocol its registration
/// calls for.
#[derive(Debug)]
pub enum Connection {
    /// A server of this workspace.
    Tarpc(WelcomeClient),
    /// A Pyro4 server (`pyro_server.py`); one call at a time, as in Python.
    Pyro(tokio::sync::Mutex<Proxy>),
}

impl Connection {
    /// The protocol this connection speaks, for reports.
    pub fn protocol(&self) -> &'static str {
        match self {
            Connection::Tarpc(_) => "tarpc",
            Connection::Pyro(_) => "Pyro4",
        }
    }
}

/// Finds the server registered as `name` and connects to it.
pub async fn connect(ns: &NameServerClient, name: &str) -> Result<Connection> {
    Ok(match ns.connect_to(name).await? {
        Endpoint::Tarpc(transport) => {
            Connection::Tarpc(WelcomeClient::new(Default::default(), transport).spawn())
        }
        Endpoint::Pyro(proxy) => Connection::Pyro(tokio::sync::Mutex::new(proxy)),
    })
}

/// Buys `title` from the server behind `connection`, within [`CALL_TIMEOUT`].
pub async fn buy(connection: &Connection, name: &str, title: &str) -> Result<String> {
    match connection {
        Connection::Tarpc(client) => client
            .welcome_message(deadline_in(CALL_TIMEOUT), title.to_owned())
            .await
            .map_err(|source| Error::Call {
                name: name.to_owned(),
                source,
            }),
        Connection::Pyro(proxy) => {
            let call = async {
                proxy
                    .lock()
                    .await
                    .call(PYRO_METHOD, vec![Value::str(title)], vec![])
                    .await
            };
            let reply = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| Error::Timeout {
                    name: name.to_owned(),
                })?
                .map_err(|source| Error::Pyro {
                    name: name.to_owned(),
                    source,
                })?;
            match reply {
                Value::Str(text) => Ok(text),
                other => Err(Error::NotAString {
                    name: name.to_owned(),
                    reply: String::from_utf8_lossy(&pyro4_wire::serpent::dumps(&other))
                        .into_owned(),
                }),
            }
        }
    }
}

/// Asks for a title as `pyro_client.py` does ([`PROMPT`]) and reads it
/// from standard input.
pub async fn ask_title() -> std::io::Result<String> {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;

    print!("{PROMPT}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    Ok(line.trim().to_owned())
}
