//! What the workspace's tests share, and only its tests (every crate takes
//! this one as a dev-dependency; no binary links it):
//!
//! - [`child`]: a child process killed when its test ends, however it ends,
//!   and its output read line by line with a bound;
//! - [`python`]: the pinned Python peers (Celery, Pyro4, Flower) in a
//!   virtual environment the first test creates, and Python's name server;
//! - [`rabbitmq`]: RabbitMQ nodes and clusters of a test's own, killed on
//!   every path;
//! - [`tls`]: certificates made for a test (a CA, a server, a client and a
//!   CA that signed nothing);
//! - [`TestNameServer`]: a name server of either kind, for the interop
//!   tests that run each case under both.

pub mod child;
pub mod python;
pub mod rabbitmq;
pub mod tls;

use plumbing::bench::ServerThread;
use python::PythonNameServer;
use tls::TestCerts;

/// A running name server: this workspace's, on a thread of its own, or
/// Python's `python -m Pyro4.naming`, in a process killed with it; plain,
/// or TLS (Pyro4's SSL, client certificates required) with certificates of
/// its own, which every peer of a test is then given ([`peer_env`]).
///
/// [`peer_env`]: TestNameServer::peer_env
#[derive(Debug)]
pub struct TestNameServer {
    pub kind: NameServerKind,
    certs: Option<TestCerts>,
}

/// Which name server a [`TestNameServer`] is.
#[derive(Debug)]
pub enum NameServerKind {
    Rust(ServerThread),
    Python(PythonNameServer),
}

impl TestNameServer {
    /// This workspace's name server (`rpc_naming`).
    pub fn rust() -> Self {
        let server = rpc_naming::server::spawn_thread().expect("cannot start a name server");
        TestNameServer {
            kind: NameServerKind::Rust(server),
            certs: None,
        }
    }

    /// Python's, from the pinned test environment. Panics when it cannot
    /// start (see [`PythonNameServer::start`]).
    pub fn python() -> Self {
        TestNameServer {
            kind: NameServerKind::Python(PythonNameServer::start(&[])),
            certs: None,
        }
    }

    /// This workspace's name server over TLS, requiring client certificates.
    pub fn rust_tls() -> Self {
        let certs = TestCerts::make();
        let tls = certs
            .ssl_args()
            .server()
            .expect("the test certificates work");
        let server =
            rpc_naming::server::spawn_thread_with(tls).expect("cannot start a name server");
        TestNameServer {
            kind: NameServerKind::Rust(server),
            certs: Some(certs),
        }
    }

    /// Python's over TLS (its PYRO_SSL settings), requiring client
    /// certificates.
    pub fn python_tls() -> Self {
        let certs = TestCerts::make();
        let env = certs.pyro_env();
        TestNameServer {
            kind: NameServerKind::Python(PythonNameServer::start(&env)),
            certs: Some(certs),
        }
    }

    /// The port Python's programs are told of (`PYRO_NS_PORT`).
    pub fn port(&self) -> u16 {
        match &self.kind {
            NameServerKind::Rust(server) => server.addr.port(),
            NameServerKind::Python(ns) => ns.port,
        }
    }

    /// Its address, for `--ns`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The certificates of a TLS name server.
    pub fn certs(&self) -> Option<&TestCerts> {
        self.certs.as_ref()
    }

    /// What every peer of this name server (server, client, Python or
    /// Rust) is started with: Pyro4's SSL settings over TLS, else nothing.
    pub fn peer_env(&self) -> Vec<(&'static str, String)> {
        self.certs
            .as_ref()
            .map(TestCerts::pyro_env)
            .unwrap_or_default()
    }
}
