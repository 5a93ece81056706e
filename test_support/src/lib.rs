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

/// A running name server: this workspace's, on a thread of its own, or
/// Python's `python -m Pyro4.naming`, in a process killed with it.
#[derive(Debug)]
pub enum TestNameServer {
    Rust(ServerThread),
    Python(PythonNameServer),
}

impl TestNameServer {
    /// This workspace's name server (`rpc_naming`).
    pub fn rust() -> Self {
        TestNameServer::Rust(
            rpc_naming::server::spawn_thread().expect("cannot start a name server"),
        )
    }

    /// Python's, from the pinned test environment. Panics when it cannot
    /// start (see [`PythonNameServer::start`]).
    pub fn python() -> Self {
        TestNameServer::Python(PythonNameServer::start())
    }

    /// The port Python's programs are told of (`PYRO_NS_PORT`).
    pub fn port(&self) -> u16 {
        match self {
            TestNameServer::Rust(server) => server.addr.port(),
            TestNameServer::Python(ns) => ns.port,
        }
    }

    /// Its address, for `--ns`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }
}
