//! What each command of the `rpc_welcome` binary does, and what it prints:
//! the chapter's server and client, and a demo of both in one process.
//! `main.rs` only reads the command line.

use std::net::SocketAddr;

use plumbing::cli::host_port;
use rpc_naming::{DEFAULT_MAX_NAMES, DEFAULT_NS_ADDR, NS_ENV, NameServerClient};
use rpc_transport::Listener;
use rpc_transport::tls::SslArgs;
use tokio::net::TcpListener;

use crate::{DEFAULT_NAME, PROMPT, buy, connect, ready_line, serve};

#[derive(clap::Args)]
pub struct Naming {
    /// The name server, HOST:PORT: `rpc_naming serve` or Python's
    /// `python -m Pyro4.naming`.
    #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR, value_parser = host_port)]
    pub ns: String,
    /// The name the server registers under.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    #[command(flatten)]
    pub ssl: SslArgs,
}

impl Naming {
    /// Connects to the name server, over TLS when the SSL settings say so
    /// (and so to every server found through it).
    async fn connect(&self) -> anyhow::Result<NameServerClient> {
        Ok(NameServerClient::connect_with(&self.ns, self.ssl.client()?).await?)
    }
}

/// `client`: buys `title` (asked on stdin, as the chapter did, when not
/// given) from the server registered as the name `naming` gives.
/// Its calls carry `correlation_id` (else a new one), as Pyro4's
/// `current_context.correlation_id` does.
pub async fn client(
    naming: &Naming,
    title: Option<String>,
    correlation_id: Option<uuid::Uuid>,
) -> anyhow::Result<()> {
    let title = match title {
        Some(title) => title,
        None => crate::ask_title().await?,
    };
    let id = correlation_id.unwrap_or_else(uuid::Uuid::new_v4);
    tracing::debug!(correlation_id = %id, "buying");
    let purchase = async {
        let ns = naming.connect().await?;
        let client = connect(&ns, &naming.name).await?;
        anyhow::Ok(buy(&client, &naming.name, title.trim()).await?)
    };
    let bought = pyro4_wire::correlation::scope(Some(id.as_u128()), purchase).await?;
    println!("{bought}");
    Ok(())
}

/// `demo`: a name server, the server and a client buying `title`, in one
/// process.
pub async fn demo(title: &str) -> anyhow::Result<()> {
    let ns_addr = rpc_naming::server::spawn_local(DEFAULT_MAX_NAMES).await?;
    let ns = NameServerClient::connect(&ns_addr).await?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let lease = ns.claim(DEFAULT_NAME, addr).await?;
    println!("{}", ready_line(DEFAULT_NAME, addr));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve(listener, DEFAULT_NAME, async {
            let _ = stopped.await;
        })
        .await
    });

    println!("{PROMPT}{title}");
    let client = connect(&ns, DEFAULT_NAME).await?;
    println!("{}", buy(&client, DEFAULT_NAME, title).await?);

    lease.release().await?;
    let _ = stop.send(());
    server.await?;
    Ok(())
}

/// `server`: serves on `addr`, registered with the name server, until
/// Ctrl-C or SIGTERM.
pub async fn server(naming: &Naming, addr: SocketAddr) -> anyhow::Result<()> {
    let tls = naming.ssl.server()?;
    let listener = plumbing::cli::listen(addr).await?;
    let bound = listener.local_addr()?;
    let listener = Listener::new(listener, tls);
    let ns = naming.connect().await?;
    let stop = plumbing::shutdown::signal();
    let lease = ns.claim(&naming.name, bound).await?;
    println!("{}", ready_line(&naming.name, bound));
    serve(listener, &naming.name, stop).await;
    rpc_naming::release_on_exit(lease).await;
    Ok(())
}
