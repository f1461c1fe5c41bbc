//! Which connections a server holds, and what it may take back: at the
//! connection limit, the oldest connection with no call in flight is shed to
//! make room, so a flood of idle sockets cannot lock new clients out. Also the
//! server-wide figures ([`ServerStats`]) that show the bounds hold.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::conn::Unwritten;

/// Live figures of a running server: how much memory its connections hold and
/// what its limits did. Cheap to clone; read at any time (tests, health pages).
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    /// The counters, shared with the server's connections.
    pub(crate) inner: Arc<StatsInner>,
}

/// The counters behind [`ServerStats`].
#[derive(Debug, Default)]
pub(crate) struct StatsInner {
    /// Bytes of partly received frames buffered, over all connections (what the
    /// server-wide read budget bounds).
    pub(crate) partial_frame_bytes: Arc<AtomicUsize>,
    /// The open connections (their unwritten bytes are summed on demand).
    pub(crate) open: Connections,
    /// Connections open now.
    pub(crate) connections: AtomicUsize,
    /// Idle connections closed to make room for a new one at the limit.
    pub(crate) connections_shed: AtomicU64,
    /// Connections cut for breaking a bound (not reading, stalled frame, no
    /// first frame, read budget, malformed stream).
    pub(crate) connections_cut: AtomicU64,
    /// Connections refused at the limit (nothing idle to shed).
    pub(crate) connections_refused: AtomicU64,
}

impl ServerStats {
    /// Bytes of partly received frames buffered now, over all connections.
    pub fn partial_frame_bytes(&self) -> usize {
        self.inner.partial_frame_bytes.load(Ordering::Relaxed)
    }

    /// Bytes queued for peers and not yet written, over all connections.
    pub fn unwritten_bytes(&self) -> usize {
        self.inner.open.unwritten_bytes()
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Idle connections shed at the connection limit, ever.
    pub fn connections_shed(&self) -> u64 {
        self.inner.connections_shed.load(Ordering::Relaxed)
    }

    /// Connections cut for breaking a bound, ever.
    pub fn connections_cut(&self) -> u64 {
        self.inner.connections_cut.load(Ordering::Relaxed)
    }

    /// Connections refused at the limit, ever.
    pub fn connections_refused(&self) -> u64 {
        self.inner.connections_refused.load(Ordering::Relaxed)
    }
}

/// What the server keeps of one connection, to shed it.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    /// Calls running on the connection now (0: idle, may be shed).
    pub(crate) calls: AtomicUsize,
    /// Cancelled to drain the connection — by shutdown (it is a child of the
    /// server's stop token) or to shed it: it sends a goaway and closes once its
    /// calls (if any) are done. One token for both, so the connection's loop
    /// polls one notifier rather than two.
    pub(crate) drain: CancellationToken,
    /// The connection's write queue's count of unwritten bytes (the same counters).
    pub(crate) unwritten: Arc<Unwritten>,
}

/// The server's open connections, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    /// By admission order: a `BTreeMap` so the oldest is first, deterministically.
    open: Mutex<BTreeMap<u64, Arc<ConnHandle>>>,
    /// The next admission number.
    next: AtomicU64,
}

impl Connections {
    /// Registers a new connection, drained when `stop` is cancelled; returns
    /// its number and handle.
    pub(crate) fn open(&self, stop: &CancellationToken) -> (u64, Arc<ConnHandle>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ConnHandle {
            calls: AtomicUsize::new(0),
            drain: stop.child_token(),
            unwritten: Arc::default(),
        });
        self.lock().insert(id, Arc::clone(&handle));
        (id, handle)
    }

    pub(crate) fn close(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Bytes queued for peers and not yet written, over the open connections.
    fn unwritten_bytes(&self) -> usize {
        self.lock().values().map(|conn| conn.unwritten.get()).sum()
    }

    /// Marks the oldest connection with no call in flight (and not already
    /// marked) to be shed; false if every connection is busy.
    pub(crate) fn shed_oldest_idle(&self) -> bool {
        let open = self.lock();
        let idle = open
            .values()
            .find(|conn| !conn.drain.is_cancelled() && conn.calls.load(Ordering::Relaxed) == 0);
        match idle {
            Some(conn) => {
                conn.drain.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnHandle>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_is_shed_first() {
        let conns = Connections::default();
        let stop = CancellationToken::new();
        let (_, oldest) = conns.open(&stop);
        let (_, middle) = conns.open(&stop);
        let (_, newest) = conns.open(&stop);
        oldest.calls.store(1, Ordering::Relaxed);
        middle.calls.store(0, Ordering::Relaxed);
        assert!(conns.shed_oldest_idle());
        assert!(
            !oldest.drain.is_cancelled(),
            "a connection with a call is kept"
        );
        assert!(middle.drain.is_cancelled());
        assert!(conns.shed_oldest_idle());
        assert!(newest.drain.is_cancelled());
        assert!(!conns.shed_oldest_idle(), "nothing idle is left");
    }
}
