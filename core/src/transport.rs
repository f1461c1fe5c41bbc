//! The transport abstraction: how squall reaches a peer. Core ships TCP; the
//! simulation harness plugs in turmoil's network through the same trait, so the
//! code under test is the code that ships. With feature `tls`, [`tls::Tls`]
//! runs the same protocol over rustls.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

#[cfg(feature = "tls")]
pub mod tls;

/// One established connection, already split into halves so a reader task and a
/// writer task can own one each without a lock.
#[derive(Debug)]
pub struct Connection<R, W> {
    /// The half frames are read from.
    pub reader: R,
    /// The half frames are written to.
    pub writer: W,
    /// The peer's address (for logs, traces and auth decisions).
    pub peer: SocketAddr,
}

/// A network squall can run on.
///
/// Addresses are strings (`"127.0.0.1:7000"`, or `"server-1:7000"` in the
/// simulation) so each transport resolves names its own way.
pub trait Transport: Clone + Send + Sync + 'static {
    /// The read half of a connection.
    type Reader: AsyncRead + Send + Unpin + 'static;
    /// The write half of a connection.
    type Writer: AsyncWrite + Send + Unpin + 'static;
    /// A bound listener.
    type Listener: Listener<Reader = Self::Reader, Writer = Self::Writer>;

    /// Opens a connection to `addr`.
    fn connect(
        &self,
        addr: &str,
    ) -> impl Future<Output = io::Result<Connection<Self::Reader, Self::Writer>>> + Send;

    /// Binds a listener on `addr`.
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
}

/// A bound listener that accepts connections.
pub trait Listener: Send + 'static {
    /// The read half of an accepted connection.
    type Reader: AsyncRead + Send + Unpin + 'static;
    /// The write half of an accepted connection.
    type Writer: AsyncWrite + Send + Unpin + 'static;

    /// Waits for the next connection.
    fn accept(
        &mut self,
    ) -> impl Future<Output = io::Result<Connection<Self::Reader, Self::Writer>>> + Send;

    /// The address actually bound (useful after binding port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Real TCP via tokio, with `TCP_NODELAY` set (squall coalesces writes itself).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp;

/// A bound TCP listener.
#[derive(Debug)]
pub struct TcpListener {
    /// The tokio listener.
    inner: tokio::net::TcpListener,
}

fn split_tcp(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> io::Result<Connection<tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf>> {
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    Ok(Connection {
        reader,
        writer,
        peer,
    })
}

// The common path (bind, learn the port) needs no trait import: the inherent
// methods below are what `Transport` and `Listener` call.
impl Tcp {
    /// Binds a listener on `addr` (`"127.0.0.1:0"` picks a free port).
    pub async fn bind(&self, addr: &str) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: tokio::net::TcpListener::bind(addr).await?,
        })
    }
}

impl TcpListener {
    /// The address actually bound (the port, after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Transport for Tcp {
    type Reader = tokio::net::tcp::OwnedReadHalf;
    type Writer = tokio::net::tcp::OwnedWriteHalf;
    type Listener = TcpListener;

    async fn connect(&self, addr: &str) -> io::Result<Connection<Self::Reader, Self::Writer>> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let peer = stream.peer_addr()?;
        split_tcp(stream, peer)
    }

    async fn bind(&self, addr: &str) -> io::Result<TcpListener> {
        Tcp::bind(self, addr).await
    }
}

impl Listener for TcpListener {
    type Reader = tokio::net::tcp::OwnedReadHalf;
    type Writer = tokio::net::tcp::OwnedWriteHalf;

    async fn accept(&mut self) -> io::Result<Connection<Self::Reader, Self::Writer>> {
        let (stream, peer) = self.inner.accept().await?;
        split_tcp(stream, peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}
