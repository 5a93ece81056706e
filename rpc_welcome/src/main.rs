//! `rpc_welcome`: the chapter's named RPC server and client, plus a demo and
//! a bench.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;

use rpc_naming::{DEFAULT_MAX_NAMES, DEFAULT_NS_ADDR, NS_ENV, NameServer};
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
    /// The name server (start one with `rpc_naming serve`).
    #[arg(long, env = NS_ENV, default_value = DEFAULT_NS_ADDR)]
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
        #[arg(long, default_value = "Sistem Terdistribusi")]
        title: String,
    },
    /// Serve welcome_message and register it with the name server.
    Server {
        #[command(flatten)]
        naming: Naming,
        /// Address to listen on; 0.0.0.0 lets anyone on the network connect.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
    /// Buy a book: find the server by name and call welcome_message.
    Client {
        #[command(flatten)]
        naming: Naming,
        /// The book's title; without it, asks on stdin as the chapter did.
        #[arg(long)]
        title: Option<String>,
    },
    /// Calls/s sequential and concurrent, and a raw TCP ping-pong in the same run.
    Bench {
        /// A name server whose registered server to measure; without it, the
        /// bench starts its own name server and server.
        #[arg(long, env = NS_ENV)]
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
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run_cli().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().command.unwrap_or(Command::Demo {
        title: "Sistem Terdistribusi".into(),
    }) {
        Command::Demo { title } => demo(&title).await,
        Command::Server { naming, addr } => server(&naming, addr).await,
        Command::Client { naming, title } => {
            let title = match title {
                Some(title) => title,
                None => ask_title().await?,
            };
            let ns = NameServer::connect(&naming.ns).await?;
            let client = connect(&ns, &naming.name).await?;
            println!("{}", buy(&client, &naming.name, title.trim()).await?);
            Ok(())
        }
        Command::Bench {
            ns,
            name,
            calls,
            concurrency,
        } => run_bench(ns, &name, calls, concurrency).await,
    }
}

async fn ask_title() -> anyhow::Result<String> {
    print!("{PROMPT}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    Ok(line.trim().to_owned())
}

async fn demo(title: &str) -> anyhow::Result<()> {
    let ns_addr = rpc_naming::server::spawn_local(DEFAULT_MAX_NAMES).await?;
    let ns = NameServer::connect(&ns_addr).await?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let lease = ns.register_lease(DEFAULT_NAME, addr, false).await?;
    println!("{}", ready_line(DEFAULT_NAME, addr));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, async {
        let _ = stopped.await;
    }));

    println!("{PROMPT}{title}");
    let client = connect(&ns, DEFAULT_NAME).await?;
    println!("{}", buy(&client, DEFAULT_NAME, title).await?);

    lease.release().await?;
    let _ = stop.send(());
    server.await?;
    Ok(())
}

async fn server(naming: &Naming, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    if addr.ip().is_unspecified() {
        tracing::warn!("listening on {addr}: anyone on the network can connect");
    }
    let bound = listener.local_addr()?;
    let ns = NameServer::connect(&naming.ns).await?;
    let stop = rpc_naming::shutdown_signal();
    let lease = ns.register_lease(&naming.name, bound, false).await?;
    println!("{}", ready_line(&naming.name, bound));
    serve(listener, stop).await;
    rpc_naming::release_on_exit(lease).await;
    Ok(())
}

async fn run_bench(
    ns: Option<String>,
    name: &str,
    calls: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    // Without a name server to measure against, start one here and a
    // welcome server on its own thread, registered through it.
    let own = ns.is_none();
    let ns_addr = match ns {
        Some(ns) => ns,
        None => rpc_naming::server::spawn_local(DEFAULT_MAX_NAMES).await?,
    };
    let ns = NameServer::connect(&ns_addr).await?;
    let _own_server = if own {
        let server = rpc_naming::bench::spawn_server_thread(|listener, stopped| {
            serve(listener, async {
                let _ = stopped.await;
            })
        })?;
        ns.register(name, server.addr, false).await?;
        Some(server)
    } else {
        None
    };
    let client = connect(&ns, name).await?;
    let echo = rpc_naming::bench::spawn_server_thread(rpc_naming::bench::serve_echo)?;

    // Warm up both paths before measuring.
    bench::calls(&client, name, 1_000, 1).await?;
    rpc_naming::bench::ping_pong(echo.addr, 1_000).await?;

    let sequential = bench::calls(&client, name, calls, 1).await?;
    let raw = rpc_naming::bench::ping_pong(echo.addr, calls).await?;
    let concurrent = bench::calls(&client, name, calls, concurrency).await?;
    println!("welcome_message, sequential:      {}", sequential.summary());
    println!(
        "raw TCP ping-pong, {} bytes:      {}",
        rpc_naming::bench::PING_SIZE,
        raw.summary()
    );
    println!(
        "welcome_message, concurrency {concurrency:<3} {}",
        concurrent.summary()
    );
    println!(
        "ratio sequential/raw: {:.2}",
        sequential.per_second() / raw.per_second()
    );
    Ok(())
}
