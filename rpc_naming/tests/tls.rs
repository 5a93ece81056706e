//! The name server over TLS (Pyro4's SSL, client certificates required),
//! under clients that do not speak it: each is dropped within the
//! handshake deadline and the name server serves everyone else.

use std::time::Duration;

use plumbing::tls::KeyPassword;
use rpc_naming::{Location, NameServerClient};
use rpc_transport::Listener;
use rpc_transport::tls::SslArgs;
use test_support::tls::TestCerts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A name server on this runtime serving over TLS with `args`; its address.
async fn start_tls_ns(args: &SslArgs) -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let tls = args
        .server()
        .unwrap_or_else(|err| panic!("{args:?}: {err}"));
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
    let addr = start_tls_ns(&certs.ssl_args()).await;
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

/// Encrypted keys (PKCS#8, with `PYRO_SSL_*KEYPASSWD`) and a CA directory
/// (`PYRO_SSL_CACERTS` naming OpenSSL's hashed `capath`) serve as Python's
/// Pyro4 reads them, and so do keys in OpenSSL's legacy encrypted PEM; a
/// missing or wrong password, a cipher not read here and an empty CA
/// directory are each named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_keys_and_a_ca_directory_serve_and_their_mistakes_are_named() {
    let certs = TestCerts::make();
    let encrypted = certs.ssl_args_encrypted();
    // Settings are logged: their passwords never are.
    let shown = format!("{encrypted:?}");
    assert!(
        !shown.contains(test_support::tls::KEY_PASSWORD) && shown.contains("KeyPassword(***)"),
        "{shown}"
    );
    let addr = start_tls_ns(&encrypted).await;
    let client = NameServerClient::connect_with(&addr, encrypted.client().unwrap())
        .await
        .unwrap();
    let location = Location::Rust("127.0.0.1:4000".parse().unwrap());
    client
        .register("example.encrypted", location.clone(), false)
        .await
        .unwrap();
    assert_eq!(client.lookup("example.encrypted").await.unwrap(), location);

    // The key may be in the certificate's file (Pyro4 then takes no key
    // file), before the certificate or after it.
    let cert = std::fs::read_to_string(certs.path("server.pem")).unwrap();
    let key = std::fs::read_to_string(certs.path("server-encrypted.key")).unwrap();
    for (name, both) in [
        ("cert-key.pem", cert.clone() + &key),
        ("key-cert.pem", key + &cert),
    ] {
        let file = certs.path(name);
        std::fs::write(&file, both).unwrap();
        let args = SslArgs {
            servercert: Some(file),
            serverkey: None,
            ..encrypted.clone()
        };
        args.server().unwrap_or_else(|err| panic!("{name}: {err}"));
    }

    let server_error = |args: SslArgs| args.server().unwrap_err().to_string();
    let client_error = |args: SslArgs| args.client().unwrap_err().to_string();
    let no_password = server_error(SslArgs {
        serverkeypasswd: None,
        ..encrypted.clone()
    });
    assert!(
        no_password.ends_with(
            "server-encrypted.key is encrypted: give its password (PYRO_SSL_SERVERKEYPASSWD, --ssl-serverkeypasswd)"
        ),
        "{no_password}"
    );
    let no_password = client_error(SslArgs {
        clientkeypasswd: None,
        ..encrypted.clone()
    });
    assert!(
        no_password.contains("(PYRO_SSL_CLIENTKEYPASSWD, --ssl-clientkeypasswd)"),
        "{no_password}"
    );
    let wrong = client_error(SslArgs {
        clientkeypasswd: Some(KeyPassword("not-the-password".into())),
        ..encrypted.clone()
    });
    assert!(
        wrong.starts_with("cannot decrypt the key file") && wrong.contains("wrong password"),
        "{wrong}"
    );

    // OpenSSL's legacy encrypted PEM, as Python also reads it: each cipher
    // `openssl rsa -traditional` offers that Python's OpenSSL writes by
    // default or on request, served; a wrong password and a cipher not read
    // here named.
    let legacy = |cipher: &str| {
        let file = certs.path(&format!("legacy{cipher}.key"));
        let made = std::process::Command::new("openssl")
            .args([
                "rsa",
                "-traditional",
                cipher,
                "-passout",
                "pass:secret",
                "-in",
            ])
            .arg(certs.path("server.key"))
            .arg("-out")
            .arg(&file)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("Proc-Type: 4,ENCRYPTED"), "{text}");
        SslArgs {
            serverkey: Some(file),
            serverkeypasswd: Some(KeyPassword("secret".into())),
            ..encrypted.clone()
        }
    };
    for cipher in ["-aes128", "-aes192", "-aes256", "-des3"] {
        let addr = start_tls_ns(&legacy(cipher)).await;
        NameServerClient::connect_with(&addr, encrypted.client().unwrap())
            .await
            .unwrap_or_else(|err| panic!("{cipher}: {err}"))
            .ping()
            .await
            .unwrap();
    }
    let wrong_legacy = server_error(SslArgs {
        serverkeypasswd: Some(KeyPassword("not-the-password".into())),
        ..legacy("-aes256")
    });
    assert!(
        wrong_legacy.contains("legacy encrypted PEM") && wrong_legacy.contains("wrong password"),
        "{wrong_legacy}"
    );
    let other_cipher = server_error(legacy("-camellia256"));
    assert!(
        other_cipher.contains("cipher CAMELLIA-256-CBC is not read here")
            && other_cipher.contains("openssl pkcs8 -topk8"),
        "{other_cipher}"
    );

    let empty = certs.path("empty-cadir");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("README"), "no certificates here\n").unwrap();
    let empty_error = client_error(SslArgs {
        cacerts: Some(empty),
        ..encrypted
    });
    assert!(
        empty_error.starts_with("CA directory") && empty_error.ends_with("holds no certificate"),
        "{empty_error}"
    );
}

/// In TLS 1.3 a server refuses a client's certificate after the client has
/// finished its handshake, with an alert and a close; when the client's
/// first message crosses that close, the client sees a reset, not the
/// alert. Such a reset (here made on purpose: a server that closes with
/// `SO_LINGER` 0 right after its handshake) is said as what it most likely
/// is, not as a missing name server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_just_after_the_handshake_is_said_as_a_certificate_refusal() {
    let certs = TestCerts::make();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let server = SslArgs {
        requireclientcert: false,
        ..certs.ssl_args()
    }
    .server()
    .unwrap()
    .unwrap();
    tokio::spawn(async move {
        let (stream, _) = tcp.accept().await.unwrap();
        stream.set_zero_linger().unwrap();
        let handshaken = server.accept(stream).await.unwrap();
        drop(handshaken);
    });
    let err = NameServerClient::connect_with(&addr, certs.ssl_args().client().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("closed the connection just after the TLS handshake")
            && err.contains("refused the connection's client certificate"),
        "{err}"
    );
}
