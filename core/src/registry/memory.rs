//! [`MemoryRegistry`]: the embedded registry, and the state behind the registry
//! service. One process, one mutex, leases expiring on `tokio::time`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::RngCore;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::{Instance, LeaseId, Registry, RegistryEvent, Snapshot};
use crate::rng::{Rng, SeedSource};
use crate::Status;

/// Called with every [`RegistryEvent`], in revision order, while the registry's
/// lock is held: it must be quick and must not call back into the registry.
pub type RegistryObserver = Arc<dyn Fn(&RegistryEvent) + Send + Sync>;

/// Bounds on everything a registry stores, so a misbehaving or malicious client
/// cannot grow it without limit. Violations are refused with a [`Status`] that
/// names the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Services with at least one live instance. Default 1024.
    pub services_max: usize,
    /// Live instances of one service. Default 1024.
    pub instances_per_service_max: usize,
    /// Concurrent [`Registry::watch`] calls across all services. Default 1024.
    pub watchers_max: usize,
    /// Shortest lease: shorter ones would make keep-alive traffic the load.
    /// Default 100 ms.
    pub ttl_min: Duration,
    /// Longest lease: a dead server stays listed at most this long. Default 1 h.
    pub ttl_max: Duration,
    /// Bytes in a service name, an address or a metadata key. Default 256.
    pub name_len_max: usize,
    /// Metadata entries per instance. Default 32.
    pub metadata_entries_max: usize,
    /// Bytes of metadata keys and values per instance, together. Default 4096.
    pub metadata_len_max: usize,
}

impl Default for RegistryLimits {
    fn default() -> RegistryLimits {
        RegistryLimits {
            services_max: 1024,
            instances_per_service_max: 1024,
            watchers_max: 1024,
            ttl_min: Duration::from_millis(100),
            ttl_max: Duration::from_secs(3600),
            name_len_max: 256,
            metadata_entries_max: 32,
            metadata_len_max: 4096,
        }
    }
}

impl RegistryLimits {
    /// Refuses a TTL or an instance that a registry with these limits will
    /// never accept (`InvalidArgument`, naming the limit). Every registry
    /// implementation applies the same checks, so they refuse the same input.
    pub(crate) fn check(&self, instance: &Instance, ttl: Duration) -> Result<(), Status> {
        let limits = self;
        if ttl < limits.ttl_min || ttl > limits.ttl_max {
            return Err(Status::invalid_argument(format!(
                "registry: ttl {ttl:?} for {}/{} is outside [{:?}, {:?}]",
                instance.service, instance.addr, limits.ttl_min, limits.ttl_max
            )));
        }
        check_name("service name", &instance.service, limits.name_len_max)?;
        check_name("instance address", &instance.addr, limits.name_len_max)?;
        if instance.metadata.len() > limits.metadata_entries_max {
            return Err(Status::invalid_argument(format!(
                "registry: {}/{} has {} metadata entries; the limit is {}",
                instance.service,
                instance.addr,
                instance.metadata.len(),
                limits.metadata_entries_max
            )));
        }
        let mut metadata_len: usize = 0;
        for (key, value) in &instance.metadata {
            check_name("metadata key", key, limits.name_len_max)?;
            metadata_len = metadata_len
                .saturating_add(key.len())
                .saturating_add(value.len());
        }
        if metadata_len > limits.metadata_len_max {
            return Err(Status::invalid_argument(format!(
                "registry: {}/{} has {metadata_len} bytes of metadata; the limit is {}",
                instance.service, instance.addr, limits.metadata_len_max
            )));
        }
        Ok(())
    }
}

/// Configures a [`MemoryRegistry`].
#[derive(Default)]
pub struct MemoryRegistryBuilder {
    /// The bounds to enforce.
    limits: RegistryLimits,
    /// Who hears about every change (the simulation's trace).
    observer: Option<RegistryObserver>,
    /// Where lease ids come from; `None` means a stream seeded from the OS.
    lease_seed: Option<SeedSource>,
}

impl fmt::Debug for MemoryRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegistryBuilder")
            .field("limits", &self.limits)
            .field("observer", &self.observer.is_some())
            .field("lease_seed", &self.lease_seed)
            .finish()
    }
}

impl MemoryRegistryBuilder {
    /// Enforces `limits` instead of the defaults.
    pub fn limits(mut self, limits: RegistryLimits) -> MemoryRegistryBuilder {
        self.limits = limits;
        self
    }

