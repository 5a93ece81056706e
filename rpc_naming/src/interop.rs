//! Name servers of both kinds, for the interop tests and benches that mix
//! this workspace's programs with the chapter's Python ones.

use plumbing::bench::ServerThread;
use plumbing::python::PyroNameServer;

/// A running name server: this workspace's, on a thread of its own, or
/// Python's `python -m Pyro4.naming`, in a process killed with it.
#[derive(Debug)]
pub enum AnyNameServer {
    Rust(ServerThread),
    Python(PyroNameServer),
}

impl AnyNameServer {
    /// This workspace's name server.
    pub fn rust() -> std::io::Result<Self> {
        Ok(AnyNameServer::Rust(crate::server::spawn_thread()?))
    }

    /// Python's, from the pinned test environment. Panics when it cannot
    /// start (see [`PyroNameServer::start`]).
    pub fn python() -> Self {
        AnyNameServer::Python(PyroNameServer::start())
    }

    /// The port Python's programs are told of (`PYRO_NS_PORT`).
    pub fn port(&self) -> u16 {
        match self {
            AnyNameServer::Rust(server) => server.addr.port(),
            AnyNameServer::Python(ns) => ns.port,
        }
    }

    /// Its address, for `--ns`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }
}
