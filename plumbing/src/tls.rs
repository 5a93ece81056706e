//! TLS settings, built once for every connection that can be encrypted: the
//! broker connection of `celery_pages` (amqps) and the RPC servers and
//! clients (Pyro4's SSL).
//!
//! Both sides read certificates and keys from PEM files, as RabbitMQ's and
//! Pyro4's settings name them, and run on rustls with the *ring* provider
//! (no OpenSSL, no C build). What this module adds to rustls is what a user
//! of those settings expects:
//!
//! - a **client** that trusts the CA file (or directory) it is given (else
//!   the system's store), shows a client certificate when it has one, and
//!   can be told not to verify the server at all (`verify=verify_none`, for
//!   tests only);
//! - a **server** that shows its certificate and, when given a CA file,
//!   refuses any client without a certificate signed by it (Pyro4's
//!   `SSL_REQUIRECLIENTCERT`);
//! - private keys **encrypted with a password** (PKCS#8, as OpenSSL 3
//!   writes them, or OpenSSL's older encrypted PEM), as Python's
//!   `load_cert_chain(..., password)` reads them;
//! - **one line for each handshake failure** ([`explain`]): rustls reports
//!   "invalid peer certificate: UnknownIssuer"; a user needs to hear which
//!   setting to look at.
//!
//! ```no_run
//! use plumbing::tls::{ClientSettings, Identity, Verify};
//!
//! let settings = ClientSettings {
//!     ca_file: Some("ca.pem".into()),
//!     identity: Some(Identity::new("client.pem", "client.key")),
//!     verify: Verify::Peer,
//! };
//! let config = settings.config().unwrap();
//! let connector = tokio_rustls::TlsConnector::from(config);
//! # let _ = connector;
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    ServerConfig, SignatureScheme,
};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::either::Either;

/// What can go wrong building TLS settings (not a handshake: see
/// [`explain`]).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot read the CA directory {path}")]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("the key file {path} is encrypted: {how}")]
    KeyPasswordMissing { path: PathBuf, how: String },
    #[error("cannot decrypt the key file {path}: wrong password, or a cipher it cannot read")]
    KeyDecrypt { path: PathBuf, source: pkcs8::Error },
    #[error("the encrypted key in {path} is not PKCS#8 as PEM writes it")]
    KeyMalformed { path: PathBuf, source: pkcs8::Error },
    #[error("cannot read the key file {path} (OpenSSL's legacy encrypted PEM): {why}")]
    LegacyKey { path: PathBuf, why: String },
    #[error("{what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("the CA file {path} holds a certificate rustls cannot use")]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the system's CA store cannot be read ({0}); give a CA file")]
    SystemStore(String),
    #[error("the certificate {cert} and key {key} do not make a usable identity")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot build a verifier of client certificates from {path}")]
    ClientVerifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
}

/// Whether a client checks the server's certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Against the CA file (or the system's store), and for the name
    /// connected to: the default.
    #[default]
    Peer,
    /// Not at all: encrypted, but anyone can pose as the server. RabbitMQ's
    /// `verify_none`; for tests only.
    None,
}

/// A certificate (chain) and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The key file's password, when it is encrypted.
    pub key_password: Option<KeyPassword>,
    /// The setting that gives the password, named when it is missing
    /// (`PYRO_SSL_SERVERKEYPASSWD`, ...); `None` where none can.
    pub password_setting: Option<&'static str>,
}

impl Identity {
    /// An identity whose key is not encrypted.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Identity {
            cert: cert.into(),
            key: key.into(),
            key_password: None,
            password_setting: None,
        }
    }

    /// The same, its key encrypted with `password` (if `Some`), which the
    /// user gives as `setting`.
    pub fn with_password(mut self, password: Option<KeyPassword>, setting: &'static str) -> Self {
        self.key_password = password;
        self.password_setting = Some(setting);
        self
    }

    fn read_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let password = self
            .key_password
            .as_ref()
            .map(|password| password.0.as_str());
        private_key(&self.key, password, self.password_setting)
    }
}

