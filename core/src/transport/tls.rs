//! TLS over TCP with rustls (feature `tls`): the [`Tls`] transport.
//!
//! A client completes its handshake inside [`Transport::connect`], so a wrong
//! certificate authority or server name fails the connect with rustls' reason.
//!
//! A server does *not* handshake in `accept`: the accepted stream handshakes
//! lazily, on the connection's own task, the first time it is read or
//! written. So a slow or silent peer never stalls the accept loop, every
//! handshake holds one of the server's `max_connections` slots (the limit and
//! the oldest-idle shedding apply to handshakes too), and the handshake is
//! bounded twice: by [`TlsServerConfig::handshake_timeout`] and by the server's
//! `first_frame_timeout` (no frame can arrive before the handshake is done).
//!
//! Both ends offer the ALPN protocol id [`ALPN_SQUALL`]; a peer that offers
//! ALPN without it is refused by rustls (`no_application_protocol`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{Connection, Listener, Tcp, TcpListener, Transport};

/// The ALPN protocol id squall offers and accepts: protocol major version 1.
pub const ALPN_SQUALL: &[u8] = b"squall/1";

/// How long a handshake may take by default (either side).
const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Client-side TLS settings: whom to trust, optionally who we are (mutual
/// TLS), the server name to verify (SNI), and the handshake bound.
#[derive(Clone, Debug)]
pub struct TlsClientConfig {
    /// The rustls configuration (roots, client identity, ALPN).
    rustls: Arc<rustls::ClientConfig>,
    /// The name verified against the server's certificate. `None`: the host
    /// part of the address dialled (a DNS name or an IP address).
    server_name: Option<ServerName<'static>>,
    /// Connect plus handshake must finish within this.
    handshake_timeout: Duration,
}

impl TlsClientConfig {
    /// Trusts the certificate authorities in `ca_pem` (PEM, one or more); with
    /// `identity` = (certificate chain PEM, private key PEM), presents that
    /// client certificate to servers that ask (mutual TLS).
    pub fn from_pem(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> io::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(ca_pem, "CA")? {
            roots
                .add(cert)
                .map_err(|error| invalid(format!("CA certificate: {error}")))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| invalid(error.to_string()))?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain_pem, key_pem)) => builder
                .with_client_auth_cert(certificates(chain_pem, "client")?, private_key(key_pem)?)
                .map_err(|error| invalid(format!("client identity: {error}")))?,
        };
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// [`TlsClientConfig::from_pem`] reading the files at the given paths.
    pub fn from_pem_files(ca: &Path, identity: Option<(&Path, &Path)>) -> io::Result<Self> {
        let ca_pem = read(ca)?;
        match identity {
            None => Self::from_pem(&ca_pem, None),
            Some((chain, key)) => Self::from_pem(&ca_pem, Some((&read(chain)?, &read(key)?))),
        }
    }

    /// Uses a rustls configuration as it is, except that [`ALPN_SQUALL`] is
    /// offered when it offers no ALPN protocol of its own.
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Self {
        let config = if config.alpn_protocols.is_empty() {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![ALPN_SQUALL.to_vec()];
            Arc::new(config)
        } else {
            config
        };
        TlsClientConfig {
            rustls: config,
            server_name: None,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
        }
    }

    /// Verifies the server's certificate against `name` (and sends it as SNI)
    /// instead of the host part of the address dialled.
    pub fn server_name(mut self, name: &str) -> io::Result<Self> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|error| invalid(format!("server name {name:?}: {error}")))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// Bounds connect plus handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

/// Server-side TLS settings: our identity, optionally the authorities client
/// certificates must chain to (mutual TLS), and the handshake bound.
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    /// The rustls configuration (identity, client verifier, ALPN).
    rustls: Arc<rustls::ServerConfig>,
    /// A handshake not finished this long after accept fails the connection.
    handshake_timeout: Duration,
}