    /// Reports every register / renew / expire / deregister to `observer`.
    pub fn observer(mut self, observer: RegistryObserver) -> MemoryRegistryBuilder {
        self.observer = Some(observer);
        self
    }

    /// Draws lease ids from the random stream `registry/lease-ids` of `seed`
    /// instead of an OS-seeded one: what a simulation (or a replayable test)
    /// must do, since OS-seeded ids differ from run to run.
    ///
    /// A registry that can restart while its clients live on (the registry
    /// service) needs a different seed per incarnation: otherwise the restarted
    /// registry re-issues the same ids, and an old server's stale keep-alives
    /// would silently renew a new server's lease.
    ///
    /// A lease id is the holder's only proof of ownership (see
    /// `docs/REGISTRY.md`, "Security"), so outside a simulation leave this unset.
    pub fn lease_ids_from(mut self, seed: SeedSource) -> MemoryRegistryBuilder {
        self.lease_seed = Some(seed);
        self
    }

    /// The registry. Needs no runtime: the expiry task starts with the first lease.
    pub fn build(self) -> MemoryRegistry {
        let lease_ids = match self.lease_seed {
            Some(seed) => Box::new(seed.stream("registry/lease-ids")),
            None => Box::new(os_seeded_rng()),
        };
        let (changes, _) = watch::channel(0);
        MemoryRegistry {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    revision: 0,
                    removed_revision: 0,
                    services: BTreeMap::new(),
                    leases: BTreeMap::new(),
                    deadlines: BTreeSet::new(),
                    lease_ids,
                    sweeper: None,
                }),
                limits: self.limits,
                observer: self.observer,
                changes,
                sweeper_wake: Arc::new(Notify::new()),
                watchers: AtomicUsize::new(0),
            }),
        }
    }
}

/// The in-memory registry: the embedded default, and the state a registry
/// service serves.
///
/// Cheap to clone; clones share one registry. Leases expire exactly `ttl` after
/// their last keep-alive in `tokio::time` (virtual in the simulation), even when
/// nobody calls: one sweeper task per registry, spawned with the first lease on
/// the caller's runtime, removes expired instances and wakes watchers at that
/// instant. The sweeper stops when the last clone is dropped.
#[derive(Clone)]
pub struct MemoryRegistry {
    /// Everything; shared by clones and (weakly) by the sweeper.
    shared: Arc<Shared>,
}

