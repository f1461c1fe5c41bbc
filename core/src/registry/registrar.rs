//! [`Registrar`]: keeps one server instance registered for as long as it runs.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

use super::{Backoff, Instance, LeaseId, Registry};
use crate::{Code, Status};

/// Called with every [`RegistrarEvent`] from the registrar's task.
pub type RegistrarObserver = Arc<dyn Fn(&RegistrarEvent) + Send + Sync>;

/// What a registrar did, for tracing a server's view of its registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// The first registration succeeded.
    Registered {
        /// The lease granted.
        lease: LeaseId,
    },
    /// A keep-alive succeeded.
    Renewed {
        /// The lease kept alive.
        lease: LeaseId,
    },
    /// The registry no longer knows the lease (it expired, or the registry
    /// restarted): the registrar registers again at once.
    LeaseLost {
        /// The lease the registry no longer knows.
        lease: LeaseId,
    },
    /// A registration after a lost lease succeeded.
    ReRegistered {
        /// The new lease.
        lease: LeaseId,
    },
    /// A call to the registry failed; the registrar retries after a backoff.
    Failed {
        /// `"register"`, `"keep_alive"` or `"deregister"`.
        operation: &'static str,
        /// Why.
        status: Status,
    },
    /// [`Registrar::stop`] revoked the lease.
    Deregistered {
        /// The revoked lease.
        lease: LeaseId,
    },
}

/// How a [`Registrar`] keeps its registration alive.
#[derive(Clone)]
pub struct RegistrarConfig {
    /// The lease TTL asked for: how long a dead server stays listed. Default 10 s.
    pub ttl: Duration,
    /// Time between keep-alives; `None` means `ttl / 3`, so two keep-alives in a
    /// row can be lost before the lease expires.
    pub keep_alive_interval: Option<Duration>,
    /// Bound on each registry call; `None` means the keep-alive interval, so a
    /// hung call never delays the next keep-alive.
    pub call_timeout: Option<Duration>,
    /// Delays between failed attempts.
    pub backoff: Backoff,
    /// Hears every registrar event.
    pub observer: Option<RegistrarObserver>,
}

impl Default for RegistrarConfig {
    fn default() -> RegistrarConfig {
        RegistrarConfig {
            ttl: Duration::from_secs(10),
            keep_alive_interval: None,
            call_timeout: None,
            backoff: Backoff::default(),
            observer: None,
        }
    }
}

impl fmt::Debug for RegistrarConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrarConfig")
            .field("ttl", &self.ttl)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("call_timeout", &self.call_timeout)
            .field("backoff", &self.backoff)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl RegistrarConfig {
    /// The effective keep-alive interval.
    fn interval(&self) -> Duration {
        self.keep_alive_interval.unwrap_or(self.ttl / 3)
    }

    /// The effective per-call bound.
    fn call_timeout(&self) -> Duration {
        self.call_timeout.unwrap_or_else(|| self.interval())
    }
}

/// A server's registration, kept alive by a task: it registers, sends a
/// keep-alive every interval, registers again whenever the registry has lost the
/// lease (expiry, registry restart), and retries failures with bounded backoff.
///
/// [`Registrar::stop`] deregisters (graceful shutdown). Dropping a registrar
/// without stopping it aborts the task and leaves the lease to expire, exactly
/// like a crash.
pub struct Registrar {
    /// The keep-alive task; it returns the deregistration's outcome.
    task: Option<JoinHandle<Result<(), Status>>>,
    /// Asks the task to deregister and end.
    stop: Option<oneshot::Sender<()>>,
    /// The current lease, `None` while unregistered.
    lease: watch::Receiver<Option<LeaseId>>,
}

impl fmt::Debug for Registrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrar")
            .field("lease", &*self.lease.borrow())
            .finish_non_exhaustive()
    }
}

impl Registrar {
    /// Starts keeping `instance` registered in `registry`, on the current runtime.
    pub fn spawn(
        registry: Arc<dyn Registry>,
        instance: Instance,
        config: RegistrarConfig,
    ) -> Registrar {
        assert!(
            config.interval() > Duration::ZERO,
            "registrar: keep-alive interval must be positive"
        );
        let (stop_tx, stop_rx) = oneshot::channel();
        let (lease_tx, lease_rx) = watch::channel(None);
        let task = Task {
            registry,
            instance,
            config,
            lease: lease_tx,
        };
        Registrar {
            task: Some(tokio::spawn(task.run(stop_rx))),
            stop: Some(stop_tx),
            lease: lease_rx,
        }
    }