/// A private key's password: never shown by `Debug` (settings are logged).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPassword(pub String);

impl std::fmt::Debug for KeyPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyPassword(***)")
    }
}

impl std::str::FromStr for KeyPassword {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(KeyPassword(text.to_owned()))
    }
}

/// A client's TLS settings, as paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// The CA certificates to trust, a PEM file or a directory of them;
    /// without one, the system's store.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    pub identity: Option<Identity>,
    pub verify: Verify,
}

impl ClientSettings {
    /// rustls's client configuration for these settings, files read now.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match self.verify {
            Verify::Peer => builder.with_root_certificates(self.roots()?),
            Verify::None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        };
        let config = match &self.identity {
            Some(identity) => builder
                .with_client_auth_cert(
                    certificates(&identity.cert, "client certificate")?,
                    identity.read_key()?,
                )
                .map_err(|source| TlsError::Identity {
                    cert: identity.cert.clone(),
                    key: identity.key.clone(),
                    source,
                })?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        match &self.ca_file {
            Some(path) => ca_store(path),
            None => {
                let mut roots = RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    let why = found
                        .errors
                        .first()
                        .map_or("no certificate found".to_owned(), ToString::to_string);
                    return Err(TlsError::SystemStore(why));
                }
                roots.add_parsable_certificates(found.certs);
                Ok(roots)
            }
        }
    }
}

/// A server's TLS settings, as paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    pub identity: Identity,
    /// With a CA file (or directory), a client must show a certificate it
    /// signed.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerSettings {
    /// rustls's server configuration for these settings, files read now.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match &self.client_ca_file {
            Some(path) => {
                let roots = ca_store(path)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|source| TlsError::ClientVerifier {
                        path: path.clone(),
                        source,
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let identity = &self.identity;
        let config = builder
            .with_single_cert(
                certificates(&identity.cert, "server certificate")?,
                identity.read_key()?,
            )
            .map_err(|source| TlsError::Identity {
                cert: identity.cert.clone(),
                key: identity.key.clone(),
                source,
            })?;
        Ok(Arc::new(config))
    }
}

/// The longest a TLS handshake may take, on either end: a peer that stalls
/// in it (or speaks plain text and waits) is dropped after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client connects with over TLS: its configuration, and the name it
/// checks the server's certificate for (else the host it connects to).
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        ClientTls {
            connector: config.into(),
            server_name: None,
        }
    }

    /// Checks the server's certificate for `name` (and sends it as SNI),
    /// whatever host is connected to.
    pub fn with_server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = Some(name);
        self
    }

    /// Makes the TLS handshake on `stream`, a connection to `host`, within
    /// [`HANDSHAKE_TIMEOUT`]. A failure is one line saying what it means
    /// ([`explain`]).
    pub async fn handshake(&self, stream: TcpStream, host: &str) -> io::Result<ClientStream> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                server_name(host).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?
            }
        };
        let handshake = self.connector.connect(name, stream);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => Ok(Either::Right(Box::new(tls))),
            Ok(Err(err)) => Err(handshake_failed(err)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no TLS handshake within {HANDSHAKE_TIMEOUT:?} (is this a plain port, or \
                     one that speaks another protocol?)"
                ),
            )),
        }
    }
}

/// Connects to `addr` (`host` is what it was named, for the certificate
/// check) with `TCP_NODELAY`, over TLS when `tls` is given.
pub async fn connect(
    addr: impl ToSocketAddrs,
    host: &str,
    tls: Option<&ClientTls>,
) -> io::Result<ClientStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    match tls {
        Some(tls) => tls.handshake(stream, host).await,
        None => Ok(Either::Left(stream)),
    }
}

/// An error from rustls with its meaning ([`explain`]) as its message (a
/// [`TlsFailure`], which [`failure`] finds again); any other as it is.
pub fn explained(err: io::Error) -> io::Error {
    match explain(&err) {
        Some(line) => io::Error::new(err.kind(), TlsFailure(line)),
        None => err,
    }
}

