//! Certificates made for a test by the workspace's own
//! `tls/make-test-certs.sh` (the script the README tells users to run), in a
//! directory removed when the test ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use plumbing::tls::KeyPassword;
use rpc_transport::tls::SslArgs;

/// A directory with `ca.pem`, `server.pem`/`.key` (for localhost and
/// 127.0.0.1), `client.pem`/`.key`, `other-ca.pem` (a CA that signed
/// nothing), the keys encrypted (`server-encrypted.key`, ...) and `cadir/`
/// (the CA under its hash name); removed when dropped.
#[derive(Debug)]
pub struct TestCerts {
    dir: PathBuf,
}

impl TestCerts {
    /// Makes a fresh set. Panics with the script's output if it fails (it
    /// needs the `openssl` command).
    pub fn make() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "test-certs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tls/make-test-certs.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("cannot run bash");
        assert!(
            output.status.success(),
            "{} failed (is openssl installed?): {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        TestCerts { dir }
    }

    /// The file `name` of the set ("ca.pem", "client.key", ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The file `name` as a string, for settings and URLs.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl TestCerts {
    /// Pyro4's SSL settings for this set, as its environment variables:
    /// TLS, the server's and the client's certificates, client
    /// certificates required (as `tls.md`'s two-way setup).
    pub fn pyro_env(&self) -> Vec<(&'static str, String)> {
        pyro_env_of(&self.ssl_args())
    }

    /// The same settings as the RPC binaries' flags read them.
    pub fn ssl_args(&self) -> SslArgs {
        SslArgs {
            ssl: true,
            servercert: Some(self.path("server.pem")),
            serverkey: Some(self.path("server.key")),
            serverkeypasswd: None,
            cacerts: Some(self.path("ca.pem")),
            requireclientcert: true,
            clientcert: Some(self.path("client.pem")),
            clientkey: Some(self.path("client.key")),
            clientkeypasswd: None,
        }
    }

    /// The same, with both keys encrypted (and their password given) and
    /// the CA as a hashed directory (OpenSSL's `capath`).
    pub fn ssl_args_encrypted(&self) -> SslArgs {
        SslArgs {
            serverkey: Some(self.path("server-encrypted.key")),
            serverkeypasswd: Some(KeyPassword(KEY_PASSWORD.into())),
            cacerts: Some(self.path("cadir")),
            clientkey: Some(self.path("client-encrypted.key")),
            clientkeypasswd: Some(KeyPassword(KEY_PASSWORD.into())),
            ..self.ssl_args()
        }
    }

    /// [`ssl_args_encrypted`](Self::ssl_args_encrypted) as Pyro4's
    /// environment variables.
    pub fn pyro_env_encrypted(&self) -> Vec<(&'static str, String)> {
        pyro_env_of(&self.ssl_args_encrypted())
    }
}

/// The password of the set's encrypted keys.
pub const KEY_PASSWORD: &str = "test-password";

/// `args` as Pyro4's environment variables (`PYRO_SSL_*`).
fn pyro_env_of(args: &SslArgs) -> Vec<(&'static str, String)> {
    let bool_text = |on: bool| if on { "1" } else { "0" }.to_owned();
    let path = |path: &Option<PathBuf>| path.as_ref().map(|path| path.display().to_string());
    let password = |password: &Option<KeyPassword>| password.as_ref().map(|p| p.0.clone());
    [
        ("PYRO_SSL", Some(bool_text(args.ssl))),
        ("PYRO_SSL_SERVERCERT", path(&args.servercert)),
        ("PYRO_SSL_SERVERKEY", path(&args.serverkey)),
        ("PYRO_SSL_SERVERKEYPASSWD", password(&args.serverkeypasswd)),
        ("PYRO_SSL_CACERTS", path(&args.cacerts)),
        (
            "PYRO_SSL_REQUIRECLIENTCERT",
            Some(bool_text(args.requireclientcert)),
        ),
        ("PYRO_SSL_CLIENTCERT", path(&args.clientcert)),
        ("PYRO_SSL_CLIENTKEY", path(&args.clientkey)),
        ("PYRO_SSL_CLIENTKEYPASSWD", password(&args.clientkeypasswd)),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect()
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
