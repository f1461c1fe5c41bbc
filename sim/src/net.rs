//! The turmoil implementation of squall's [`Transport`]: the unchanged core runs
//! over the simulated network. Connection attempts are recorded in the trace.
//!
//! Every connection's halves live in a [`Socket`] slot the harness can empty.
//! When turmoil crashes a host it drops the host's tokio runtime, and tokio drops
//! the runtime's tasks in an order that depends on *process-global* task ids
//! (its task list is sharded by id). Each socket that closes sends a FIN, and
//! each send draws a latency from turmoil's world RNG — so a crash would make the
//! rest of the run depend on what the process did before (another run, another
//! `explore` thread). Instead, every host runs a closer task
//! ([`Sockets::spawn_closer`]); before a crash the harness signals it
//! ([`Sockets::request_close`]) and steps one tick, in which the host closes its
//! sockets in the order they were opened (inside the host, so turmoil sends the
//! FINs); the runtime's drop then finds them empty.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use squall::transport::{Connection, Listener, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::recorder::Recorder;
use crate::trace::EventKind;

/// The port every simulated server listens on.
pub const SERVER_PORT: u16 = 7000;

/// Both halves of one connection, emptied when the harness closes it.
#[derive(Debug, Default)]
struct Halves {
    read: Option<OwnedReadHalf>,
    write: Option<OwnedWriteHalf>,
}

/// One simulated connection, shared by its reader, its writer and the harness.
type Socket = Arc<Mutex<Halves>>;

fn lock(socket: &Mutex<Halves>) -> MutexGuard<'_, Halves> {
    socket.lock().unwrap_or_else(|p| p.into_inner())
}

/// One host's connections and its close signal.
#[derive(Debug, Default)]
struct HostSockets {
    /// Connections in the order they were opened (weak: dropped ones are gone).
    open: Vec<Weak<Mutex<Halves>>>,
    /// Wakes the host's closer task.
    close: Arc<Notify>,
}

/// Every host's open connections, in the order they were opened.
#[derive(Clone, Debug, Default)]
pub struct Sockets {
    /// Host → its sockets.
    hosts: Arc<Mutex<BTreeMap<String, HostSockets>>>,
}

impl Sockets {
    fn add(&self, host: &str, reader: OwnedReadHalf, writer: OwnedWriteHalf) -> Socket {
        let socket = Arc::new(Mutex::new(Halves {
            read: Some(reader),
            write: Some(writer),
        }));
        let mut hosts = self.lock();
        let list = &mut hosts.entry(host.to_owned()).or_default().open;
        list.retain(|s| s.strong_count() > 0);
        list.push(Arc::downgrade(&socket));
        socket
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, HostSockets>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal(&self, host: &str) -> Arc<Notify> {
        Arc::clone(&self.lock().entry(host.to_owned()).or_default().close)
    }

    /// Starts `host`'s closer task on the current (host) runtime. Each host
    /// software calls this first, so a crash always finds it running.
    pub fn spawn_closer(&self, host: &str) {
        let signal = self.signal(host);
        let sockets = self.clone();
        let host = host.to_owned();
        tokio::spawn(async move {
            signal.notified().await;
            sockets.close_now(&host);
        });
    }

    /// Asks `host`'s closer task to close every connection at its next tick.
    pub fn request_close(&self, host: &str) {
        self.signal(host).notify_one();
    }

    /// Closes every open connection of `host`, oldest first (write half, then
    /// read half): the deterministic teardown of a crash. Runs inside the host.
    fn close_now(&self, host: &str) {
        let list = std::mem::take(&mut self.lock().entry(host.to_owned()).or_default().open);
        for socket in list.iter().filter_map(Weak::upgrade) {
            let mut halves = lock(&socket);
            drop(halves.write.take());
            drop(halves.read.take());
        }
    }
}

/// The read half the core sees.
#[derive(Debug)]
pub struct SimReader(Socket);

/// The write half the core sees.
#[derive(Debug)]
pub struct SimWriter(Socket);

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "host crashed")
}

