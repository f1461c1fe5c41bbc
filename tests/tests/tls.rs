//! TLS end to end over loopback, with certificates generated at test time:
//! a call succeeds, a wrong CA and a missing client certificate are refused, a
//! plaintext client against a TLS server fails on both sides without hanging
//! and the server keeps serving, and a silent socket cannot hold a handshake
//! open past its timeout. Run with `cargo test -p squall-e2e --features tls`.
#![cfg(feature = "tls")]

mod common;

use std::time::Duration;

use common::guard;
use squall::server::ServerConfig;
use squall::transport::tls::{Tls, TlsClientConfig, TlsServerConfig};
use squall::{
    Channel, ChannelConfig, Client, Code, Context, Listener, Router, Server, Status, Transport,
};
use tokio::io::AsyncReadExt;

/// A certificate authority and a certificate it signed, all as PEM.
struct Pki {
    ca_pem: String,
    server_chain_pem: String,
    server_key_pem: String,
    client_chain_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    pki_named("squall test CA")
}

/// A PKI whose CA is called `ca_name` (two CAs with one name would be told
/// apart only by their signatures).
fn pki_named(ca_name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issue = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let params = rcgen::CertificateParams::new(names).expect("leaf params");
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server_chain_pem, server_key_pem) = issue(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_chain_pem, client_key_pem) = issue(vec!["client.test".into()]);
    Pki {
        ca_pem: ca.pem(),
        server_chain_pem,
        server_key_pem,
        client_chain_pem,
        client_key_pem,
    }
}

fn router() -> Router {
    Router::new().route(
        "Arith.Add",
        |_ctx: Context, (a, b): (i64, i64)| async move { Ok::<i64, Status>(a + b) },
    )
}

/// Starts `server` on a TLS listener; returns its `127.0.0.1:port`.
async fn start_tls(tls: Tls, server: Server) -> String {
    let listener = tls.bind("127.0.0.1:0").await.expect("bind TLS listener");
    let addr = listener.local_addr().expect("bound address").to_string();
    tokio::spawn(server.serve(listener, std::future::pending()));
    addr
}

fn server_tls(pki: &Pki, mutual: bool) -> Tls {
    let client_ca = mutual.then_some(pki.ca_pem.as_bytes());
    let config = TlsServerConfig::from_pem(
        pki.server_chain_pem.as_bytes(),
        pki.server_key_pem.as_bytes(),
        client_ca,
    )
    .expect("server TLS config");
    Tls::server(config)
}

fn client_tls(pki: &Pki, with_identity: bool) -> Tls {
    let identity = with_identity.then_some((
        pki.client_chain_pem.as_bytes(),
        pki.client_key_pem.as_bytes(),
    ));
    Tls::client(
        TlsClientConfig::from_pem(pki.ca_pem.as_bytes(), identity).expect("client TLS config"),
    )
}

async fn add_over<T: Transport>(tls: &T, addr: &str) -> Result<i64, Status> {
    let channel = Channel::connect(tls, addr, ChannelConfig::default()).await?;
    Client::new(channel)
        .with_timeout(Some(Duration::from_secs(5)))
        .call("Arith.Add", &(2, 3))
        .await
}

#[tokio::test]
async fn a_call_over_tls_succeeds() {
    let pki = pki();
    let addr = start_tls(server_tls(&pki, false), Server::new(router())).await;
    let sum = guard("call over TLS", add_over(&client_tls(&pki, false), &addr)).await;
    assert_eq!(sum, Ok(5));
}

#[tokio::test]
async fn the_server_name_is_taken_from_the_address_or_set_explicitly() {
    let pki = pki();
    let addr = start_tls(server_tls(&pki, false), Server::new(router())).await;
    let port = addr.rsplit_once(':').unwrap().1;
    let by_dns_name = add_over(&client_tls(&pki, false), &format!("localhost:{port}")).await;
    assert_eq!(by_dns_name, Ok(5), "localhost is in the certificate");
    let wrong_name = Tls::client(
        TlsClientConfig::from_pem(pki.ca_pem.as_bytes(), None)
            .unwrap()
            .server_name("other.example")
            .unwrap(),
    );
    let status = guard("wrong server name", add_over(&wrong_name, &addr))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("TLS handshake") && status.message().contains("other.example"),
        "the refusal names the handshake and the name: {status}"
    );
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused_with_a_clear_error() {
    let trusted = pki();
    let other = pki_named("another CA");
    let addr = start_tls(server_tls(&other, false), Server::new(router())).await;
    let status = guard(
        "connect to an untrusted server",
        add_over(&client_tls(&trusted, false), &addr),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.may_have_executed(), "nothing was sent");
    let message = status.message();
    assert!(
        message.contains("TLS handshake") && message.contains("UnknownIssuer"),
        "the error says the certificate's issuer is unknown: {message}"
    );
}

