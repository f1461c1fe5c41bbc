//! [`Resolver`]: a client's live view of one service's instances, which
//! survives registry outages by keeping the last known list.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::{Backoff, Registry, Snapshot};
use crate::Status;

/// Called with every [`ResolverEvent`] from the resolver's task.
pub type ResolverObserver = Arc<dyn Fn(&ResolverEvent) + Send + Sync>;

/// How fresh a resolver's instance list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolverState {
    /// No answer from the registry yet; the list is empty.
    Initial,
    /// The last call to the registry succeeded: the list is current (as of the
    /// registry's own knowledge).
    Fresh,
    /// Calls to the registry are failing; the list is the last one known and
    /// is kept, because serving from a slightly old list beats failing every call.
    Stale {
        /// When the first failing call (since the last success) failed.
        since: Instant,
    },
}

/// What a resolver saw, for tracing a client's view of discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolverEvent {
    /// The instance list changed (including the first list).
    Updated {
        /// The snapshot's revision.
        revision: u64,
        /// The addresses now listed.
        addrs: Vec<String>,
    },
    /// The registry became unreachable; the last known list is kept.
    Stale {
        /// When the first call failed.
        since: Instant,
        /// Why it failed.
        status: Status,
    },
    /// A call failed while already stale; the resolver retries after a backoff.
    Failed {
        /// Why it failed.
        status: Status,
    },
    /// The registry answered again after being unreachable.
    Recovered {
        /// How long the list was stale.
        stale_for: Duration,
    },
}

/// How a [`Resolver`] follows its service.
#[derive(Clone)]
pub struct ResolverConfig {
    /// Bound on one watch long-poll. When it elapses with no change, the resolver
    /// confirms with a `discover` that the registry is still there (and has not
    /// restarted with lower revisions). Default 10 s.
    pub watch_timeout: Duration,
    /// Bound on one `discover` call. Default 1 s.
    pub call_timeout: Duration,
    /// Delays between failed attempts.
    pub backoff: Backoff,
    /// Hears every resolver event.
    pub observer: Option<ResolverObserver>,
}

impl Default for ResolverConfig {
    fn default() -> ResolverConfig {
        ResolverConfig {
            watch_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(1),
            backoff: Backoff::default(),
            observer: None,
        }
    }
}