impl fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("MemoryRegistry")
            .field("revision", &state.revision)
            .field("services", &state.services.len())
            .field("leases", &state.leases.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryRegistry {
    fn default() -> MemoryRegistry {
        MemoryRegistry::new()
    }
}

impl MemoryRegistry {
    /// A registry with default limits, no observer and OS-seeded (unguessable)
    /// lease ids.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::builder().build()
    }

    /// Configures a registry.
    pub fn builder() -> MemoryRegistryBuilder {
        MemoryRegistryBuilder::default()
    }

    /// The limits this registry enforces.
    pub fn limits(&self) -> &RegistryLimits {
        &self.shared.limits
    }

    /// Registers; see [`Registry::register`].
    pub async fn register(&self, instance: Instance, ttl: Duration) -> Result<LeaseId, Status> {
        self.shared.validate(&instance, ttl)?;
        let lease = {
            let mut state = self.shared.lock();
            let now = Instant::now();
            self.shared.expire_due(&mut state, now);
            let lease = self.shared.insert(&mut state, instance, ttl, now)?;
            self.ensure_sweeper(&mut state);
            lease
        };
        // The new deadline may be the earliest; let the sweeper recompute.
        self.shared.sweeper_wake.notify_one();
        Ok(lease)
    }

    /// Keeps a lease alive; see [`Registry::keep_alive`].
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<Duration, Status> {
        let mut state = self.shared.lock();
        let now = Instant::now();
        self.shared.expire_due(&mut state, now);
        let entry = state
            .leases
            .get_mut(&lease)
            .ok_or_else(|| lease_not_found(lease))?;
        let old_deadline = entry.deadline;
        entry.deadline = now + entry.ttl;
        let (ttl, deadline) = (entry.ttl, entry.deadline);
        let (service, addr) = (entry.service.clone(), entry.addr.clone());
        state.deadlines.remove(&(old_deadline, lease));
        state.deadlines.insert((deadline, lease));
        self.shared.emit(&RegistryEvent::Renewed {
            service,
            addr,
            lease,
        });
        Ok(ttl)
    }

    /// Revokes a lease; see [`Registry::deregister`].
    pub async fn deregister(&self, lease: LeaseId) -> Result<(), Status> {
        let mut state = self.shared.lock();
        self.shared.expire_due(&mut state, Instant::now());
        let (service, addr, revision) = self
            .shared
            .remove_lease(&mut state, lease)
            .ok_or_else(|| lease_not_found(lease))?;
        self.shared.emit(&RegistryEvent::Deregistered {
            service,
            addr,
            lease,
            revision,
        });
        self.shared.publish(&state);
        Ok(())
    }

    /// The current snapshot; see [`Registry::discover`].
    pub async fn discover(&self, service: &str) -> Result<Snapshot, Status> {
        let mut state = self.shared.lock();
        self.shared.expire_due(&mut state, Instant::now());
        Ok(state.snapshot(service))
    }

    /// Long-polls for a change; see [`Registry::watch`].
    pub async fn watch(&self, service: &str, after_revision: u64) -> Result<Snapshot, Status> {
        let _watcher = WatcherSlot::take(&self.shared)?;
        // Subscribe before looking, so a change between the look and the wait
        // still wakes us.
        let mut changes = self.shared.changes.subscribe();
        loop {
            let next_deadline = {
                let mut state = self.shared.lock();
                self.shared.expire_due(&mut state, Instant::now());
                changes.borrow_and_update();
                let snapshot = state.snapshot(service);
                if snapshot.revision > after_revision || after_revision > state.revision {
                    return Ok(snapshot);
                }
                state.deadlines.first().map(|(deadline, _)| *deadline)
            };
            // Wake at the next expiry too, so a watch sees it on time even if the
            // sweeper's runtime is gone (its host crashed in the simulation).
            match next_deadline {
                Some(deadline) => {
                    tokio::select! {
                        biased;
                        _ = changes.changed() => {}
                        _ = sleep_until(deadline) => {}
                    }
                }
                None => {
                    // The sender lives in `shared`, which we hold: never closed.
                    let _ = changes.changed().await;
                }
            }
        }
    }

    /// Starts the sweeper if it is not running (first lease, or its runtime died).
    fn ensure_sweeper(&self, state: &mut State) {
        let running = state
            .sweeper
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if !running {
            let shared = Arc::downgrade(&self.shared);
            let wake = Arc::clone(&self.shared.sweeper_wake);
            state.sweeper = Some(tokio::spawn(sweep(shared, wake)));
        }
    }
}

impl Registry for MemoryRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, Status>> {
        Box::pin(MemoryRegistry::register(self, instance, ttl))
    }

    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, Status>> {
        Box::pin(MemoryRegistry::keep_alive(self, lease))
    }

    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(MemoryRegistry::deregister(self, lease))
    }

    fn discover<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Snapshot, Status>> {
        Box::pin(MemoryRegistry::discover(self, service))
    }

    fn watch<'a>(
        &'a self,
        service: &'a str,
        after_revision: u64,
    ) -> BoxFuture<'a, Result<Snapshot, Status>> {
        Box::pin(MemoryRegistry::watch(self, service, after_revision))
    }
}

