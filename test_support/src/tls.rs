//! Certificates made for a test by the workspace's own
//! `tls/make-test-certs.sh` (the script the README tells users to run), in a
//! directory removed when the test ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use rpc_transport::tls::SslArgs;

/// A directory with `ca.pem`, `server.pem`/`.key` (for localhost and
/// 127.0.0.1), `client.pem`/`.key`, and `other-ca.pem` (a CA that signed
/// nothing); removed when dropped.
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
        vec![
            ("PYRO_SSL", "1".into()),
            ("PYRO_SSL_SERVERCERT", self.file("server.pem")),
            ("PYRO_SSL_SERVERKEY", self.file("server.key")),
            ("PYRO_SSL_CACERTS", self.file("ca.pem")),
            ("PYRO_SSL_REQUIRECLIENTCERT", "1".into()),
            ("PYRO_SSL_CLIENTCERT", self.file("client.pem")),
            ("PYRO_SSL_CLIENTKEY", self.file("client.key")),
        ]
    }

    /// The same settings as the RPC binaries' flags read them.
    pub fn ssl_args(&self) -> SslArgs {
        SslArgs {
            ssl: true,
            servercert: Some(self.path("server.pem")),
            serverkey: Some(self.path("server.key")),
            cacerts: Some(self.path("ca.pem")),
            requireclientcert: true,
            clientcert: Some(self.path("client.pem")),
            clientkey: Some(self.path("client.key")),
        }
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