/// A client's failed handshake, always a [`TlsFailure`]: [`explain`]'s
/// line for an error from rustls, else the I/O error said as the
/// handshake's. So an I/O error that is not one came after the handshake
/// (see [`client_failure`]).
pub fn handshake_failed(err: io::Error) -> io::Error {
    use io::ErrorKind::{ConnectionReset, UnexpectedEof};
    let line = explain(&err).unwrap_or_else(|| match err.kind() {
        ConnectionReset | UnexpectedEof => format!(
            "the server closed the connection during the TLS handshake (does it speak TLS on \
             this port?) ({err})"
        ),
        _ => format!("the TLS handshake failed ({err})"),
    });
    io::Error::new(err.kind(), TlsFailure(line))
}

/// What an error on a TLS client's connection says of TLS, if anything: its
/// handshake's failure or a TLS alert after it ([`failure`]), or the
/// server's close just after the handshake, said as what it most likely
/// means. In TLS 1.3 a server checks the client's certificate only once the
/// client has finished its side of the handshake: a refused (or missing)
/// one is then an alert and a close, and when the client's first message
/// crossed that close, the client sees a reset instead of the alert.
pub fn client_failure(err: &io::Error) -> Option<String> {
    failure(err).or_else(|| closed_after_handshake(err))
}

fn closed_after_handshake(err: &io::Error) -> Option<String> {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        err.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
    .then(|| {
        format!(
            "the server closed the connection just after the TLS handshake: it most likely \
             refused the connection's client certificate, or wants one and got none (check the \
             client certificate and key settings) ({err})"
        )
    })
}

/// A failed TLS handshake (or a TLS alert after one), said in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsFailure(pub String);

/// What `err` says of a TLS failure, if it is one: a [`TlsFailure`], or an
/// error from rustls (then [`explain`]ed).
pub fn failure(err: &io::Error) -> Option<String> {
    match err.get_ref()?.downcast_ref::<TlsFailure>() {
        Some(failure) => Some(failure.0.clone()),
        None => explain(err),
    }
}

/// A connection a client opened: plain TCP (`Left`), or TLS over it
/// (`Right`). tokio-util's `Either` reads and writes whichever it holds.
pub type ClientStream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// The TCP connection under a client's connection.
pub fn tcp(stream: &ClientStream) -> &TcpStream {
    match stream {
        Either::Left(tcp) => tcp,
        Either::Right(tls) => tls.get_ref().0,
    }
}

/// The name a client checks the server's certificate for (and sends as
/// SNI): a DNS name, or an IP address as written.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a valid server name"))
}

/// One line saying what a failed TLS handshake (or the first read after
/// one) means, for an error that came from rustls; `None` for any other.
///
/// ```
/// use rustls::{CertificateError, Error};
///
/// let err = std::io::Error::new(
///     std::io::ErrorKind::InvalidData,
///     Error::InvalidCertificate(CertificateError::UnknownIssuer),
/// );
/// let line = plumbing::tls::explain(&err).unwrap();
/// assert!(line.starts_with("the server's certificate is not signed by a CA we trust"));
/// ```
pub fn explain(err: &io::Error) -> Option<String> {
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => {
            format!(
                "the server's certificate is not signed by a CA we trust (check the CA file) ({tls})"
            )
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate is not for the name connected to (connect by the name it \
             was issued for, or set server_name_indication) ({tls})"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!("the server's certificate is out of its validity period ({tls})"),
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied
            | AlertDescription::HandshakeFailure,
        ) => format!(
            "the server refused the connection's client certificate, or wants one and got none \
             (check the client certificate and key settings) ({tls})"
        ),
        rustls::Error::NoCertificatesPresented => {
            "the client showed no certificate, and this server requires one".to_owned()
        }
        rustls::Error::InvalidMessage(_) => format!(
            "the peer does not speak TLS (is this a plain port? use amqp:// or unset the TLS \
             settings) ({tls})"
        ),
        other => format!("TLS failed: {other}"),
    })
}

