//! Pyro4's SSL, for every RPC server and client of the workspace.
//!
//! Pyro4 secures a connection by making all of it TLS, from its first byte:
//! URIs do not change (`PYRO:obj@host:port`), and the settings come from
//! the same environment variables on both ends ([`SslArgs`] reads them,
//! with flags of the same meaning). A server with
//! `PYRO_SSL_REQUIRECLIENTCERT` refuses, in the handshake, any client
//! without a certificate signed by `PYRO_SSL_CACERTS`; so nothing reaches a
//! name server's `register` or `remove` from a client it does not know.
//!
//! On a TLS port a server still speaks both protocols: after the handshake
//! it reads the first bytes (`PYRO` or a tarpc frame) as it peeks at them
//! on a plain port. A client that does not finish a handshake within
//! [`HANDSHAKE_TIMEOUT`] (one speaking plain text and waiting for an answer,
//! say) is dropped, and its connection slot is free again.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use clap::builder::BoolishValueParser;
use plumbing::accept::IdleTimeout;
use plumbing::tls::{
    ClientSettings, ClientTls, Identity, KeyPassword, ServerSettings, TlsError, Verify,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::either::Either;

pub use plumbing::tls::HANDSHAKE_TIMEOUT;

/// Pyro4's SSL settings, from its environment variables or from flags of
/// the same meaning (`--ssl` is `PYRO_SSL=1`, ...). A server uses
/// `servercert`, `serverkey` (and `serverkeypasswd`), `cacerts` and
/// `requireclientcert`; a client `cacerts`, `clientcert` and `clientkey`
/// (and `clientkeypasswd`).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct SslArgs {
    /// Speak TLS (Pyro4's SSL) on every connection, served or made.
    // Pyro4 takes 1/yes/on/true (and 0/no/off/false) in its variables.
    #[arg(long = "ssl", env = "PYRO_SSL", value_parser = BoolishValueParser::new())]
    pub ssl: bool,
    /// The server's certificate (PEM).
    #[arg(
        long = "ssl-servercert",
        env = "PYRO_SSL_SERVERCERT",
        value_name = "PEM"
    )]
    pub servercert: Option<PathBuf>,
    /// The server certificate's key (PEM); without it, the key is read
    /// from the certificate's file.
    #[arg(long = "ssl-serverkey", env = "PYRO_SSL_SERVERKEY", value_name = "PEM")]
    pub serverkey: Option<PathBuf>,
    /// The password of an encrypted server key (PKCS#8).
    #[arg(
        long = "ssl-serverkeypasswd",
        env = "PYRO_SSL_SERVERKEYPASSWD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub serverkeypasswd: Option<KeyPassword>,
    /// The CA certificates to trust, a PEM file or a directory of them: a
    /// client checks the server against them (else against the system's
    /// store); a server checks clients' certificates against them.
    #[arg(long = "ssl-cacerts", env = "PYRO_SSL_CACERTS", value_name = "PEM")]
    pub cacerts: Option<PathBuf>,
    /// A server refuses any client without a certificate signed by
    /// --ssl-cacerts.
    #[arg(
        long = "ssl-requireclientcert",
        env = "PYRO_SSL_REQUIRECLIENTCERT",
        value_parser = BoolishValueParser::new()
    )]
    pub requireclientcert: bool,
    /// The client's certificate (PEM), for servers that require one.
    #[arg(
        long = "ssl-clientcert",
        env = "PYRO_SSL_CLIENTCERT",
        value_name = "PEM"
    )]
    pub clientcert: Option<PathBuf>,
    /// The client certificate's key (PEM); without it, the key is read
    /// from the certificate's file.
    #[arg(long = "ssl-clientkey", env = "PYRO_SSL_CLIENTKEY", value_name = "PEM")]
    pub clientkey: Option<PathBuf>,
    /// The password of an encrypted client key (PKCS#8).
    #[arg(
        long = "ssl-clientkeypasswd",
        env = "PYRO_SSL_CLIENTKEYPASSWD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub clientkeypasswd: Option<KeyPassword>,
}