impl TlsServerConfig {
    /// Serves with the certificate chain in `chain_pem` and the private key in
    /// `key_pem`. With `client_ca_pem`, every client must present a certificate
    /// chaining to one of those authorities (mutual TLS); without, none is asked.
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
    ) -> io::Result<Self> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| invalid(error.to_string()))?;
        let builder = match client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca_pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(ca_pem, "client CA")? {
                    roots
                        .add(cert)
                        .map_err(|error| invalid(format!("client CA certificate: {error}")))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|error| invalid(format!("client verifier: {error}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certificates(chain_pem, "server")?, private_key(key_pem)?)
            .map_err(|error| invalid(format!("server identity: {error}")))?;
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// [`TlsServerConfig::from_pem`] reading the files at the given paths.
    pub fn from_pem_files(chain: &Path, key: &Path, client_ca: Option<&Path>) -> io::Result<Self> {
        let client_ca = client_ca.map(read).transpose()?;
        Self::from_pem(&read(chain)?, &read(key)?, client_ca.as_deref())
    }

    /// Uses a rustls configuration as it is, except that [`ALPN_SQUALL`] is
    /// accepted when it accepts no ALPN protocol of its own.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        let config = if config.alpn_protocols.is_empty() {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![ALPN_SQUALL.to_vec()];
            Arc::new(config)
        } else {
            config
        };
        TlsServerConfig {
            rustls: config,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
        }
    }

    /// Bounds each handshake, counted from accept (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

/// TLS over TCP. Build it with [`Tls::client`] to dial, [`Tls::server`] to
/// listen, or [`Tls::new`] for a process that does both.
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// use squall::transport::tls::{Tls, TlsClientConfig};
/// use squall::{Channel, ChannelConfig};
/// let tls = Tls::client(TlsClientConfig::from_pem_files("ca.pem".as_ref(), None)?);
/// let channel = Channel::connect(&tls, "localhost:7443", ChannelConfig::default()).await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Tls {
    /// Settings for `connect`; without them, connecting fails.
    client: Option<TlsClientConfig>,
    /// Settings for `bind`; without them, binding fails.
    server: Option<TlsServerConfig>,
}

impl Tls {
    /// A transport that dials with `client` and listens with `server`.
    pub fn new(client: Option<TlsClientConfig>, server: Option<TlsServerConfig>) -> Tls {
        Tls { client, server }
    }

    /// A transport that only dials.
    pub fn client(config: TlsClientConfig) -> Tls {
        Tls::new(Some(config), None)
    }

    /// A transport that only listens.
    pub fn server(config: TlsServerConfig) -> Tls {
        Tls::new(None, Some(config))
    }
}

impl Transport for Tls {
    type Reader = ReadHalf<TlsStream>;
    type Writer = WriteHalf<TlsStream>;
    type Listener = TlsListener;

    async fn connect(&self, addr: &str) -> io::Result<Connection<Self::Reader, Self::Writer>> {
        let Some(config) = &self.client else {
            return Err(io::Error::other(
                "this Tls transport has no client config: build it with Tls::client or Tls::new",
            ));
        };
        let name = match &config.server_name {
            Some(name) => name.clone(),
            None => server_name_of(addr)?,
        };
        let connect = async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let peer = stream.peer_addr()?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config.rustls));
            let stream = connector
                .connect(name.clone(), stream)
                .await
                .map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!(
                            "TLS handshake with {addr} (server name {}) failed: {error}",
                            name.to_str()
                        ),
                    )
                })?;
            Ok::<_, io::Error>((stream, peer))
        };
        let (stream, peer) = tokio::time::timeout(config.handshake_timeout, connect)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "TLS connect to {addr} took longer than {:?}",
                        config.handshake_timeout
                    ),
                )
            })??;
        let stream = TlsStream {
            state: State::Ready(tokio_rustls::TlsStream::Client(stream)),
            peer,
        };
        let (reader, writer) = tokio::io::split(stream);
        Ok(Connection {
            reader,
            writer,
            peer,
        })
    }

    async fn bind(&self, addr: &str) -> io::Result<TlsListener> {
        let Some(config) = &self.server else {
            return Err(io::Error::other(
                "this Tls transport has no server config: build it with Tls::server or Tls::new",
            ));
        };
        Ok(TlsListener {
            tcp: Tcp.bind(addr).await?,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::clone(&config.rustls)),
            handshake_timeout: config.handshake_timeout,
        })
    }
}