/// The *ring* provider. rustls deprecates it for lacking post-quantum key
/// exchange; the provider that has it (aws-lc-rs) needs a C and CMake build,
/// which this workspace avoids. Classic X25519 and ECDHE remain secure.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The CA certificates at `path`, as a trust store: a PEM file, or a
/// directory whose files hold them (as OpenSSL's `capath`, which Python
/// reads when Pyro4's `SSL_CACERTS` is a directory; every file with a
/// certificate counts, hashed name or not).
fn ca_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = if path.is_dir() {
        let read_dir = |source| TlsError::ReadDir {
            path: path.to_owned(),
            source,
        };
        let mut files = std::fs::read_dir(path)
            .map_err(read_dir)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_dir)?;
        files.sort();
        let certs: Vec<_> = files
            .iter()
            .filter(|file| file.is_file())
            // A file that is not PEM certificates (a README, a CRL) is
            // passed over, as OpenSSL passes over what it cannot use.
            .filter_map(|file| certificates(file, "CA file").ok())
            .flatten()
            .collect();
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                what: "CA directory",
                path: path.to_owned(),
            });
        }
        certs
    } else {
        certificates(path, "CA file")?
    };
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The private key in the PEM file at `path`: plain, or encrypted (PKCS#8,
/// or OpenSSL's legacy PEM) with `password` (named `setting` when it is
/// needed and missing).
fn private_key(
    path: &Path,
    password: Option<&str>,
    setting: Option<&'static str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let read = |source| TlsError::Read {
        what: "key file",
        path: path.to_owned(),
        source,
    };
    let pem = std::fs::read_to_string(path)
        .map_err(|err| read(rustls::pki_types::pem::Error::Io(err)))?;
    let pkcs8_block = encrypted_pkcs8_block(&pem);
    if pkcs8_block.is_none() && !pem.contains(LEGACY_ENCRYPTED) {
        return PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(read);
    }
    let password = password.ok_or_else(|| TlsError::KeyPasswordMissing {
        path: path.to_owned(),
        how: password_hint(setting),
    })?;
    if let Some(block) = pkcs8_block {
        let malformed = |source| TlsError::KeyMalformed {
            path: path.to_owned(),
            source,
        };
        let (_, document) = pkcs8::SecretDocument::from_pem(block)
            .map_err(|err| malformed(pkcs8::Error::Asn1(err)))?;
        let encrypted =
            pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes()).map_err(malformed)?;
        let key = encrypted
            .decrypt(password)
            .map_err(|source| TlsError::KeyDecrypt {
                path: path.to_owned(),
                source,
            })?;
        return Ok(PrivateKeyDer::Pkcs8(key.as_bytes().to_vec().into()));
    }
    legacy_encrypted_key(&pem, password).map_err(|why| TlsError::LegacyKey {
        path: path.to_owned(),
        why,
    })
}

/// The header of a key in OpenSSL's legacy encrypted PEM.
const LEGACY_ENCRYPTED: &str = "Proc-Type: 4,ENCRYPTED";

/// What to do about an encrypted key given no password: name the setting
/// that gives one, else say how to decrypt the file.
fn password_hint(setting: Option<&'static str>) -> String {
    match setting {
        Some(setting) => format!("give its password ({setting})"),
        None => "nothing here gives its password; decrypt it: openssl pkey -in KEY -out PLAIN"
            .to_owned(),
    }
}

