//! The name server over TLS (Pyro4's SSL, client certificates required),
//! under clients that do not speak it: each is dropped within the
//! handshake deadline and the name server serves everyone else.

use std::time::Duration;

use rpc_naming::{Location, NameServerClient};
use rpc_transport::Listener;
use test_support::tls::TestCerts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TLS name server on this runtime; its address.
async fn start_tls_ns(certs: &TestCerts) -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let tls = certs.ssl_args().server().unwrap();
    tokio::spawn(rpc_naming::server::serve(
        Listener::new(tcp, tls),
        100,
        std::future::pending(),
    ));
    addr
}

/// Waits (bounded) for the server to close `stream`: the handshake deadline
/// (5 s) closes it, well before the idle timeout (60 s) would; the bound
/// only keeps a broken server from hanging the suite.
async fn closed_by_the_server(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_silent_clients_on_a_tls_port_are_dropped_and_the_rest_served() {
    let certs = TestCerts::make();
    let addr = start_tls_ns(&certs).await;
    let client_tls = certs.ssl_args().client().unwrap();
    let served = NameServerClient::connect_with(&addr, client_tls.clone())
        .await
        .unwrap();
    served
        .register(
            "example.tls",
            Location::Rust("127.0.0.1:4000".parse().unwrap()),
            false,
        )
        .await
        .unwrap();

    // A client of this workspace without TLS is told what may be wrong.
    let plain = NameServerClient::connect(&addr).await.unwrap_err();
    assert!(
        plain.to_string().contains("does it require TLS?"),
        "{plain}"
    );

    // A plain-text Pyro4 CONNECT: not TLS, dropped at once.
    let mut speaking = TcpStream::connect(&addr).await.unwrap();
    speaking.write_all(b"PYRO\x00\x30\x00\x01").await.unwrap();
    closed_by_the_server(&mut speaking).await;

    // Clients that connect and say nothing hold a slot only until the
    // handshake deadline.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    for stream in &mut silent {
        closed_by_the_server(stream).await;
    }

    // Everyone with the settings was served meanwhile, and still is.
    served.ping().await.unwrap();
    let fresh = NameServerClient::connect_with(&addr, client_tls)
        .await
        .unwrap();
    assert_eq!(
        fresh.lookup("example.tls").await.unwrap(),
        Location::Rust("127.0.0.1:4000".parse().unwrap())
    );
}
