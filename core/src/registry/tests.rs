//! Behaviour tests for the registry, on paused tokio time: every sleep is
//! virtual, so minutes of leases run in milliseconds, and every instant checked
//! is exact.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::{sleep, timeout, Instant};

use super::proto::{self, DeregisterRequest, KeepAliveRequest, RegisterRequest, WatchRequest};
use super::*;
use crate::{Code, SeedSource, Status};

const SERVICE: &str = "arith";

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn instance(addr: &str) -> Instance {
    Instance::new(SERVICE, addr)
}

/// Events with the virtual time (since the test's start) at which they happened.
type Log<E> = Arc<Mutex<Vec<(Duration, E)>>>;

/// An observer of any of the registry's event types.
type Observer<E> = Arc<dyn Fn(&E) + Send + Sync>;

/// A log and an observer that appends to it.
fn recorder<E: Clone + Send + 'static>(start: Instant) -> (Log<E>, Observer<E>) {
    let log: Log<E> = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let observer = Arc::new(move |event: &E| {
        sink.lock().unwrap().push((start.elapsed(), event.clone()));
    });
    (log, observer)
}

fn events<E: Clone>(log: &Log<E>) -> Vec<(Duration, E)> {
    log.lock().unwrap().clone()
}

/// A registry that can "restart": the state is thrown away and a fresh
/// registry (with a new lease-id stream, as a real restart would have) serves.
struct RestartableRegistry {
    current: Mutex<MemoryRegistry>,
    incarnation: Mutex<u64>,
}

impl RestartableRegistry {
    fn new() -> Arc<RestartableRegistry> {
        Arc::new(RestartableRegistry {
            current: Mutex::new(Self::incarnation(0)),
            incarnation: Mutex::new(0),
        })
    }

    fn incarnation(number: u64) -> MemoryRegistry {
        let seed = SeedSource::new(42).child(&format!("registry/incarnation-{number}"));
        MemoryRegistry::builder().lease_ids_from(seed).build()
    }

    fn restart(&self) {
        let mut incarnation = self.incarnation.lock().unwrap();
        *incarnation += 1;
        *self.current.lock().unwrap() = Self::incarnation(*incarnation);
    }

    fn current(&self) -> MemoryRegistry {
        self.current.lock().unwrap().clone()
    }
}

impl Registry for RestartableRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, Status>> {
        let registry = self.current();
        Box::pin(async move { registry.register(instance, ttl).await })
    }
    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, Status>> {
        let registry = self.current();
        Box::pin(async move { registry.keep_alive(lease).await })
    }
    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), Status>> {
        let registry = self.current();
        Box::pin(async move { registry.deregister(lease).await })
    }
    fn discover<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Snapshot, Status>> {
        let registry = self.current();
        Box::pin(async move { registry.discover(service).await })
    }
    fn watch<'a>(
        &'a self,
        service: &'a str,
        after_revision: u64,
    ) -> BoxFuture<'a, Result<Snapshot, Status>> {
        let registry = self.current();
        Box::pin(async move { registry.watch(service, after_revision).await })
    }
}

/// A registry behind a link that can go down: while down, every call fails with
/// `Unavailable` and watches in progress fail too.
struct FlakyRegistry {
    inner: MemoryRegistry,
    down: tokio::sync::watch::Sender<bool>,
    calls_while_down: AtomicBool,
}

impl FlakyRegistry {
    fn new(inner: MemoryRegistry) -> Arc<FlakyRegistry> {
        let (down, _) = tokio::sync::watch::channel(false);
        Arc::new(FlakyRegistry {
            inner,
            down,
            calls_while_down: AtomicBool::new(false),
        })
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    fn check(&self) -> Result<(), Status> {
        if *self.down.borrow() {
            self.calls_while_down.store(true, Ordering::SeqCst);
            return Err(Status::unavailable("registry link is down").not_executed());
        }
        Ok(())
    }
}

impl Registry for FlakyRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, Status>> {
        Box::pin(async move {
            self.check()?;
            self.inner.register(instance, ttl).await
        })
    }
    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, Status>> {
        Box::pin(async move {
            self.check()?;
            self.inner.keep_alive(lease).await
        })
    }
    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(async move {
            self.check()?;
            self.inner.deregister(lease).await
        })
    }
    fn discover<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Snapshot, Status>> {
        Box::pin(async move {
            self.check()?;
            self.inner.discover(service).await
        })
    }
    fn watch<'a>(
        &'a self,
        service: &'a str,
        after_revision: u64,
    ) -> BoxFuture<'a, Result<Snapshot, Status>> {
        Box::pin(async move {
            self.check()?;
            let mut down = self.down.subscribe();
            tokio::select! {
                biased;
                _ = down.wait_for(|down| *down) => Err(Status::unavailable("registry link went down")),
                outcome = self.inner.watch(service, after_revision) => outcome,
            }
        })
    }
}