#[tokio::test]
async fn mutual_tls_admits_a_client_with_a_certificate_and_refuses_one_without() {
    let pki = pki();
    let addr = start_tls(server_tls(&pki, true), Server::new(router())).await;
    let with_cert = guard(
        "mTLS call with a certificate",
        add_over(&client_tls(&pki, true), &addr),
    )
    .await;
    assert_eq!(with_cert, Ok(5));
    // TLS 1.3 lets the client finish its side before the server checks its
    // (empty) certificate, so the refusal can arrive at connect or at the call.
    let without = guard(
        "mTLS call without a certificate",
        add_over(&client_tls(&pki, false), &addr),
    )
    .await;
    let status = without.expect_err("a client without a certificate is refused");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
}

#[tokio::test]
async fn a_plaintext_client_fails_cleanly_and_the_server_keeps_serving() {
    let pki = pki();
    let server = Server::new(router());
    let stats = server.stats();
    let addr = start_tls(server_tls(&pki, false), server).await;
    let plain = guard(
        "plaintext call against a TLS server",
        add_over(&squall::Tcp, &addr),
    )
    .await;
    let status = plain.expect_err("a plaintext call cannot succeed against TLS");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    common::wait_until("the server closes the plaintext connection", || {
        stats.connections() == 0
    })
    .await;
    let sum = guard(
        "TLS call after the plaintext one",
        add_over(&client_tls(&pki, false), &addr),
    )
    .await;
    assert_eq!(sum, Ok(5), "the server still serves TLS clients");
}

#[tokio::test]
async fn a_silent_socket_is_cut_at_the_handshake_timeout() {
    let pki = pki();
    let config = TlsServerConfig::from_pem(
        pki.server_chain_pem.as_bytes(),
        pki.server_key_pem.as_bytes(),
        None,
    )
    .unwrap()
    .handshake_timeout(Duration::from_millis(200));
    // A first-frame timeout far above the handshake timeout, so only the
    // handshake bound can cut the socket within the guard.
    let server = Server::new(router()).with_config(ServerConfig {
        first_frame_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    });
    let stats = server.stats();
    let addr = start_tls(Tls::server(config), server).await;
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    common::wait_until("the silent socket is admitted", || stats.connections() == 1).await;
    let mut byte = [0u8; 1];
    let read = guard(
        "the server closes the silent socket",
        silent.read(&mut byte),
    )
    .await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    common::wait_until("the connection slot is released", || {
        stats.connections() == 0
    })
    .await;
}

#[tokio::test]
async fn handshakes_count_against_the_connection_limit() {
    let pki = pki();
    let server = Server::new(router()).with_config(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    });
    let stats = server.stats();
    let addr = start_tls(server_tls(&pki, false), server).await;
    // A socket that never starts its handshake holds the only slot...
    let _silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    common::wait_until("the silent socket is admitted", || stats.connections() == 1).await;
    // ...so the next connection either sheds it (it has no call in flight) or
    // is refused; either way the limit was applied to a handshaking socket.
    let sum = guard(
        "a TLS call at the limit",
        add_over(&client_tls(&pki, false), &addr),
    )
    .await;
    assert!(
        stats.connections_shed() + stats.connections_refused() >= 1,
        "the limit saw the handshaking socket (call: {sum:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_concurrent_replies_over_tls_never_stall() {
    // The connection engine never calls flush (TCP needs none). rustls keeps
    // ciphertext a write could not push into a full socket; unless the stream
    // pushes it out itself, the last reply of a burst waits for the next write
    // (a keepalive ping, 10 s later). Bursts of large replies fill the socket.
    let pki = pki();
    let router = Router::new().route("Blob.Echo", |_ctx: Context, blob: Vec<u8>| async move {
        Ok::<Vec<u8>, Status>(blob)
    });
    let addr = start_tls(server_tls(&pki, false), Server::new(router)).await;
    let channel = Channel::connect(&client_tls(&pki, false), &addr, ChannelConfig::default())
        .await
        .expect("connect");
    let client = Client::new(channel).with_timeout(Some(Duration::from_secs(30)));
    for round in 0..20 {
        let calls: Vec<_> = (0..16)
            .map(|n| client.go::<_, Vec<u8>>("Blob.Echo", &vec![n as u8; 200 * 1024]))
            .collect();
        for (n, call) in calls.into_iter().enumerate() {
            let blob = guard(&format!("round {round}, call {n}"), call)
                .await
                .expect("echo");
            assert_eq!(blob.len(), 200 * 1024);
        }
    }
}