/// A key in OpenSSL's legacy encrypted PEM, as `openssl genrsa -aes256`
/// wrote it before OpenSSL 3 (and Python still reads it):
///
/// ```text
/// -----BEGIN RSA PRIVATE KEY-----
/// Proc-Type: 4,ENCRYPTED
/// DEK-Info: AES-256-CBC,<IV in hex>
///
/// <base64>
/// -----END RSA PRIVATE KEY-----
/// ```
///
/// The cipher's key is OpenSSL's `EVP_BytesToKey` of the password: MD5,
/// one round, the IV's first eight bytes as salt.
fn legacy_encrypted_key(pem: &str, password: &str) -> Result<PrivateKeyDer<'static>, String> {
    use base64::Engine;
    use md5::{Digest, Md5};

    let mut lines = pem.lines().map(str::trim).skip_while(|line| {
        !(line.starts_with("-----BEGIN ") && line.ends_with(" PRIVATE KEY-----"))
    });
    let label = lines
        .next()
        .and_then(|line| line.strip_prefix("-----BEGIN "))
        .and_then(|line| line.strip_suffix(" PRIVATE KEY-----"))
        .ok_or("no BEGIN line")?;
    let mut dek_info = None;
    let mut body = String::new();
    for line in lines.take_while(|line| !line.starts_with("-----END ")) {
        if let Some(value) = line.strip_prefix("DEK-Info:") {
            dek_info = Some(value.trim());
        } else if !line.contains(':') {
            body.push_str(line);
        }
    }
    let (cipher, iv) = dek_info
        .and_then(|info| info.split_once(','))
        .ok_or("no DEK-Info header")?;
    let iv = hex::decode(iv)
        .ok()
        .filter(|iv| iv.len() >= 8)
        .ok_or("DEK-Info's IV is not hex")?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .map_err(|err| format!("its body is not base64 ({err})"))?;
    let key_of = |len: usize| {
        let mut key = Vec::with_capacity(len + 16);
        let mut block: Vec<u8> = Vec::new();
        while key.len() < len {
            block = Md5::new()
                .chain_update(&block)
                .chain_update(password)
                .chain_update(&iv[..8])
                .finalize()
                .to_vec();
            key.extend_from_slice(&block);
        }
        key.truncate(len);
        key
    };
    let der = match cipher {
        "AES-128-CBC" => decrypt_cbc::<aes::Aes128>(&key_of(16), &iv, &data)?,
        "AES-192-CBC" => decrypt_cbc::<aes::Aes192>(&key_of(24), &iv, &data)?,
        "AES-256-CBC" => decrypt_cbc::<aes::Aes256>(&key_of(32), &iv, &data)?,
        "DES-EDE3-CBC" => decrypt_cbc::<des::TdesEde3>(&key_of(24), &iv, &data)?,
        other => {
            return Err(format!(
                "cipher {other} is not read here (AES-128/192/256-CBC and DES-EDE3-CBC are); \
                 convert it: openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW"
            ));
        }
    };
    match label {
        "RSA" => Ok(PrivateKeyDer::Pkcs1(der.into())),
        "EC" => Ok(PrivateKeyDer::Sec1(der.into())),
        other => Err(format!("a {other} key cannot be used for TLS here")),
    }
}

/// `data` decrypted with block cipher `C` in CBC mode, PKCS#7 padded.
fn decrypt_cbc<C>(key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, String>
where
    C: aes::cipher::BlockDecryptMut + aes::cipher::BlockCipher + aes::cipher::KeyInit,
{
    use aes::cipher::block_padding::Pkcs7;
    use aes::cipher::{BlockDecryptMut, KeyIvInit};

    cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| "DEK-Info's IV is not one block long")?
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .map_err(|_| "wrong password, or a damaged file".to_owned())
}

/// The encrypted PKCS#8 key's block of a PEM file, if it has one (the
/// file may hold the certificate too, before or after it).
fn encrypted_pkcs8_block(pem: &str) -> Option<&str> {
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    let begin = pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----")?;
    let end = begin
        + pem[begin..]
            .find(END)
            .map_or(pem.len() - begin, |end| end + END.len());
    Some(&pem[begin..end])
}

/// The verifier of `Verify::None`: any certificate, any name. Handshake
/// signatures are still checked (the connection is encrypted to whoever
/// holds the key of the certificate shown).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