/// A bound TLS listener: accepts TCP at once; each stream handshakes on first use.
pub struct TlsListener {
    /// The TCP listener underneath.
    tcp: TcpListener,
    /// Starts server handshakes.
    acceptor: tokio_rustls::TlsAcceptor,
    /// Bound on each handshake.
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Listener for TlsListener {
    type Reader = ReadHalf<TlsStream>;
    type Writer = WriteHalf<TlsStream>;

    async fn accept(&mut self) -> io::Result<Connection<Self::Reader, Self::Writer>> {
        let (stream, peer) = self.tcp.inner.accept().await?;
        stream.set_nodelay(true)?;
        let stream = TlsStream {
            state: State::Handshaking {
                accept: self.acceptor.accept(stream),
                deadline: Box::pin(tokio::time::sleep(self.handshake_timeout)),
            },
            peer,
        };
        let (reader, writer) = tokio::io::split(stream);
        Ok(Connection {
            reader,
            writer,
            peer,
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Where a stream's handshake is.
enum State {
    /// Accepted, handshake not finished (server side only).
    Handshaking {
        /// The handshake in progress.
        accept: tokio_rustls::Accept<TcpStream>,
        /// When the handshake gives up.
        deadline: Pin<Box<tokio::time::Sleep>>,
    },
    /// Encrypted and ready.
    Ready(tokio_rustls::TlsStream<TcpStream>),
    /// The handshake failed; every later read and write fails with this.
    Failed(io::ErrorKind),
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Handshaking { .. } => "Handshaking",
            State::Ready(_) => "Ready",
            State::Failed(_) => "Failed",
        })
    }
}

/// A TLS stream over TCP (split into halves by the transport).
#[derive(Debug)]
pub struct TlsStream {
    /// Handshaking, ready or failed.
    state: State,
    /// The peer, for the handshake failure log.
    peer: SocketAddr,
}

impl TlsStream {
    /// Drives the handshake; the stream once it is done.
    fn poll_ready_stream(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<io::Result<&mut tokio_rustls::TlsStream<TcpStream>>> {
        if let State::Handshaking { accept, deadline } = &mut self.state {
            let outcome = match Pin::new(accept).poll(cx) {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    )),
                    Poll::Pending => return Poll::Pending,
                },
            };
            self.state = match outcome {
                Ok(stream) => State::Ready(tokio_rustls::TlsStream::Server(stream)),
                Err(error) => {
                    tracing::info!(peer = %self.peer, %error, "TLS handshake failed: closing the connection");
                    State::Failed(error.kind())
                }
            };
        }
        match &mut self.state {
            State::Ready(stream) => Poll::Ready(Ok(stream)),
            State::Failed(kind) => Poll::Ready(Err(io::Error::new(
                *kind,
                format!("TLS handshake with {} failed", self.peer),
            ))),
            State::Handshaking { .. } => unreachable!("the handshake state was resolved above"),
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_ready_stream(cx))?;
        Pin::new(stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_ready_stream(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_ready_stream(cx))?;
        Pin::new(stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_ready_stream(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::Failed(_) = this.state {
            return Poll::Ready(Ok(()));
        }
        let stream = ready!(this.poll_ready_stream(cx))?;
        Pin::new(stream).poll_shutdown(cx)
    }
}

/// The crypto provider: ring (builds with a C compiler only; no cmake or nasm).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server name to verify when dialling `addr` (`host:port`).
fn server_name_of(addr: &str) -> io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_owned()).map_err(|error| {
        invalid(format!(
            "cannot derive a TLS server name from {addr:?} ({error}): set one with TlsClientConfig::server_name"
        ))
    })
}

fn certificates(pem: &[u8], what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("{what} certificate PEM: {error}")))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{what} certificate PEM holds no certificate"
        )));
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| invalid(format!("private key PEM: {error}")))
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_the_host_part_of_the_address() {
        assert_eq!(
            server_name_of("localhost:7443").unwrap().to_str(),
            "localhost"
        );
        assert_eq!(
            server_name_of("127.0.0.1:7443").unwrap().to_str(),
            "127.0.0.1"
        );
        assert_eq!(server_name_of("[::1]:7443").unwrap().to_str(), "::1");
        assert!(server_name_of("bad name:1").is_err());
    }

    #[test]
    fn pem_without_a_certificate_is_refused_with_a_reason() {
        let error = certificates(b"not pem", "CA").unwrap_err();
        assert!(error.to_string().contains("CA certificate PEM"), "{error}");
    }
}
