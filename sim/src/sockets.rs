//! Every simulated connection's halves, in a [`Socket`] slot the harness can
//! empty, so a crash tears connections down in a deterministic order.
//!
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
//!
//! This module depends on neither the recorder (which carries the run's
//! [`Sockets`]) nor the transport (which registers connections here).

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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
    /// Registers a new connection of `host` and returns the halves the core
    /// sees; the harness keeps a weak handle to close them at a crash.
    pub(crate) fn open(
        &self,
        host: &str,
        stream: turmoil::net::TcpStream,
    ) -> (SimReader, SimWriter) {
        let (reader, writer) = stream.into_split();
        let socket = Arc::new(Mutex::new(Halves {
            read: Some(reader),
            write: Some(writer),
        }));
        let mut hosts = self.lock();
        let list = &mut hosts.entry(host.to_owned()).or_default().open;
        list.retain(|s| s.strong_count() > 0);
        list.push(Arc::downgrade(&socket));
        (
            SimReader(Half::Sim(Arc::clone(&socket))),
            SimWriter(Half::Sim(socket)),
        )
    }

    /// The halves the core sees of a real connection (real-TCP mode: a crash
    /// drops the host's runtime, which closes them; no ordering is needed).
    pub(crate) fn real(stream: tokio::net::TcpStream) -> (SimReader, SimWriter) {
        let (reader, writer) = stream.into_split();
        (SimReader(Half::Real(reader)), SimWriter(Half::Real(writer)))
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

/// One half of a connection: a simulated socket's slot, or (real-TCP mode)
/// a real socket's half.
#[derive(Debug)]
enum Half<R> {
    Sim(Socket),
    Real(R),
}

/// The read half the core sees.
#[derive(Debug)]
pub struct SimReader(Half<tokio::net::tcp::OwnedReadHalf>);

/// The write half the core sees.
#[derive(Debug)]
pub struct SimWriter(Half<tokio::net::tcp::OwnedWriteHalf>);

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "host crashed")
}

impl AsyncRead for SimReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = match &mut self.get_mut().0 {
            Half::Sim(socket) => socket,
            Half::Real(read) => return Pin::new(read).poll_read(cx, buf),
        };
        match lock(socket).read.as_mut() {
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
        let socket = match &mut self.get_mut().0 {
            Half::Sim(socket) => socket,
            Half::Real(write) => return Pin::new(write).poll_write(cx, buf),
        };
        match lock(socket).write.as_mut() {
            Some(write) => Pin::new(write).poll_write(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = match &mut self.get_mut().0 {
            Half::Sim(socket) => socket,
            Half::Real(write) => return Pin::new(write).poll_flush(cx),
        };
        match lock(socket).write.as_mut() {
            Some(write) => Pin::new(write).poll_flush(cx),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = match &mut self.get_mut().0 {
            Half::Sim(socket) => socket,
            Half::Real(write) => return Pin::new(write).poll_shutdown(cx),
        };
        match lock(socket).write.as_mut() {
            Some(write) => Pin::new(write).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}