// ---------------------------------------------------------------- leases

#[tokio::test(start_paused = true)]
async fn lease_expires_after_ttl_without_heartbeat_and_not_before() {
    // Proves the failure detector's latency is exactly the TTL: listed 1 ms
    // before, gone at the instant, and the sweeper reports the expiry at that
    // instant even though nobody calls the registry.
    let start = Instant::now();
    let (log, observer) = recorder::<RegistryEvent>(start);
    let registry = MemoryRegistry::builder().observer(observer).build();
    let lease = registry.register(instance("a:1"), ms(1000)).await.unwrap();

    sleep(ms(999)).await;
    assert_eq!(registry.discover(SERVICE).await.unwrap().addrs(), ["a:1"]);

    sleep(ms(5000)).await;
    let expired: Vec<_> = events(&log)
        .into_iter()
        .filter(|(_, event)| matches!(event, RegistryEvent::Expired { .. }))
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].0, ms(1000), "expired at exactly the TTL");
    assert!(registry.discover(SERVICE).await.unwrap().is_empty());
    let status = registry.keep_alive(lease).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_extends_lease_to_a_full_ttl_from_now() {
    // Proves a keep-alive restarts the TTL from the moment it arrives.
    let registry = MemoryRegistry::new();
    let lease = registry.register(instance("a:1"), ms(1000)).await.unwrap();
    sleep(ms(800)).await;
    assert_eq!(registry.keep_alive(lease).await.unwrap(), ms(1000));

    sleep(ms(999)).await; // t = 1799: past the original TTL, inside the new one.
    assert_eq!(registry.discover(SERVICE).await.unwrap().addrs(), ["a:1"]);
    sleep(ms(1)).await; // t = 1800: the extended lease ends.
    assert!(registry.discover(SERVICE).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn deregister_removes_at_once_and_a_second_deregister_is_not_found() {
    // Proves graceful shutdown does not wait for the TTL, and a revoked lease is gone.
    let registry = MemoryRegistry::new();
    let lease = registry
        .register(instance("a:1"), ms(60_000))
        .await
        .unwrap();
    registry
        .register(instance("b:1"), ms(60_000))
        .await
        .unwrap();
    registry.deregister(lease).await.unwrap();
    assert_eq!(registry.discover(SERVICE).await.unwrap().addrs(), ["b:1"]);
    assert_eq!(
        registry.deregister(lease).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        registry.keep_alive(lease).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test(start_paused = true)]
async fn re_registering_an_address_replaces_it_and_revokes_the_old_lease() {
    // Proves a restarted server's new registration wins over its old lease, which
    // then can neither keep the instance alive nor remove it.
    let registry = MemoryRegistry::new();
    let old = registry
        .register(instance("a:1").with_weight(1), ms(1000))
        .await
        .unwrap();
    let new = registry
        .register(instance("a:1").with_weight(5), ms(1000))
        .await
        .unwrap();
    assert_ne!(old, new);
    let snapshot = registry.discover(SERVICE).await.unwrap();
    assert_eq!(snapshot.instances, vec![instance("a:1").with_weight(5)]);
    assert_eq!(
        registry.deregister(old).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(registry.discover(SERVICE).await.unwrap().addrs(), ["a:1"]);
}

#[tokio::test(start_paused = true)]
async fn snapshots_are_sorted_by_address() {
    // Proves instance order does not depend on registration order.
    let registry = MemoryRegistry::new();
    for addr in ["c:1", "a:1", "b:1"] {
        registry.register(instance(addr), ms(1000)).await.unwrap();
    }
    assert_eq!(
        registry.discover(SERVICE).await.unwrap().addrs(),
        ["a:1", "b:1", "c:1"]
    );
}

// ---------------------------------------------------------------- watch

#[tokio::test(start_paused = true)]
async fn watch_wakes_on_register_expire_and_deregister_with_increasing_revisions() {
    // Proves each kind of change wakes a watcher with a whole, newer snapshot,
    // and that an expiry wakes it at exactly the lease's deadline.
    let registry = MemoryRegistry::new();
    let start = Instant::now();
    let initial = registry.discover(SERVICE).await.unwrap();

    let watcher = tokio::spawn({
        let registry = registry.clone();
        async move { registry.watch(SERVICE, initial.revision).await }
    });
    tokio::task::yield_now().await;
    let lease_a = registry
        .register(instance("a:1"), ms(60_000))
        .await
        .unwrap();
    let registered = watcher.await.unwrap().unwrap();
    assert!(registered.revision > initial.revision);
    assert_eq!(registered.addrs(), ["a:1"]);

    registry.register(instance("b:1"), ms(500)).await.unwrap();
    let with_b = registry.discover(SERVICE).await.unwrap();
    let expired = registry.watch(SERVICE, with_b.revision).await.unwrap();
    assert_eq!(start.elapsed(), ms(500), "woken at the expiry instant");
    assert!(expired.revision > with_b.revision);
    assert_eq!(expired.addrs(), ["a:1"]);

    let watcher = tokio::spawn({
        let registry = registry.clone();
        async move { registry.watch(SERVICE, expired.revision).await }
    });
    tokio::task::yield_now().await;
    registry.deregister(lease_a).await.unwrap();
    let deregistered = watcher.await.unwrap().unwrap();
    assert!(deregistered.revision > expired.revision);
    assert!(deregistered.is_empty());
}

#[tokio::test(start_paused = true)]
async fn watch_waits_while_nothing_changes_for_its_service() {
    // Proves a watch is a real long-poll: renewals and other services' changes
    // do not resolve it with a revision it already has.
    let registry = MemoryRegistry::new();
    let lease = registry.register(instance("a:1"), ms(1000)).await.unwrap();
    let seen = registry.discover(SERVICE).await.unwrap();
    let watch = registry.watch(SERVICE, seen.revision);
    let noise = async {
        registry.keep_alive(lease).await.unwrap();
        registry
            .register(Instance::new("other", "x:1"), ms(1000))
            .await
            .unwrap();
        sleep(ms(500)).await;
    };
    let (outcome, ()) = tokio::join!(timeout(ms(600), watch), noise);
    assert!(
        outcome.is_err(),
        "watch resolved without a change: {outcome:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn revision_of_an_emptied_service_never_goes_backwards() {
    // Proves a service that empties (and is forgotten) still reports a revision at
    // least as high as its last one, so watchers never see time run backwards.
    let registry = MemoryRegistry::new();
    let lease = registry.register(instance("a:1"), ms(1000)).await.unwrap();
    let listed = registry.discover(SERVICE).await.unwrap();
    registry.deregister(lease).await.unwrap();
    let emptied = registry.discover(SERVICE).await.unwrap();
    assert!(emptied.is_empty());
    assert!(emptied.revision > listed.revision);
    registry.register(instance("b:1"), ms(1000)).await.unwrap();
    assert!(registry.discover(SERVICE).await.unwrap().revision > emptied.revision);
}

#[tokio::test(start_paused = true)]
async fn watch_answers_at_once_for_a_revision_this_registry_never_issued() {
    // Proves a client holding a revision from before a registry restart is not
    // left waiting for the new registry to catch up: it gets the current list.
    let registry = MemoryRegistry::new();
    registry.register(instance("a:1"), ms(1000)).await.unwrap();
    let snapshot = timeout(ms(1), registry.watch(SERVICE, 1_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.addrs(), ["a:1"]);
    assert!(snapshot.revision < 1_000);
}

#[tokio::test(start_paused = true)]
async fn sweeper_stops_when_the_registry_is_dropped() {
    // Proves the registry's one background task does not outlive it.
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let registry = MemoryRegistry::new();
    registry.register(instance("a:1"), ms(1000)).await.unwrap();
    registry.register(instance("b:1"), ms(1000)).await.unwrap();
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "one sweeper per registry"
    );
    // Let the sweeper park on its timer (1 s away) before the registry goes.
    sleep(ms(10)).await;
    drop(registry);
    sleep(ms(1)).await;
    assert_eq!(metrics.num_alive_tasks(), before);
}

// ---------------------------------------------------------------- limits

#[tokio::test(start_paused = true)]
async fn ttl_outside_bounds_is_refused_as_invalid_argument() {
    // Proves the TTL bounds (100 ms to 1 h by default) are enforced with an
    // error that names the bounds.
    let registry = MemoryRegistry::new();
    for ttl in [ms(99), Duration::from_secs(3601)] {
        let status = registry.register(instance("a:1"), ttl).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("outside [100ms, 3600s]"),
            "{status}"
        );
    }
    registry.register(instance("a:1"), ms(100)).await.unwrap();
    registry
        .register(instance("b:1"), Duration::from_secs(3600))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn oversized_or_empty_instances_are_refused_as_invalid_argument() {
    // Proves names and metadata are bounded, since the registry service takes
    // them from the network.
    let limits = RegistryLimits {
        name_len_max: 8,
        metadata_entries_max: 2,
        metadata_len_max: 10,
        ..Default::default()
    };
    let registry = MemoryRegistry::builder().limits(limits).build();
    let too_long = Instance::new(SERVICE, "a-very-long-address:1");
    let empty = Instance::new("", "a:1");
    let many = instance("a:1")
        .with_metadata("k1", "v")
        .with_metadata("k2", "v")
        .with_metadata("k3", "v");
    let heavy = instance("a:1").with_metadata("zone", "europe-west");
    for bad in [too_long, empty, many, heavy] {
        let status = registry.register(bad.clone(), ms(1000)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert!(
            status.message().contains("limit") || status.message().contains("empty"),
            "{status}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn capacity_limits_are_refused_as_resource_exhausted() {
    // Proves max instances per service and max services hold, that replacing an
    // existing address is not counted twice, and that capacity frees on expiry.
    let limits = RegistryLimits {
        services_max: 2,
        instances_per_service_max: 2,
        ..Default::default()
    };
    let registry = MemoryRegistry::builder().limits(limits).build();
    registry.register(instance("a:1"), ms(1000)).await.unwrap();
    registry.register(instance("b:1"), ms(1000)).await.unwrap();
    let status = registry
        .register(instance("c:1"), ms(1000))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("2 instances"), "{status}");
    registry.register(instance("b:1"), ms(1000)).await.unwrap();

    registry
        .register(Instance::new("second", "x:1"), ms(5000))
        .await
        .unwrap();
    let status = registry
        .register(Instance::new("third", "x:1"), ms(1000))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("2 services"), "{status}");

    sleep(ms(1000)).await; // "arith" expires and frees its service slot.
    registry
        .register(Instance::new("third", "x:1"), ms(1000))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn watches_beyond_the_limit_are_refused_and_slots_free_when_a_watch_is_dropped() {
    // Proves the watcher bound holds and a watch cut short by the caller's
    // timeout gives its slot back.
    let limits = RegistryLimits {
        watchers_max: 1,
        ..Default::default()
    };
    let registry = MemoryRegistry::builder().limits(limits).build();
    let first = tokio::spawn({
        let registry = registry.clone();
        async move { timeout(ms(100), registry.watch(SERVICE, 0)).await }
    });
    tokio::task::yield_now().await;
    let status = registry.watch(SERVICE, 0).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(first.await.unwrap().is_err(), "the first watch timed out");
    let second = timeout(ms(100), registry.watch(SERVICE, 0)).await;
    assert!(
        second.is_err(),
        "a slot was free again, so the watch waited"
    );
}

// ---------------------------------------------------------------- registrar

fn registrar_config(observer: RegistrarObserver) -> RegistrarConfig {
    RegistrarConfig {
        ttl: ms(900),
        observer: Some(observer),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn registrar_keeps_its_instance_listed_far_beyond_the_ttl() {
    // Proves keep-alives every ttl/3 keep one lease alive indefinitely.
    let start = Instant::now();
    let (log, observer) = recorder::<RegistrarEvent>(start);
    let registry = MemoryRegistry::new();
    let registrar = Registrar::spawn(
        Arc::new(registry.clone()),
        instance("a:1"),
        registrar_config(observer),
    );
    sleep(ms(10_000)).await;
    assert_eq!(registry.discover(SERVICE).await.unwrap().addrs(), ["a:1"]);
    let log = events(&log);
    assert_eq!(
        log[0],
        (
            ms(0),
            RegistrarEvent::Registered {
                lease: registrar.lease().unwrap()
            }
        )
    );
    let renewals: Vec<_> = log
        .iter()
        .filter(|(_, event)| matches!(event, RegistrarEvent::Renewed { .. }))
        .collect();
    assert_eq!(renewals.len(), 33, "one keep-alive every 300 ms for 10 s");
    assert_eq!(renewals[0].0, ms(300));
}

#[tokio::test(start_paused = true)]
async fn registrar_stop_deregisters_at_once() {
    // Proves graceful shutdown removes the instance without waiting for the TTL.
    let (log, observer) = recorder::<RegistrarEvent>(Instant::now());
    let registry = MemoryRegistry::new();
    let registrar = Registrar::spawn(
        Arc::new(registry.clone()),
        instance("a:1"),
        registrar_config(observer),
    );
    sleep(ms(1000)).await;
    let lease = registrar.lease().unwrap();
    registrar.stop().await.unwrap();
    assert!(registry.discover(SERVICE).await.unwrap().is_empty());
    assert_eq!(
        events(&log).last().unwrap().1,
        RegistrarEvent::Deregistered { lease }
    );
}

#[tokio::test(start_paused = true)]
async fn registrars_re_register_after_the_registry_restarts() {
    // Proves servers repopulate a restarted (emptied) registry by themselves,
    // within one keep-alive interval, each with its own new lease.
    let (log, observer) = recorder::<RegistrarEvent>(Instant::now());
    let registry = RestartableRegistry::new();
    let shared: Arc<dyn Registry> = registry.clone();
    let a = Registrar::spawn(
        Arc::clone(&shared),
        instance("a:1"),
        registrar_config(observer),
    );
    let b = Registrar::spawn(
        Arc::clone(&shared),
        instance("b:1"),
        RegistrarConfig {
            ttl: ms(900),
            ..Default::default()
        },
    );
    sleep(ms(1000)).await;
    let old_lease = a.lease().unwrap();

    registry.restart();
    assert!(registry.discover(SERVICE).await.unwrap().is_empty());
    sleep(ms(300)).await; // One keep-alive interval: each finds its lease unknown.
    assert_eq!(
        registry.discover(SERVICE).await.unwrap().addrs(),
        ["a:1", "b:1"]
    );
    let new_lease = a.lease().unwrap();
    assert_ne!(new_lease, old_lease);
    let kinds: Vec<_> = events(&log).into_iter().map(|(_, event)| event).collect();
    assert!(kinds.contains(&RegistrarEvent::LeaseLost { lease: old_lease }));
    assert!(kinds.contains(&RegistrarEvent::ReRegistered { lease: new_lease }));

    sleep(ms(5000)).await;
    assert_eq!(
        registry.discover(SERVICE).await.unwrap().addrs(),
        ["a:1", "b:1"]
    );
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn registrar_retries_with_bounded_backoff_while_the_registry_is_down() {
    // Proves failed registrations are retried at 100, 200, 400 ms ... capped at
    // the ceiling, and that the registrar registers once the registry is back.
    let (log, observer) = recorder::<RegistrarEvent>(Instant::now());
    let registry = FlakyRegistry::new(MemoryRegistry::new());
    registry.set_down(true);
    let config = RegistrarConfig {
        backoff: Backoff::new(ms(100), ms(400)),
        ..registrar_config(observer)
    };
    let _registrar = Registrar::spawn(registry.clone(), instance("a:1"), config);
    sleep(ms(1600)).await;
    let failures: Vec<Duration> = events(&log).iter().map(|(at, _)| *at).collect();
    assert_eq!(
        failures,
        [ms(0), ms(100), ms(300), ms(700), ms(1100), ms(1500)]
    );

    registry.set_down(false);
    sleep(ms(400)).await;
    assert!(
        matches!(events(&log).last().unwrap(), (at, RegistrarEvent::Registered { .. }) if *at == ms(1900))
    );
    assert_eq!(
        registry.inner.discover(SERVICE).await.unwrap().addrs(),
        ["a:1"]
    );
}

#[tokio::test(start_paused = true)]
async fn registrar_survives_a_short_outage_on_its_original_lease() {
    // Proves a failed keep-alive is retried before the lease runs out, so an
    // outage shorter than the TTL does not unlist the server.
    let registry = FlakyRegistry::new(MemoryRegistry::new());
    let registrar = Registrar::spawn(
        registry.clone(),
        instance("a:1"),
        RegistrarConfig {
            ttl: ms(900),
            ..Default::default()
        },
    );
    sleep(ms(100)).await;
    let lease = registrar.lease().unwrap();
    registry.set_down(true);
    sleep(ms(500)).await;
    registry.set_down(false);
    sleep(ms(2000)).await;
    assert_eq!(registrar.lease(), Some(lease));
    assert_eq!(
        registry.inner.discover(SERVICE).await.unwrap().addrs(),
        ["a:1"]
    );
}

// ---------------------------------------------------------------- resolver

fn resolver_config(observer: ResolverObserver) -> ResolverConfig {
    ResolverConfig {
        watch_timeout: ms(2000),
        call_timeout: ms(500),
        backoff: Backoff::new(ms(100), ms(1000)),
        observer: Some(observer),
    }
}

#[tokio::test(start_paused = true)]
async fn resolver_follows_registrations_and_expiries() {
    // Proves the client's view tracks the registry: a new server appears and an
    // expired one disappears at its expiry instant.
    let start = Instant::now();
    let (_log, observer) = recorder::<ResolverEvent>(start);
    let registry = MemoryRegistry::new();
    registry
        .register(instance("a:1"), ms(60_000))
        .await
        .unwrap();
    let resolver = Resolver::spawn(
        Arc::new(registry.clone()),
        SERVICE,
        resolver_config(observer),
    );
    assert_eq!(resolver.ready().await.addrs(), ["a:1"]);

    let mut updates = resolver.subscribe();
    updates.borrow_and_update();
    registry.register(instance("b:1"), ms(1000)).await.unwrap();
    updates.changed().await.unwrap();
    assert_eq!(resolver.snapshot().addrs(), ["a:1", "b:1"]);

    updates.changed().await.unwrap();
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(resolver.snapshot().addrs(), ["a:1"]);
    assert_eq!(resolver.state(), ResolverState::Fresh);
}

#[tokio::test(start_paused = true)]
async fn resolver_keeps_the_last_known_list_while_the_registry_is_unreachable_and_converges_after()
{
    // Proves a client never loses its instance list to a registry outage, says
    // it is stale while it lasts, and catches up with changes made meanwhile.
    let start = Instant::now();
    let (log, observer) = recorder::<ResolverEvent>(start);
    let registry = FlakyRegistry::new(MemoryRegistry::new());
    registry
        .inner
        .register(instance("a:1"), ms(60_000))
        .await
        .unwrap();
    let resolver = Resolver::spawn(registry.clone(), SERVICE, resolver_config(observer));
    resolver.ready().await;

    sleep(ms(1000)).await;
    registry.set_down(true);
    sleep(ms(10)).await;
    assert!(resolver.is_stale());
    assert_eq!(
        resolver.state(),
        ResolverState::Stale {
            since: start + ms(1000)
        }
    );
    registry
        .inner
        .register(instance("b:1"), ms(60_000))
        .await
        .unwrap();
    sleep(ms(5000)).await;
    assert_eq!(
        resolver.snapshot().addrs(),
        ["a:1"],
        "the last known list is kept"
    );
    assert!(resolver.is_stale());

    registry.set_down(false);
    sleep(ms(1000)).await; // At most one backoff ceiling.
    assert!(!resolver.is_stale());
    assert_eq!(resolver.snapshot().addrs(), ["a:1", "b:1"]);
    let log: Vec<_> = events(&log).into_iter().map(|(_, event)| event).collect();
    assert!(
        matches!(log.iter().find(|e| matches!(e, ResolverEvent::Stale { .. })), Some(ResolverEvent::Stale { since, .. }) if *since == start + ms(1000))
    );
    assert!(log
        .iter()
        .any(|e| matches!(e, ResolverEvent::Recovered { stale_for } if *stale_for >= ms(5000))));
}

#[tokio::test(start_paused = true)]
async fn resolver_adopts_a_restarted_registrys_lower_revisions() {
    // Proves a registry restart (revisions start over) does not freeze the
    // client's view: it converges on the new registry's list.
    let (_log, observer) = recorder::<ResolverEvent>(Instant::now());
    let registry = RestartableRegistry::new();
    for addr in ["a:1", "b:1", "c:1"] {
        registry.register(instance(addr), ms(60_000)).await.unwrap();
    }
    let resolver = Resolver::spawn(registry.clone(), SERVICE, resolver_config(observer));
    assert_eq!(resolver.ready().await.addrs(), ["a:1", "b:1", "c:1"]);

    registry.restart();
    registry
        .register(instance("d:1"), ms(60_000))
        .await
        .unwrap();
    sleep(ms(2100)).await; // The current watch times out; discover sees the new registry.
    assert_eq!(resolver.snapshot().addrs(), ["d:1"]);
    assert!(resolver.snapshot().revision < 3);
}

// ---------------------------------------------------------------- proto, backoff

#[test]
fn proto_types_round_trip_through_json_and_messagepack() {
    // Proves every request and reply survives both codecs unchanged.
    let request = RegisterRequest {
        instance: instance("a:1").with_metadata("zone", "z1").with_weight(3),
        ttl_ms: 900,
    };
    let json = serde_json::to_string(&request).unwrap();
    assert_eq!(
        serde_json::from_str::<RegisterRequest>(&json).unwrap(),
        request
    );
    let packed = rmp_serde::to_vec_named(&request).unwrap();
    assert_eq!(
        rmp_serde::from_slice::<RegisterRequest>(&packed).unwrap(),
        request
    );

    let watch = WatchRequest {
        service: SERVICE.into(),
        after_revision: 7,
        wait_ms: 5000,
    };
    let packed = rmp_serde::to_vec_named(&watch).unwrap();
    assert_eq!(
        rmp_serde::from_slice::<WatchRequest>(&packed).unwrap(),
        watch
    );
    let snapshot = Snapshot {
        revision: 9,
        instances: vec![instance("a:1")],
    };
    let json = serde_json::to_string(&snapshot).unwrap();
    assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snapshot);
    assert_eq!(
        serde_json::to_string(&LeaseId(5)).unwrap(),
        "5",
        "a lease id is a bare number"
    );
}

#[tokio::test(start_paused = true)]
async fn served_operations_map_onto_the_registry() {
    // Proves the server-side handlers: register/keep-alive/deregister through
    // the proto types, NotFound for a lost lease, and a watch that answers with
    // the unchanged snapshot once its wait has passed.
    let registry = MemoryRegistry::new();
    let reply = proto::serve_register(
        &registry,
        RegisterRequest {
            instance: instance("a:1"),
            ttl_ms: 900,
        },
    )
    .await
    .unwrap();
    let kept = proto::serve_keep_alive(
        &registry,
        KeepAliveRequest {
            lease_id: reply.lease_id,
        },
    )
    .await
    .unwrap();
    assert_eq!(kept.ttl_ms, 900);

    let start = Instant::now();
    let request = WatchRequest {
        service: SERVICE.into(),
        after_revision: 1,
        wait_ms: 250,
    };
    let unchanged = proto::serve_watch(&registry, request).await.unwrap();
    assert_eq!(start.elapsed(), ms(250));
    assert_eq!(unchanged.revision, 1);

    proto::serve_deregister(
        &registry,
        DeregisterRequest {
            lease_id: reply.lease_id,
        },
    )
    .await
    .unwrap();
    let status = proto::serve_keep_alive(
        &registry,
        KeepAliveRequest {
            lease_id: reply.lease_id,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[test]
fn backoff_doubles_up_to_its_ceiling_and_resets() {
    // Proves the retry delays are bounded and start over after a success.
    let mut backoff = Backoff::new(ms(100), ms(500));
    let delays: Vec<_> = (0..5).map(|_| backoff.next_delay()).collect();
    assert_eq!(delays, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
    backoff.reset();
    assert_eq!(backoff.next_delay(), ms(100));
}

#[test]
fn jittered_backoff_stays_within_half_to_full_delay_and_is_reproducible() {
    // Proves jitter spreads retries without breaking the bounds or determinism.
    let make = || Backoff::new(ms(100), ms(800)).with_jitter(SeedSource::new(1).stream("backoff"));
    let (mut first, mut second) = (make(), make());
    for expected in [100, 200, 400, 800, 800] {
        let delay = first.next_delay();
        assert!(
            delay >= ms(expected / 2) && delay <= ms(expected),
            "{delay:?} for {expected} ms"
        );
        assert_eq!(second.next_delay(), delay);
    }
}