/// What is wrong with a set of SSL settings.
#[derive(Debug, thiserror::Error)]
pub enum SslError {
    #[error("PYRO_SSL is on: a server needs PYRO_SSL_SERVERCERT (--ssl-servercert)")]
    NoServerCert,
    #[error(
        "PYRO_SSL_REQUIRECLIENTCERT needs PYRO_SSL_CACERTS (--ssl-cacerts), the CA clients' certificates are checked against"
    )]
    NoClientCa,
    #[error(transparent)]
    Tls(#[from] Box<TlsError>),
}

impl SslArgs {
    /// What a server accepts with: `None` without `PYRO_SSL`.
    pub fn server(&self) -> Result<Option<ServerTls>, SslError> {
        if !self.ssl {
            return Ok(None);
        }
        let cert = self.servercert.clone().ok_or(SslError::NoServerCert)?;
        let client_ca_file = match (self.requireclientcert, &self.cacerts) {
            (true, Some(ca)) => Some(ca.clone()),
            (true, None) => return Err(SslError::NoClientCa),
            // As Pyro4: without REQUIRECLIENTCERT no certificate is asked.
            (false, _) => None,
        };
        // Pyro4 takes the key from the certificate file when no key file
        // is given.
        let key = self.serverkey.clone().unwrap_or_else(|| cert.clone());
        let settings = ServerSettings {
            identity: Identity::new(cert, key).with_password(
                self.serverkeypasswd.clone(),
                "PYRO_SSL_SERVERKEYPASSWD, --ssl-serverkeypasswd",
            ),
            client_ca_file,
        };
        let config = settings.config().map_err(Box::new)?;
        Ok(Some(ServerTls::new(config)))
    }

    /// What a client connects with: `None` without `PYRO_SSL`.
    pub fn client(&self) -> Result<Option<ClientTls>, SslError> {
        if !self.ssl {
            return Ok(None);
        }
        let settings = ClientSettings {
            ca_file: self.cacerts.clone(),
            identity: self.clientcert.clone().map(|cert| {
                let key = self.clientkey.clone().unwrap_or_else(|| cert.clone());
                Identity::new(cert, key).with_password(
                    self.clientkeypasswd.clone(),
                    "PYRO_SSL_CLIENTKEYPASSWD, --ssl-clientkeypasswd",
                )
            }),
            verify: Verify::Peer,
        };
        let config = settings.config().map_err(Box::new)?;
        Ok(Some(ClientTls::new(config)))
    }
}

/// A server's TLS: what every connection's handshake is made with.
#[derive(Clone)]
pub struct ServerTls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        ServerTls(config.into())
    }

    /// Makes the server's side of the handshake within
    /// [`HANDSHAKE_TIMEOUT`]; a failure says what it means in one line.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsServerStream> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.0.accept(stream)).await {
            Ok(Ok(tls)) => Ok(TlsServerStream {
                head: Vec::new(),
                read: 0,
                tls: Box::new(tls),
            }),
            Ok(Err(err)) => Err(plumbing::tls::explained(err)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
            )),
        }
    }
}

/// A server's TLS connection, with the first bytes it read to see which
/// protocol the client speaks given back to the reader first.
#[derive(Debug)]
pub struct TlsServerStream {
    head: Vec<u8>,
    read: usize,
    tls: Box<tokio_rustls::server::TlsStream<TcpStream>>,
}

impl TlsServerStream {
    /// Reads the client's first bytes, as far as they can be `magic`
    /// (at most its length), and keeps them to be read again; true if they
    /// are `magic`.
    pub async fn starts_with(&mut self, magic: &[u8]) -> io::Result<bool> {
        while self.head.len() < magic.len() && magic.starts_with(&self.head) {
            let mut byte = [0; 1];
            if self.tls.read(&mut byte).await? == 0 {
                break;
            }
            self.head.push(byte[0]);
        }
        Ok(self.head == magic)
    }
}

impl AsyncRead for TlsServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.head.len() {
            let rest = &this.head[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.tls).poll_read(cx, buf) {
            // A client that exits without TLS's close_notify has closed the
            // connection as far as either protocol is concerned: both frame
            // their messages, so a cut message is still seen as one.
            Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::UnexpectedEof => {
                Poll::Ready(Ok(()))
            }
            read => read,
        }
    }
}

impl AsyncWrite for TlsServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}

/// What a server's tarpc side reads and writes: a plain connection
/// (`Left`), or a TLS one (`Right`), either way failed once idle too long.
pub type ServerIo = Either<IdleTimeout<TcpStream>, IdleTimeout<TlsServerStream>>;