impl fmt::Debug for ResolverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverConfig")
            .field("watch_timeout", &self.watch_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("backoff", &self.backoff)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// Follows one service: a task long-polls the registry's `watch` (falling back
/// to `discover`) and publishes every new instance list. While the registry is
/// unreachable the last known list stays published and the state is
/// [`ResolverState::Stale`]; the task retries with bounded backoff and converges
/// once the registry answers again. Dropping the resolver stops the task.
pub struct Resolver {
    /// The service followed.
    service: String,
    /// The last known snapshot; changes are signalled only when the instance
    /// list changes, not for a revision alone.
    snapshot: watch::Receiver<Snapshot>,
    /// How fresh the snapshot is.
    state: watch::Receiver<ResolverState>,
    /// The polling task, aborted on drop.
    task: JoinHandle<()>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("service", &self.service)
            .field("snapshot", &*self.snapshot.borrow())
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Starts following `service` in `registry`, on the current runtime.
    pub fn spawn(
        registry: Arc<dyn Registry>,
        service: impl Into<String>,
        config: ResolverConfig,
    ) -> Resolver {
        let service = service.into();
        let (snapshot_tx, snapshot_rx) = watch::channel(Snapshot::default());
        let (state_tx, state_rx) = watch::channel(ResolverState::Initial);
        let task = Task {
            registry,
            service: service.clone(),
            config,
            snapshot: snapshot_tx,
            state: state_tx,
        };
        Resolver {
            service,
            snapshot: snapshot_rx,
            state: state_rx,
            task: tokio::spawn(task.run()),
        }
    }

    /// The service followed.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The last known instance list.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// Follows the instance list; `changed()` fires when the list changes.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    /// How fresh the list is.
    pub fn state(&self) -> ResolverState {
        *self.state.borrow()
    }

    /// Follows the freshness state.
    pub fn subscribe_state(&self) -> watch::Receiver<ResolverState> {
        self.state.clone()
    }

    /// Whether the registry is unreachable and the list may be out of date.
    pub fn is_stale(&self) -> bool {
        matches!(self.state(), ResolverState::Stale { .. })
    }

    /// Waits until the list is fresh (the registry has answered; at start-up, the
    /// first answer) and returns it. Waits as long as it takes; bound it with a
    /// timeout.
    pub async fn ready(&self) -> Snapshot {
        let mut state = self.state.clone();
        // The sender lives in the task; if the task is gone the state stays as is.
        let _ = state.wait_for(|state| *state == ResolverState::Fresh).await;
        self.snapshot()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The resolver's task state.
struct Task {
    /// Where to look.
    registry: Arc<dyn Registry>,
    /// What to look for.
    service: String,
    /// How.
    config: ResolverConfig,
    /// Publishes the last known list.
    snapshot: watch::Sender<Snapshot>,
    /// Publishes the freshness state.
    state: watch::Sender<ResolverState>,
}

impl Task {
    /// Follows the service forever (until aborted).
    async fn run(self) {
        let mut backoff = self.config.backoff.clone();
        // The revision to watch after; `None` means "ask with discover first".
        let mut known: Option<u64> = None;
        loop {
            let outcome = match known {
                None => self.bounded(self.registry.discover(&self.service)).await,
                Some(revision) => {
                    match timeout(
                        self.config.watch_timeout,
                        self.registry.watch(&self.service, revision),
                    )
                    .await
                    {
                        Ok(outcome) => outcome,
                        Err(_quiet) => {
                            // No change within the long-poll: confirm with discover.
                            known = None;
                            continue;
                        }
                    }
                }
            };
            match outcome {
                Ok(snapshot) => {
                    known = Some(snapshot.revision);
                    backoff.reset();
                    self.accept(snapshot);
                }
                Err(status) => {
                    known = None;
                    self.fail(status);
                    sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Publishes an answer from the registry and marks the list fresh.
    fn accept(&self, snapshot: Snapshot) {
        // Any answer is the registry's current truth, even with a lower revision
        // (it restarted): compare content, not revisions.
        let event = ResolverEvent::Updated {
            revision: snapshot.revision,
            addrs: snapshot
                .instances
                .iter()
                .map(|instance| instance.addr.clone())
                .collect(),
        };
        let first = *self.state.borrow() == ResolverState::Initial;
        let changed = self.snapshot.send_if_modified(|current| {
            let changed = current.instances != snapshot.instances;
            *current = snapshot;
            changed
        });
        if changed || first {
            if first && !changed {
                // An empty first list: receivers learn it is an answer, not a default.
                self.snapshot.send_modify(|_| {});
            }
            self.emit(event);
        }
        let previous = self.state.send_replace(ResolverState::Fresh);
        if let ResolverState::Stale { since } = previous {
            self.emit(ResolverEvent::Recovered {
                stale_for: Instant::now() - since,
            });
        }
    }

    /// Records a failed call; the list is kept.
    fn fail(&self, status: Status) {
        let current = *self.state.borrow();
        match current {
            ResolverState::Stale { .. } => self.emit(ResolverEvent::Failed { status }),
            ResolverState::Initial | ResolverState::Fresh => {
                let since = Instant::now();
                self.state.send_replace(ResolverState::Stale { since });
                self.emit(ResolverEvent::Stale { since, status });
            }
        }
    }

    /// Runs a discover within the call timeout.
    async fn bounded(
        &self,
        call: impl Future<Output = Result<Snapshot, Status>>,
    ) -> Result<Snapshot, Status> {
        let limit = self.config.call_timeout;
        timeout(limit, call).await.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "resolver: discover {:?} took longer than {limit:?}",
                self.service
            )))
        })
    }

    /// Tells the observer.
    fn emit(&self, event: ResolverEvent) {
        if let Some(observer) = &self.config.observer {
            observer(&event);
        }
    }
}
