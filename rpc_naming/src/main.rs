//! `rpc_naming`: the name server (`serve`, the default) and Pyro4 `nsc`-style
//! commands to query and change it.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumbing::cli::{Runtime, host_port, socket_addr};

use rpc_naming::{
    DEFAULT_MAX_NAMES, DEFAULT_NS_ADDR, Location, NS_ENV, NameServerClient, broadcast, server,
};

#[derive(Parser)]
#[command(
    version,
    about = "A name server for the RPC examples (replaces python -m Pyro4.naming and nsc)",
    long_about = "A name server for the RPC examples (replaces python -m Pyro4.naming and nsc).\n\n\
                  It speaks tarpc and Pyro4 on one port, so Python's Pyro4 programs use it as \
                  their name server; the client commands work against Python's \
                  `python -m Pyro4.naming` as well."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct Ns {
    /// The name server to talk to (HOST:PORT).
    #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR, value_parser = host_port)]
    ns: String,
}

/// How Python's `Pyro4.locateNS()` without a host finds the name server.
#[derive(clap::Args, Default)]
struct Broadcast {
    /// Answer Pyro4's broadcast lookups (`GET_NSURI`) on this UDP port. On
    /// by default on port 9091, as Python's name server, except for a name
    /// server on loopback (nothing else could reach it), where giving the
    /// port turns it on.
    #[arg(long, value_name = "PORT")]
    broadcast: Option<u16>,
    /// Do not answer broadcast lookups.
    #[arg(long, conflicts_with = "broadcast")]
    no_broadcast: bool,
}

impl Broadcast {
    /// The UDP address to answer on for a name server at `ns`, if any.
    fn addr(&self, ns: SocketAddr) -> Option<SocketAddr> {
        let on = !self.no_broadcast && (self.broadcast.is_some() || !ns.ip().is_loopback());
        on.then(|| broadcast::bind_addr(ns, self.broadcast.unwrap_or(broadcast::DEFAULT_PORT)))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the name server (the default).
    Serve {
        /// Address to listen on (IP:PORT); 0.0.0.0 lets anyone on the network connect.
        #[arg(long, default_value = DEFAULT_NS_ADDR, value_parser = socket_addr)]
        addr: SocketAddr,
        /// Most names the table holds.
        #[arg(long, default_value_t = DEFAULT_MAX_NAMES)]
        max_names: usize,
        #[command(flatten)]
        broadcast: Broadcast,
    },
    /// List registrations, all or those starting with PREFIX.
    List {
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
    },
    /// Set NAME's metadata to the TAGs given (none: clear it), as nsc setmeta.
    Setmeta {
        name: String,
        tags: Vec<String>,
        #[command(flatten)]
        ns: Ns,
    },
    /// Print where NAME leads (IP:PORT, or a Pyro4 URI), and its metadata.
    Lookup {
        name: String,
        #[command(flatten)]
        ns: Ns,
    },
    /// Register NAME at LOCATION (overwrites unless --safe); it stays until removed.
    Register {
        name: String,
        /// Where the server is: IP:PORT for a server of this workspace, or a
        /// Pyro4 URI, PYRO:objectid@host:port, for a Python one.
        location: Location,
        /// Fail if the name is already registered.
        #[arg(long)]
        safe: bool,
        #[command(flatten)]
        ns: Ns,
    },
    /// Remove NAME (or with --regex, every name matching it); prints how many.
    Remove {
        name: String,
        /// Treat NAME as a regex (anchored at the start).
        #[arg(long)]
        regex: bool,
        #[command(flatten)]
        ns: Ns,
    },
    /// Lookups per second (sequential, concurrent, over Pyro4) against a
    /// raw TCP ping-pong in the same run.
    Bench {
        /// The name server to measure (Python's, say); without it, the bench
        /// starts its own.
        #[arg(long, env = NS_ENV, value_parser = host_port)]
        ns: Option<String>,
        /// Lookups per run.
        #[arg(long, default_value_t = 20_000)]
        lookups: u64,
        /// Lookups in flight at once in the concurrent run.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Check that the name server answers.
    Ping {
        #[command(flatten)]
        ns: Ns,
    },
}

// One thread: an RPC is microseconds of work, and on two cores hand-offs
// between the threads of a work-stealing pool cost more than they give
// (measured in the README).
fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Serve {
        addr: DEFAULT_NS_ADDR.parse().expect("valid default address"),
        max_names: DEFAULT_MAX_NAMES,
        broadcast: Broadcast::default(),
    });
    // A bench's own name server registering and stopping is not news.
    let log = match command {
        Command::Bench { .. } => "warn",
        _ => "warn,rpc_naming=info,plumbing=info",
    };
    plumbing::cli::run(Runtime::CurrentThread, log, run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            addr,
            max_names,
            broadcast,
        } => serve(addr, max_names, &broadcast).await?,
        Command::List {
            prefix,
            regex,
            meta_all,
            meta_any,
            ns,
        } => {
            let ns = NameServerClient::connect(&ns.ns).await?;
            let names = match regex {
                Some(pattern) => ns.list_matching(&pattern).await?,
                None if !meta_all.is_empty() => ns.list_by_metadata(&meta_all, false).await?,
                None if !meta_any.is_empty() => ns.list_by_metadata(&meta_any, true).await?,
                None => ns.list(prefix.as_deref()).await?,
            };
            for (name, addr) in names {
                println!("{name} --> {addr}");
            }
        }
        Command::Setmeta { name, tags, ns } => {
            let ns = NameServerClient::connect(&ns.ns).await?;
            ns.set_metadata(&name, &tags).await?;
            println!(
                "{}",
                if tags.is_empty() {
                    "Metadata cleared"
                } else {
                    "Metadata updated"
                }
            );
        }
        Command::Lookup { name, ns } => {
            let ns = NameServerClient::connect(&ns.ns).await?;
            let (location, metadata) = ns.lookup_with_metadata(&name).await?;
            println!("{location}");
            if !metadata.is_empty() {
                println!("metadata: {}", metadata.join(" "));
            }
        }
        Command::Register {
            name,
            location,
            safe,
            ns,
        } => {
            NameServerClient::connect(&ns.ns)
                .await?
                .register(&name, location.clone(), safe)
                .await?;
            println!("registered {name} --> {location}");
        }
        Command::Remove { name, regex, ns } => {
            let ns = NameServerClient::connect(&ns.ns).await?;
            let removed = if regex {
                ns.remove_matching(&name).await?
            } else {
                ns.remove(&name).await?
            };
            println!("{removed}");
        }
        Command::Ping { ns } => {
            NameServerClient::connect(&ns.ns).await?.ping().await?;
            println!("Name server ping ok.");
        }
        Command::Bench {
            ns,
            lookups,
            concurrency,
        } => println!(
            "{}",
            rpc_naming::bench::run(ns, lookups, concurrency.max(1)).await?
        ),
    }
    Ok(())
}

async fn serve(addr: SocketAddr, max_names: usize, broadcast: &Broadcast) -> anyhow::Result<()> {
    let listener = plumbing::cli::listen(addr).await?;
    let ns = listener.local_addr()?;
    let stop = plumbing::shutdown::signal();
    println!("NS running on {ns}");
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
    server::serve(listener, max_names.max(1), stop).await;
    if let Some(responder) = responder {
        responder.abort();
    }
    Ok(())
}