/// The sweeper: removes leases as they expire, so watchers and the observer
/// hear of an expiry at its instant even when nobody calls. Holds the registry
/// weakly; ends when it is gone (and is aborted by [`Shared`]'s drop).
async fn sweep(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next_deadline = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut state = shared.lock();
            shared.expire_due(&mut state, Instant::now());
            state.deadlines.first().map(|(deadline, _)| *deadline)
        };
        match next_deadline {
            Some(deadline) => {
                tokio::select! {
                    biased;
                    _ = wake.notified() => {}
                    _ = sleep_until(deadline) => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// The registry proper, shared by clones.
struct Shared {
    /// Services, leases and revisions; never held across an await.
    state: Mutex<State>,
    /// Bounds on what the registry stores.
    limits: RegistryLimits,
    /// Hears every change, for tracing.
    observer: Option<RegistryObserver>,
    /// Carries the registry-wide revision; every change wakes all watchers,
    /// which then compare their own service's revision.
    changes: watch::Sender<u64>,
    /// Tells the sweeper that the earliest deadline may have moved.
    sweeper_wake: Arc<Notify>,
    /// Watch calls in progress, bounded by `limits.watchers_max`.
    watchers: AtomicUsize,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(sweeper) = state.sweeper.take() {
            sweeper.abort();
        }
    }
}

/// What the mutex guards.
struct State {
    /// The last revision issued, registry-wide.
    revision: u64,
    /// The revision at which a service last became empty (and was dropped): the
    /// revision reported for every absent service, so a service's revision never
    /// goes backwards when it empties and is forgotten.
    removed_revision: u64,
    /// Services with at least one live instance.
    services: BTreeMap<String, ServiceEntry>,
    /// Live leases; each keeps exactly one instance alive.
    leases: BTreeMap<LeaseId, Lease>,
    /// Leases ordered by deadline: the expiry queue.
    deadlines: BTreeSet<(Instant, LeaseId)>,
    /// Where the next lease id comes from: random, so that one holder cannot
    /// guess another's id (ids are the proof of ownership).
    lease_ids: Box<Rng>,
    /// The sweeper task, once started.
    sweeper: Option<JoinHandle<()>>,
}

/// One service's live instances.
struct ServiceEntry {
    /// The revision of the service's last change.
    revision: u64,
    /// Instances by address, each with the lease that keeps it alive.
    instances: BTreeMap<String, (Instance, LeaseId)>,
}

/// One granted lease.
struct Lease {
    /// The service of the instance it keeps alive.
    service: String,
    /// The address of the instance it keeps alive.
    addr: String,
    /// Granted at registration; every keep-alive extends by this much.
    ttl: Duration,
    /// When it expires unless kept alive.
    deadline: Instant,
}

/// A lease-id generator keyed with 256 bits from the OS, for production.
///
/// Not `SeedSource::from_os().stream(..)`: that seeds ChaCha from one `u64`, and
/// an attacker holding a few of its own lease ids could search 2^64 seeds
/// offline and then predict everyone else's. Four draws from
/// [`SeedSource::from_os`] (each a SipHash of the process's 128-bit OS key with
/// a fresh counter) key the generator with the OS key's full entropy.
fn os_seeded_rng() -> Rng {
    use rand::SeedableRng;
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        chunk.copy_from_slice(&SeedSource::from_os().seed().to_le_bytes());
    }
    Rng::from_seed(key)
}

impl Shared {
    /// The state, surviving a poisoned lock (a panicking observer must not
    /// take the registry down with it).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the observer.
    fn emit(&self, event: &RegistryEvent) {
        if let Some(observer) = &self.observer {
            observer(event);
        }
    }

    /// Wakes watchers after a change.
    fn publish(&self, state: &State) {
        self.changes.send_replace(state.revision);
    }

    /// Refuses a TTL or an instance that this registry will never accept.
    fn validate(&self, instance: &Instance, ttl: Duration) -> Result<(), Status> {
        self.limits.check(instance, ttl)
    }

    /// Lists `instance` under a new lease, replacing a registration of the same
    /// address, within the capacity limits.
    fn insert(
        &self,
        state: &mut State,
        instance: Instance,
        ttl: Duration,
        now: Instant,
    ) -> Result<LeaseId, Status> {
        let replaced = match state.services.get(&instance.service) {
            None if state.services.len() >= self.limits.services_max => {
                return Err(Status::resource_exhausted(format!(
                    "registry: cannot add service {:?}: {} services are registered, the limit",
                    instance.service, self.limits.services_max
                )));
            }
            None => None,
            Some(entry) => match entry.instances.get(&instance.addr) {
                Some((_, old_lease)) => Some(*old_lease),
                None if entry.instances.len() >= self.limits.instances_per_service_max => {
                    return Err(Status::resource_exhausted(format!(
                        "registry: cannot add {} to service {:?}: it has {} instances, the limit",
                        instance.addr, instance.service, self.limits.instances_per_service_max
                    )));
                }
                None => None,
            },
        };
        if let Some(old_lease) = replaced {
            // The same address registered again: the newer registration wins and
            // the old lease is revoked, in the same revision.
            if let Some(old) = state.leases.remove(&old_lease) {
                state.deadlines.remove(&(old.deadline, old_lease));
            }
        }
        let lease = state.next_lease_id();
        let deadline = now + ttl;
        let (service, addr) = (instance.service.clone(), instance.addr.clone());
        state.revision += 1;
        let revision = state.revision;
        let entry = state
            .services
            .entry(service.clone())
            .or_insert_with(|| ServiceEntry {
                revision,
                instances: BTreeMap::new(),
            });
        entry.revision = revision;
        entry.instances.insert(addr.clone(), (instance, lease));
        state.leases.insert(
            lease,
            Lease {
                service: service.clone(),
                addr: addr.clone(),
                ttl,
                deadline,
            },
        );
        state.deadlines.insert((deadline, lease));
        self.emit(&RegistryEvent::Registered {
            service,
            addr,
            lease,
            revision,
        });
        self.publish(state);
        Ok(lease)
    }

    /// Removes `lease` and its instance; `(service, addr, revision)` if it existed.
    fn remove_lease(&self, state: &mut State, lease: LeaseId) -> Option<(String, String, u64)> {
        let removed = state.leases.remove(&lease)?;
        state.deadlines.remove(&(removed.deadline, lease));
        state.revision += 1;
        let revision = state.revision;
        let now_empty = match state.services.get_mut(&removed.service) {
            Some(entry) => {
                let owned = entry
                    .instances
                    .get(&removed.addr)
                    .is_some_and(|(_, owner)| *owner == lease);
                assert!(
                    owned,
                    "registry: {lease} is live but does not own {}",
                    removed.addr
                );
                entry.instances.remove(&removed.addr);
                entry.revision = revision;
                entry.instances.is_empty()
            }
            None => panic!(
                "registry: {lease} is live but service {:?} is not",
                removed.service
            ),
        };
        if now_empty {
            state.services.remove(&removed.service);
            state.removed_revision = revision;
        }
        Some((removed.service, removed.addr, revision))
    }

    /// Removes every lease whose deadline is at or before `now`.
    fn expire_due(&self, state: &mut State, now: Instant) {
        let mut expired_any = false;
        while let Some(&(deadline, lease)) = state.deadlines.first() {
            if deadline > now {
                break;
            }
            let removed = self.remove_lease(state, lease);
            let (service, addr, revision) = removed
                .unwrap_or_else(|| panic!("registry: {lease} queued for expiry but not live"));
            self.emit(&RegistryEvent::Expired {
                service,
                addr,
                lease,
                revision,
            });
            expired_any = true;
        }
        if expired_any {
            self.publish(state);
        }
    }
}

impl State {
    /// The snapshot of `service` (empty, at `removed_revision`, if absent).
    fn snapshot(&self, service: &str) -> Snapshot {
        match self.services.get(service) {
            Some(entry) => Snapshot {
                revision: entry.revision,
                // BTreeMap order: sorted by address, as `Snapshot` promises.
                instances: entry
                    .instances
                    .values()
                    .map(|(instance, _)| instance.clone())
                    .collect(),
            },
            None => Snapshot {
                revision: self.removed_revision,
                instances: Vec::new(),
            },
        }
    }

    /// A lease id not in use.
    fn next_lease_id(&mut self) -> LeaseId {
        // 64 random bits against at most a million live leases: a second draw
        // is already unlikely, sixteen is impossible short of a bug.
        for _ in 0..16 {
            let id = LeaseId(self.lease_ids.next_u64());
            if id.0 != 0 && !self.leases.contains_key(&id) {
                return id;
            }
        }
        panic!("registry: sixteen colliding lease ids in a row; the id stream is broken");
    }
}

/// One of the `watchers_max` watch slots, released on drop (also when the
/// caller's timeout drops the watch).
struct WatcherSlot<'a> {
    /// Whose counter to give the slot back to.
    shared: &'a Shared,
}

impl<'a> WatcherSlot<'a> {
    /// Takes a slot, or refuses when all are taken.
    fn take(shared: &'a Shared) -> Result<WatcherSlot<'a>, Status> {
        let max = shared.limits.watchers_max;
        shared
            .watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < max).then_some(count + 1)
            })
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "registry: {max} watches are already in progress, the limit; retry later"
                ))
            })?;
        Ok(WatcherSlot { shared })
    }
}

impl Drop for WatcherSlot<'_> {
    fn drop(&mut self) {
        self.shared.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `NotFound` for a lease, telling the holder what to do.
fn lease_not_found(lease: LeaseId) -> Status {
    Status::not_found(format!(
        "registry: {lease} is unknown or expired; register again"
    ))
}

/// Refuses an empty or oversized name.
fn check_name(what: &str, value: &str, len_max: usize) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "registry: {what} is empty"
        )));
    }
    if value.len() > len_max {
        return Err(Status::invalid_argument(format!(
            "registry: {what} is {} bytes; the limit is {len_max}",
            value.len()
        )));
    }
    Ok(())
}
