//! Where hosts write trace events. One per run, shared by every host (all hosts
//! of a simulated run execute on one thread, so the order of appends is the
//! deterministic execution order).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::sockets::Sockets;
use crate::trace::{Event, EventKind, Trace};

/// The most events one run may record: far above any sane scenario (a 30 s run
/// at 300 calls/s records ~40,000), low enough that a runaway workload fails
/// with a clear error instead of exhausting memory.
pub const EVENTS_MAX: usize = 5_000_000;

/// A shared, append-only event log — the run's shared harness handle, which
/// also carries the registry of simulated sockets ([`Sockets`]).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// Every host's open connections, for deterministic crash teardown.
    sockets: Sockets,
    /// The events so far.
    events: Arc<Mutex<Vec<Event>>>,
    /// Set once [`EVENTS_MAX`] is reached: later events are dropped, workloads
    /// stop issuing calls and the runner fails the run.
    full: Arc<AtomicBool>,
    /// The real network of a real-TCP run (`None` in a simulated run): where
    /// every host's transport connects and listens.
    real: Option<Arc<crate::real::RealNet>>,
}

impl Recorder {
    /// An empty log.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `kind` on `host` at the current simulated time. Inside a host
    /// that is the host's virtual clock; outside (the harness between steps),
    /// callers use [`Recorder::record_at`].
    pub fn record(&self, host: &str, kind: EventKind) {
        let at = now();
        self.record_at(at, host, kind);
    }

    /// Records `kind` on `host` at `at`.
    pub fn record_at(&self, at: Duration, host: &str, kind: EventKind) {
        let mut events = self.lock();
        if events.len() >= EVENTS_MAX {
            self.full.store(true, Ordering::Relaxed);
            return;
        }
        events.push(Event {
            at,
            host: host.to_owned(),
            kind,
        });
    }

    /// An empty log for a real-TCP run over `net`.
    pub(crate) fn real(net: Arc<crate::real::RealNet>) -> Recorder {
        Recorder {
            real: Some(net),
            ..Recorder::default()
        }
    }

    /// The real network, in a real-TCP run.
    pub(crate) fn real_net(&self) -> Option<&Arc<crate::real::RealNet>> {
        self.real.as_ref()
    }

    /// The run's simulated sockets.
    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }

    /// Whether the log reached [`EVENTS_MAX`].
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Events recorded so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Calls `f` with the events so far, without copying them. `f` must not
    /// record (the log is locked while it runs).
    pub fn with_events<R>(&self, f: impl FnOnce(&[Event]) -> R) -> R {
        f(&self.lock())
    }

    /// The trace so far.
    pub fn snapshot(&self) -> Trace {
        Trace {
            events: self.lock().clone(),
        }
    }
}

/// Simulated time since the start of the run, as seen by the running host (in
/// a real-TCP run: scenario time, the wall clock read through the time scale).
pub fn now() -> Duration {
    turmoil::sim_elapsed()
        .or_else(crate::real::clock::now)
        .unwrap_or_default()
}