    /// The lease currently held, `None` while (re-)registering.
    pub fn lease(&self) -> Option<LeaseId> {
        *self.lease.borrow()
    }

    /// Follows the lease as it changes.
    pub fn lease_changes(&self) -> watch::Receiver<Option<LeaseId>> {
        self.lease.clone()
    }

    /// Stops keeping the instance alive and deregisters it. A call in progress
    /// finishes first (each is bounded by the call timeout). A lease the registry
    /// no longer knows counts as deregistered.
    pub async fn stop(mut self) -> Result<(), Status> {
        if let Some(stop) = self.stop.take() {
            // The task may have ended already (it never does on its own); then
            // the join below reports why.
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|error| {
                Status::internal(format!("registrar: task ended abnormally: {error}"))
            })?,
            None => Ok(()),
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The registrar's task state.
struct Task {
    /// Where to register.
    registry: Arc<dyn Registry>,
    /// What to register.
    instance: Instance,
    /// How.
    config: RegistrarConfig,
    /// Publishes the current lease to the [`Registrar`] handle.
    lease: watch::Sender<Option<LeaseId>>,
}

impl Task {
    /// Registers and keeps alive until asked to stop, then deregisters.
    async fn run(self, mut stop: oneshot::Receiver<()>) -> Result<(), Status> {
        let mut backoff = self.config.backoff.clone();
        let mut registered_before = false;
        let mut wake_at = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = sleep_until(wake_at) => {}
            }
            let lease = *self.lease.borrow();
            wake_at = match lease {
                None => match self
                    .bounded(
                        "register",
                        self.registry
                            .register(self.instance.clone(), self.config.ttl),
                    )
                    .await
                {
                    Ok(lease) => {
                        self.emit(if registered_before {
                            RegistrarEvent::ReRegistered { lease }
                        } else {
                            RegistrarEvent::Registered { lease }
                        });
                        registered_before = true;
                        self.lease.send_replace(Some(lease));
                        backoff.reset();
                        Instant::now() + self.config.interval()
                    }
                    Err(status) => {
                        self.emit(RegistrarEvent::Failed {
                            operation: "register",
                            status,
                        });
                        Instant::now() + backoff.next_delay()
                    }
                },
                Some(lease) => self.keep_alive(lease, &mut backoff).await,
            };
        }
        self.deregister().await
    }

    /// One keep-alive; returns when to act next.
    async fn keep_alive(&self, lease: LeaseId, backoff: &mut Backoff) -> Instant {
        match self
            .bounded("keep_alive", self.registry.keep_alive(lease))
            .await
        {
            Ok(_granted_ttl) => {
                self.emit(RegistrarEvent::Renewed { lease });
                backoff.reset();
                Instant::now() + self.config.interval()
            }
            Err(status) if status.code() == Code::NotFound => {
                self.emit(RegistrarEvent::LeaseLost { lease });
                self.lease.send_replace(None);
                Instant::now()
            }
            Err(status) => {
                self.emit(RegistrarEvent::Failed {
                    operation: "keep_alive",
                    status,
                });
                // Retry sooner than the interval: the lease is running out.
                Instant::now() + backoff.next_delay().min(self.config.interval())
            }
        }
    }

    /// Revokes the current lease, if any.
    async fn deregister(&self) -> Result<(), Status> {
        let Some(lease) = *self.lease.borrow() else {
            return Ok(());
        };
        let result = match self
            .bounded("deregister", self.registry.deregister(lease))
            .await
        {
            Err(status) if status.code() == Code::NotFound => Ok(()),
            other => other,
        };
        self.lease.send_replace(None);
        match result {
            Ok(()) => {
                self.emit(RegistrarEvent::Deregistered { lease });
                Ok(())
            }
            Err(status) => {
                self.emit(RegistrarEvent::Failed {
                    operation: "deregister",
                    status: status.clone(),
                });
                Err(status)
            }
        }
    }

    /// Runs a registry call within the call timeout.
    async fn bounded<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let limit = self.config.call_timeout();
        timeout(limit, call).await.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "registrar: {operation} for {}/{} took longer than {limit:?}",
                self.instance.service, self.instance.addr
            )))
        })
    }

    /// Tells the observer.
    fn emit(&self, event: RegistrarEvent) {
        if let Some(observer) = &self.config.observer {
            observer(&event);
        }
    }
}
