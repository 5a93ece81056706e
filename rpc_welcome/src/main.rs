//! `rpc_welcome`: the chapter's named RPC server and client, plus a demo and
//! a bench.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumbing::cli::{Runtime, host_port, socket_addr};
use tokio::net::TcpListener;

use rpc_naming::{DEFAULT_MAX_NAMES, DEFAULT_NS_ADDR, NS_ENV, NameServerClient};
use rpc_welcome::{DEFAULT_NAME, PROMPT, bench, buy, connect, ready_line, serve};

#[derive(Parser)]
#[command(
    version,
    about = "A named RPC server and client (replaces pyro_server.py / pyro_client.py)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct Naming {
    /// The name server, HOST:PORT: `rpc_naming serve` or Python's
    /// `python -m Pyro4.naming`.
    #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR, value_parser = host_port)]
    ns: String,
    /// The name the server registers under.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
}

#[derive(Subcommand)]
enum Command {
    /// Name server, server and client in one process (the default).
    Demo {
        /// The book to buy.
        #[arg(long, default_value = bench::TITLE)]
        title: String,
    },
    /// Serve welcome_message (tarpc) and welcomeMessage (Pyro4, for pyro_client.py) on one port, registered with the name server.
    Server {
        #[command(flatten)]
        naming: Naming,
        /// Address to listen on (IP:PORT; port 0 picks a free one); 0.0.0.0
        /// lets anyone on the network connect.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = socket_addr)]
        addr: SocketAddr,
    },
    /// Buy a book: find the server by name and call it (over Pyro4 if it is pyro_server.py).
    Client {
        #[command(flatten)]
        naming: Naming,
        /// The book's title; without it, asks on stdin as the chapter did.
        #[arg(long)]
        title: Option<String>,
    },
    /// Calls/s sequential and concurrent, over tarpc and Pyro4, and a raw TCP ping-pong in the same run.
    Bench {
        /// A name server whose registered server to measure; without it, the
        /// bench starts its own name server and server.
        #[arg(long, env = NS_ENV, value_parser = host_port)]
        ns: Option<String>,
        /// The name of the server to measure.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Calls per run.
        #[arg(long, default_value_t = 20_000)]
        calls: u64,
        /// Calls in flight at once in the concurrent run.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

// One thread: an RPC is microseconds of work, and on two cores hand-offs
// between the threads of a work-stealing pool cost more than they give
// (measured in the README).
fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Demo {
        title: bench::TITLE.into(),
    });
    // A bench's own servers stopping is not news.
    let log = match command {
        Command::Bench { .. } => "warn",
        _ => "warn,rpc_welcome=info,plumbing=info",
    };
    plumbing::cli::run(Runtime::CurrentThread, log, run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo { title } => demo(&title).await,
        Command::Server { naming, addr } => server(&naming, addr).await,
        Command::Client { naming, title } => {
            let title = match title {
                Some(title) => title,
                None => rpc_welcome::ask_title().await?,
            };
            let ns = NameServerClient::connect(&naming.ns).await?;
            let client = connect(&ns, &naming.name).await?;
            println!("{}", buy(&client, &naming.name, title.trim()).await?);
            Ok(())
        }
        Command::Bench {
            ns,
            name,
            calls,
            concurrency,
        } => {
            println!("{}", bench::run(ns, &name, calls, concurrency).await?);
            Ok(())
        }
    }
}

async fn demo(title: &str) -> anyhow::Result<()> {
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

async fn server(naming: &Naming, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = plumbing::cli::listen(addr).await?;
    let bound = listener.local_addr()?;
    let ns = NameServerClient::connect(&naming.ns).await?;
    let stop = plumbing::shutdown::signal();
    let lease = ns.claim(&naming.name, bound).await?;
    println!("{}", ready_line(&naming.name, bound));
    serve(listener, &naming.name, stop).await;
    rpc_naming::release_on_exit(lease).await;
    Ok(())
}