impl AsyncRead for SimReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match lock(&self.0).read.as_mut() {
            Some(read) => Pin::new(read).poll_read(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for SimWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match lock(&self.0).write.as_mut() {
            Some(write) => Pin::new(write).poll_write(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.0).write.as_mut() {
            Some(write) => Pin::new(write).poll_flush(cx),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.0).write.as_mut() {
            Some(write) => Pin::new(write).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// turmoil's network, seen from one host.
#[derive(Clone, Debug)]
pub struct SimTransport {
    /// The host this transport belongs to (for trace events).
    host: String,
    /// Where connection events go.
    recorder: Recorder,
}

impl SimTransport {
    /// The transport of `host`.
    pub fn new(host: &str, recorder: Recorder) -> SimTransport {
        SimTransport {
            host: host.to_owned(),
            recorder,
        }
    }
}

/// The host part of an address (`server-1` of `server-1:7000`), for trace events.
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

/// Records `conn.failed … reason="TimedOut …"` for a connect dropped before
/// it resolved (the caller's connect timeout fired).
struct AbandonedConnect<'a> {
    recorder: &'a Recorder,
    host: &'a str,
    /// `Some` while the connect is pending.
    peer: Option<String>,
}

impl Drop for AbandonedConnect<'_> {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            // Inside a host only: a crash drops pending connects from outside
            // the simulation, which is not a connect timeout.
            if turmoil::sim_elapsed().is_some() {
                self.recorder.record(
                    self.host,
                    EventKind::ConnectFailed {
                        peer,
                        reason: "TimedOut (the caller gave up waiting for the connect)".to_owned(),
                    },
                );
            }
        }
    }
}

/// A bound simulated listener.
pub struct SimListener {
    /// turmoil's listener.
    inner: turmoil::net::TcpListener,
    /// The host, to register accepted connections under.
    host: String,
    /// Where accepted connections are registered.
    sockets: Sockets,
}

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimListener")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn split(sockets: &Sockets, host: &str, stream: turmoil::net::TcpStream) -> (SimReader, SimWriter) {
    let (reader, writer) = stream.into_split();
    let socket = sockets.add(host, reader, writer);
    (SimReader(Arc::clone(&socket)), SimWriter(socket))
}

impl Transport for SimTransport {
    type Reader = SimReader;
    type Writer = SimWriter;
    type Listener = SimListener;

    async fn connect(&self, addr: &str) -> io::Result<Connection<SimReader, SimWriter>> {
        let peer = host_of(addr).to_owned();
        // A connect the caller gives up on (its connect timeout; turmoil's
        // connects hang under `hold` or to a crashed host) is dropped before
        // it resolves: the guard records it, so timeouts are traced too.
        let mut abandoned = AbandonedConnect {
            recorder: &self.recorder,
            host: &self.host,
            peer: Some(peer.clone()),
        };
        let result = turmoil::net::TcpStream::connect(addr).await;
        abandoned.peer = None;
        match result {
            Ok(stream) => {
                self.recorder
                    .record(&self.host, EventKind::Connected { peer });
                let peer_addr = stream.peer_addr()?;
                let (reader, writer) = split(self.recorder.sockets(), &self.host, stream);
                Ok(Connection {
                    reader,
                    writer,
                    peer: peer_addr,
                })
            }
            Err(error) => {
                self.recorder.record(
                    &self.host,
                    EventKind::ConnectFailed {
                        peer,
                        reason: format!("{:?} ({error})", error.kind()),
                    },
                );
                Err(error)
            }
        }
    }

    async fn bind(&self, addr: &str) -> io::Result<SimListener> {
        let inner = turmoil::net::TcpListener::bind(addr).await?;
        Ok(SimListener {
            inner,
            host: self.host.clone(),
            sockets: self.recorder.sockets().clone(),
        })
    }
}

impl Listener for SimListener {
    type Reader = SimReader;
    type Writer = SimWriter;

    async fn accept(&mut self) -> io::Result<Connection<SimReader, SimWriter>> {
        let (stream, peer) = self.inner.accept().await?;
        let (reader, writer) = split(&self.sockets, &self.host, stream);
        Ok(Connection {
            reader,
            writer,
            peer,
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The address a simulated server binds.
pub fn bind_addr() -> String {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)).to_string()
}
