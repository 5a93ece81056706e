//! `rpc_chain`: a ring of RPC servers passing a message on, its client, a
//! demo and a bench.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumbing::cli::{Runtime, host_port, socket_addr};
use tokio::net::TcpListener;

use rpc_chain::{
    ChainServer, bench, connect, python_list, send, serve, server_name, starting_line,
};
use rpc_naming::{DEFAULT_MAX_NAMES, DEFAULT_NS_ADDR, Lease, NS_ENV, NameServerClient};

#[derive(Parser)]
#[command(
    version,
    about = "A ring of RPC servers passing a message on (replaces the Pyro4 chain example)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Name server, a ring of servers and the client in one process (the default).
    Demo {
        /// How many servers in the ring.
        #[arg(long, default_value_t = 3)]
        servers: u32,
    },
    /// Run server N of the ring (replaces server_chain_N.py; Python hops may be its neighbours).
    Server {
        /// The name server, HOST:PORT: `rpc_naming serve` or Python's
        /// `python -m Pyro4.naming`.
        #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR, value_parser = host_port)]
        ns: String,
        /// This server's id: it registers as example.chainTopology.ID.
        #[arg(long)]
        id: u32,
        /// The id of the server it passes messages on to.
        #[arg(long)]
        next: u32,
        /// Address to listen on (IP:PORT; port 0 picks a free one); 0.0.0.0
        /// lets anyone on the network connect.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = socket_addr)]
        addr: SocketAddr,
    },
    /// Send a message round the ring and print the status (replaces client_chain.py).
    Client {
        /// The name server, HOST:PORT.
        #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR, value_parser = host_port)]
        ns: String,
        /// The server to start at.
        #[arg(long, default_value_t = 1)]
        start: u32,
        /// The message's words.
        #[arg(default_values_t = ["hello".to_owned()])]
        words: Vec<String>,
    },
    /// Chains/s sequential and concurrent, entered over tarpc and Pyro4, and four raw ping-pongs per chain as the floor.
    Bench {
        /// A name server whose ring to measure; without it, the bench starts
        /// its own name server and a ring of --servers servers.
        #[arg(long, env = NS_ENV, value_parser = host_port)]
        ns: Option<String>,
        /// Ring size when the bench starts its own ring.
        #[arg(long, default_value_t = 3)]
        servers: u32,
        /// The server to start at.
        #[arg(long, default_value_t = 1)]
        start: u32,
        /// Chains per run.
        #[arg(long, default_value_t = 10_000)]
        calls: u64,
        /// Chains in flight at once in the concurrent run.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

// One thread: an RPC is microseconds of work, and on two cores hand-offs
// between the threads of a work-stealing pool cost more than they give
// (measured in the README).
fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Demo { servers: 3 });
    // A bench's own servers stopping is not news.
    let log = match command {
        Command::Bench { .. } => "warn",
        _ => "warn,rpc_chain=info,plumbing=info",
    };
    plumbing::cli::run(Runtime::CurrentThread, log, run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo { servers } => demo(servers.max(1)).await,
        Command::Server { ns, id, next, addr } => server(&ns, id, next, addr).await,
        Command::Client { ns, start, words } => {
            let ns = NameServerClient::connect(&ns).await?;
            let client = connect(&ns, start).await?;
            let status = send(&client, start, words).await?;
            println!("Status = {}", python_list(&status));
            Ok(())
        }
        Command::Bench {
            ns,
            servers,
            start,
            calls,
            concurrency,
        } => {
            println!(
                "{}",
                bench::run(ns, servers, start, calls, concurrency).await?
            );
            Ok(())
        }
    }
}

/// Binds, registers and serves server `id` of a ring of `size` in this process.
async fn spawn_ring_server(ns: &NameServerClient, id: u32, size: u32) -> anyhow::Result<Lease> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let lease = ns.claim(&server_name(id), listener.local_addr()?).await?;
    println!("{}", starting_line(id));
    let server = ChainServer::new(id, id % size + 1, ns.clone(), true);
    tokio::spawn(serve(listener, server, std::future::pending()));
    Ok(lease)
}

async fn demo(servers: u32) -> anyhow::Result<()> {
    let ns = NameServerClient::connect(&rpc_naming::server::spawn_local(DEFAULT_MAX_NAMES).await?)
        .await?;
    let mut leases = Vec::new();
    for id in 1..=servers {
        leases.push(spawn_ring_server(&ns, id, servers).await?);
    }
    let client = connect(&ns, 1).await?;
    let status = send(&client, 1, vec!["hello".to_owned()]).await?;
    println!("Status = {}", python_list(&status));
    for lease in leases {
        lease.release().await?;
    }
    Ok(())
}

async fn server(ns: &str, id: u32, next: u32, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = plumbing::cli::listen(addr).await?;
    let ns = NameServerClient::connect(ns).await?;
    let stop = plumbing::shutdown::signal();
    let lease = ns.claim(&server_name(id), listener.local_addr()?).await?;
    println!("{}", starting_line(id));
    serve(listener, ChainServer::new(id, next, ns, true), stop).await;
    rpc_naming::release_on_exit(lease).await;
    Ok(())
}
