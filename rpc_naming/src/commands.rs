//! What each command of the `rpc_naming` binary does, and what it prints:
//! the name server itself, and the Pyro4 `nsc`-style client commands.
//! `main.rs` only reads the command line.

use std::net::SocketAddr;

use plumbing::cli::{host_port, socket_addr};
use rpc_transport::Listener;
use rpc_transport::tls::SslArgs;

use crate::{
    DEFAULT_MAX_NAMES, DEFAULT_NS_ADDR, Location, NS_ENV, NameServerClient, broadcast, server,
};

#[derive(clap::Args)]
pub struct Ns {
    /// The name server to talk to (HOST:PORT).
    #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR, value_parser = host_port)]
    pub ns: String,
    #[command(flatten)]
    pub ssl: SslArgs,
}

impl Ns {
    /// Connects to the name server, over TLS when the SSL settings say so.
    pub async fn connect(&self) -> anyhow::Result<NameServerClient> {
        Ok(NameServerClient::connect_with(&self.ns, self.ssl.client()?).await?)
    }
}

/// How Python's `Pyro4.locateNS()` without a host finds the name server.
#[derive(clap::Args, Default)]
pub struct Broadcast {
    /// Answer Pyro4's broadcast lookups (`GET_NSURI`) on this UDP port. On
    /// by default on port 9091, as Python's name server, except for a name
    /// server on loopback (nothing else could reach it), where giving the
    /// port turns it on.
    #[arg(long, value_name = "PORT")]
    pub broadcast: Option<u16>,
    /// Do not answer broadcast lookups.
    #[arg(long, conflicts_with = "broadcast")]
    pub no_broadcast: bool,
}

impl Broadcast {
    /// The UDP address to answer on for a name server at `ns`, if any.
    fn addr(&self, ns: SocketAddr) -> Option<SocketAddr> {
        let on = !self.no_broadcast && (self.broadcast.is_some() || !ns.ip().is_loopback());
        on.then(|| broadcast::bind_addr(ns, self.broadcast.unwrap_or(broadcast::DEFAULT_PORT)))
    }
}

/// `rpc_naming serve`'s flags.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (IP:PORT); 0.0.0.0 lets anyone on the network connect.
    #[arg(long, default_value = DEFAULT_NS_ADDR, value_parser = socket_addr)]
    pub addr: SocketAddr,
    /// Most names the table holds.
    #[arg(long, default_value_t = DEFAULT_MAX_NAMES)]
    pub max_names: usize,
    #[command(flatten)]
    pub broadcast: Broadcast,
    #[command(flatten)]
    pub ssl: SslArgs,
}

/// `rpc_naming list`'s flags.
#[derive(clap::Args)]
pub struct ListArgs {
    prefix: Option<String>,
    /// List the names matching this regex instead (anchored at the start).
    #[arg(long, conflicts_with = "prefix")]
    regex: Option<String>,
    /// List the names whose metadata holds every TAG given (Pyro4's
    /// metadata_all, nsc listmeta_all); repeat for more tags.
    #[arg(long, value_name = "TAG", conflicts_with_all = ["prefix", "regex"])]
    meta_all: Vec<String>,
    /// List the names whose metadata holds one TAG given at least
    /// (metadata_any, nsc listmeta_any).
    #[arg(long, value_name = "TAG", conflicts_with_all = ["prefix", "regex", "meta_all"])]
    meta_any: Vec<String>,
    #[command(flatten)]
    ns: Ns,
}

/// `list`: every registration (or those the flags select), `NAME --> WHERE`.
pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let ns = args.ns.connect().await?;
    let names = match args.regex {
        Some(pattern) => ns.list_matching(&pattern).await?,
        None if !args.meta_all.is_empty() => ns.list_by_metadata(&args.meta_all, false).await?,
        None if !args.meta_any.is_empty() => ns.list_by_metadata(&args.meta_any, true).await?,
        None => ns.list(args.prefix.as_deref()).await?,
    };
    for (name, addr) in names {
        println!("{name} --> {addr}");
    }
    Ok(())
}

/// `setmeta NAME TAG...`: sets (or, with no tags, clears) NAME's metadata.
pub async fn setmeta(ns: &Ns, name: &str, tags: &[String]) -> anyhow::Result<()> {
    ns.connect().await?.set_metadata(name, tags).await?;
    let done = if tags.is_empty() {
        "Metadata cleared"
    } else {
        "Metadata updated"
    };
    println!("{done}");
    Ok(())
}

/// `lookup NAME`: where NAME leads, and its metadata.
pub async fn lookup(ns: &Ns, name: &str) -> anyhow::Result<()> {
    let ns = ns.connect().await?;
    let (location, metadata) = ns.lookup_with_metadata(name).await?;
    println!("{location}");
    if !metadata.is_empty() {
        println!("metadata: {}", metadata.join(" "));
    }
    Ok(())
}

/// `register NAME LOCATION`.
pub async fn register(ns: &Ns, name: &str, location: Location, safe: bool) -> anyhow::Result<()> {
    ns.connect()
        .await?
        .register(name, location.clone(), safe)
        .await?;
    println!("registered {name} --> {location}");
    Ok(())
}

/// `remove NAME` (a regex with `regex`): prints how many went.
pub async fn remove(ns: &Ns, name: &str, regex: bool) -> anyhow::Result<()> {
    let ns = ns.connect().await?;
    let removed = if regex {
        ns.remove_matching(name).await?
    } else {
        ns.remove(name).await?
    };
    println!("{removed}");
    Ok(())
}

/// `ping`: whether the name server answers.
pub async fn ping(ns: &Ns) -> anyhow::Result<()> {
    ns.connect().await?.ping().await?;
    println!("Name server ping ok.");
    Ok(())
}

/// `serve`: the name server, until Ctrl-C or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        addr,
        max_names,
        broadcast,
        ssl,
    } = args;
    let tls = ssl.server()?;
    let listener = plumbing::cli::listen(addr).await?;
    let ns = listener.local_addr()?;
    let stop = plumbing::shutdown::signal();
    match tls {
        Some(_) => println!("NS running on {ns} (TLS)"),
        None => println!("NS running on {ns}"),
    }
    let responder = match broadcast.addr(ns) {
        Some(udp) => {
            let socket = tokio::net::UdpSocket::bind(udp).await.map_err(|err| {
                anyhow::anyhow!("cannot answer broadcast lookups on UDP {udp} ({err}); give another port with --broadcast PORT, or --no-broadcast")
            })?;
            println!("Broadcast server running on {udp}");
            Some(tokio::spawn(broadcast::respond(socket, ns)))
        }
        None => {
            if !broadcast.no_broadcast {
                println!("Not starting broadcast server for localhost.");
            }
            None
        }
    };
    server::serve(Listener::new(listener, tls), max_names.max(1), stop).await;
    if let Some(responder) = responder {
        responder.abort();
    }
    Ok(())
}
