//! RabbitMQ nodes of a test's own, for what the shared broker must never
//! see: a node killed, a cluster losing a member.
//!
//! Each node runs from the installed `rabbitmq-server` package as the
//! calling user, in the foreground (so its process is the Erlang VM itself
//! and [`KillOnDrop`] stops it on every path, a panic included), with its
//! data in a temporary directory, on free loopback ports and with no
//! plugins. Node names carry the test process's id, so test runs at once
//! never meet. A test process killed outright runs no destructor: a
//! guardian (`sh` reading a pipe only the test holds) kills the node when
//! that pipe closes, so no node outlives its test run.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::child::KillOnDrop;
use crate::tls::TestCerts;

/// Where Debian's package puts the scripts that run as the calling user
/// (`/usr/sbin/rabbitmq-server` switches to the `rabbitmq` user).
const BIN: &str = "/usr/lib/rabbitmq/bin";
/// How long a node may take to accept AMQP (about 6 s here).
const START_WAIT: Duration = Duration::from_secs(90);

/// One RabbitMQ node, killed (SIGKILL) when dropped; its directory goes
/// with it.
pub struct RabbitNode {
    pub name: String,
    pub port: u16,
    /// The AMQP-over-TLS listener's port, for a node started with
    /// [`RabbitNode::start_tls`].
    pub tls_port: Option<u16>,
    dist_port: u16,
    dir: PathBuf,
    process: Option<Guarded>,
}

/// A node's process and its guardian, which kills it if the test process
/// dies without dropping this.
struct Guarded {
    node: KillOnDrop,
    guardian: std::process::Child,
}

impl Guarded {
    fn new(node: std::process::Child) -> Self {
        let guardian = Command::new("sh")
            .args(["-c", "cat >/dev/null; kill -9 \"$0\" 2>/dev/null"])
            .arg(node.id().to_string())
            .stdin(Stdio::piped())
            .spawn()
            .expect("cannot start sh");
        Guarded {
            node: KillOnDrop::new(node),
            guardian,
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // The guardian kills the node while it is still our child (not yet
        // reaped, so its pid cannot have been reused); `node` then reaps it.
        drop(self.guardian.stdin.take());
        let _ = self.guardian.wait();
    }
}

impl RabbitNode {
    /// Starts a node and waits until it accepts AMQP connections. Panics
    /// with one line saying what to install when the package is missing.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a node that also listens for AMQP over TLS
    /// ([`tls_port`](Self::tls_port)) with `certs`' server certificate, and
    /// requires a client certificate signed by its CA (`verify_peer`,
    /// `fail_if_no_peer_cert`).
    pub fn start_tls(certs: &TestCerts) -> Self {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&TestCerts>) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("test{}n{number}@localhost", std::process::id());
        let dir = std::env::temp_dir().join(format!("rabbitmq-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("log")).expect("cannot create the node's directory");
        let mut node = RabbitNode {
            name,
            port: free_port(),
            tls_port: certs.map(|_| free_port()),
            dist_port: free_port(),
            dir,
            process: None,
        };
        let mut config = format!("listeners.tcp.local = 127.0.0.1:{}\n", node.port);
        if let (Some(certs), Some(port)) = (certs, node.tls_port) {
            config += &format!(
                "listeners.ssl.default = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                certs.path("ca.pem").display(),
                certs.path("server.pem").display(),
                certs.path("server.key").display(),
            );
        }
        std::fs::write(node.dir.join("rabbitmq.conf"), config)
            .expect("cannot write the node's configuration");
        std::fs::write(node.dir.join("plugins"), "[].\n").expect("cannot write the plugins file");
        node.run();
        node
    }

    /// The node's AMQP URL (guest/guest, the default vhost).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The node's amqps URL (guest/guest, the default vhost), with
    /// `parameters` as its query (RabbitMQ's TLS settings).
    pub fn tls_url(&self, parameters: &str) -> String {
        let port = self.tls_port.expect("the node was started with start_tls");
        format!("amqps://guest:guest@localhost:{port}/%2f?{parameters}")
    }

    /// Kills the node as a crash would (SIGKILL), keeping its data.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts a killed node again on its data: it rejoins its cluster.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "{} is running", self.name);
        self.run();
    }

    /// Freezes the node (SIGSTOP): its connections stay open and nothing
    /// on them is answered, as with a broker stuck on a full disk or a long
    /// garbage collection. [`resume`](Self::resume) thaws it; dropping the
    /// node kills it either way.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Thaws a frozen node (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let process = self.process.as_ref().expect("the node is running");
        let sent = Command::new("kill")
            .args([signal, &process.node.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill {signal} {} failed", self.name);
    }

    /// Runs `rabbitmqctl -n <node> ARGS`; panics with its output on failure.
    pub fn ctl(&self, args: &[&str]) {
        let output = Command::new(Path::new(BIN).join("rabbitmqctl"))
            .args(["-n", &self.name])
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("cannot run rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl -n {} {args:?} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn run(&mut self) {
        let server = Path::new(BIN).join("rabbitmq-server");
        assert!(
            server.exists(),
            "{} is missing: install RabbitMQ (apt-get install rabbitmq-server)",
            server.display()
        );
        let dir = &self.dir;
        let child = Command::new(server)
            // The VM itself in the foreground (not a shell around it), with
            // no Erlang shell reading standard input.
            .arg("-noinput")
            // Where a crashing node writes its dumps (MnesiaCore.*, erl_crash).
            .current_dir(dir)
            .env("RABBITMQ_ALLOW_INPUT", "1")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("plugins"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start rabbitmq-server");
        self.process = Some(Guarded::new(child));
        self.wait_ready();
    }

    /// Waits until the node accepts TCP on its AMQP port (and on its TLS
    /// port, which opens a little later).
    fn wait_ready(&mut self) {
        let started = Instant::now();
        for port in std::iter::once(self.port).chain(self.tls_port) {
            self.wait_port(port, started);
        }
    }

    fn wait_port(&mut self, port: u16, started: Instant) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            let process = self.process.as_mut().expect("started");
            if let Ok(Some(status)) = process.node.child().try_wait() {
                panic!(
                    "RabbitMQ node {} exited ({status}) before accepting connections; its log \
                     is in {}",
                    self.name,
                    self.dir.join("log").display()
                );
            }
            assert!(
                started.elapsed() < START_WAIT,
                "RabbitMQ node {} did not accept connections within {START_WAIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.process = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster of nodes, each [`RabbitNode`]; stopped when dropped.
pub struct RabbitCluster {
    pub nodes: Vec<RabbitNode>,
}

impl RabbitCluster {
    /// Starts `size` nodes at once and joins the others to the first, one
    /// after the other.
    pub fn start(size: usize) -> Self {
        let nodes: Vec<RabbitNode> = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..size).map(|_| scope.spawn(RabbitNode::start)).collect();
            starting
                .into_iter()
                .map(|node| node.join().expect("a node did not start"))
                .collect()
        });
        // One at a time: two nodes joining at once can fail in mnesia.
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]);
            node.ctl(&["join_cluster", &nodes[0].name]);
            node.ctl(&["start_app"]);
        }
        let cluster = RabbitCluster { nodes };
        for node in &cluster.nodes {
            node.ctl(&["await_startup"]);
        }
        cluster
    }

    /// Celery's failover list of the nodes' URLs, starting at node `first`.
    pub fn broker_list(&self, first: usize) -> String {
        let count = self.nodes.len();
        (0..count)
            .map(|i| self.nodes[(first + i) % count].url())
            .collect::<Vec<_>>()
            .join(";")
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("cannot find a free port")
        .port()
}
