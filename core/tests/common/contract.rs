//! The `Registry` contract: one suite of behaviours every implementation must
//! show, run against each of them (`registry_contract!(factory)` in
//! `tests/registry.rs` for the memory registry and the registry service, in
//! `tests/etcd.rs` for etcd).
//!
//! It runs on real time (etcd leases expire on etcd's clock, not tokio's), so
//! it asserts orders and outcomes, never durations: "eventually" is bounded by
//! the subject's generous `patience`, and only ever in the direction where a
//! slow machine makes the test wait longer, not fail.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use squall::registry::{RegistrarConfig, ResolverConfig};
use squall::{Code, Instance, LeaseId, Registrar, Registry, Resolver, Snapshot};
use tokio::time::timeout;

/// A registry under test, fresh for each test.
pub struct Subject {
    /// The implementation.
    pub registry: Arc<dyn Registry>,
    /// A lease short enough to watch expire, long enough that it does not
    /// expire during the few calls that follow a registration.
    pub ttl_short: Duration,
    /// The bound on anything that must happen eventually (an expiry included).
    pub patience: Duration,
    /// Keeps whatever serves the registry alive for the test.
    pub _guard: Box<dyn Any + Send>,
}

/// Generates one `#[tokio::test]` per contract behaviour, each calling
/// `$factory` (an `async fn() -> Option<Subject>`; `None` skips the test, for
/// an implementation whose server is not configured).
macro_rules! registry_contract {
    ($factory:path) => {
        registry_contract!(@each $factory;
            discover_lists_registered_instances_sorted_and_an_unknown_service_is_empty,
            keep_alive_renews_a_live_lease_and_an_unknown_lease_is_not_found,
            deregister_removes_at_once_and_a_second_deregister_is_not_found,
            re_registering_an_address_replaces_it_and_revokes_the_old_lease,
            watch_from_a_revision_delivers_a_join_and_a_leave_with_rising_revisions,
            watch_ignores_changes_to_other_services,
            lease_expires_without_keep_alive_and_a_watch_sees_the_leave,
            revision_never_goes_backwards_as_a_service_empties_and_returns,
            watch_answers_at_once_for_a_revision_the_registry_never_issued,
            out_of_range_ttl_is_refused_as_invalid_argument,
            registrar_and_resolver_follow_a_server_from_start_to_stop,
            registrar_re_registers_when_its_lease_is_lost
        );
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(subject) = $factory().await else {
                    return;
                };
                common::contract::$name(&subject).await;
            }
        )*
    };
}
pub(crate) use registry_contract;

const SERVICE: &str = "contract";

fn instance(addr: &str) -> Instance {
    Instance::new(SERVICE, addr)
}

/// A lease id no registry in these tests issues (and a valid etcd `int64`).
const UNKNOWN_LEASE: LeaseId = LeaseId(0x1234_5678_9abc_def1);

async fn register(subject: &Subject, instance: Instance) -> LeaseId {
    subject
        .registry
        .register(instance, subject.ttl_short * 4)
        .await
        .expect("register")
}

async fn discover(subject: &Subject, service: &str) -> Snapshot {
    subject.registry.discover(service).await.expect("discover")
}

/// Watches `service` after `revision`, within the subject's patience.
async fn watch(subject: &Subject, service: &str, revision: u64) -> Snapshot {
    timeout(subject.patience, subject.registry.watch(service, revision))
        .await
        .expect("the watch answers within the subject's patience")
        .expect("watch")
}

pub async fn discover_lists_registered_instances_sorted_and_an_unknown_service_is_empty(
    subject: &Subject,
) {
    // Proves discovery returns every live instance, sorted by address whatever
    // the registration order, and that "nobody serves this" is an empty list.
    register(subject, instance("10.0.0.2:7000").with_weight(3)).await;
    register(subject, instance("10.0.0.1:7000")).await;
    let snapshot = discover(subject, SERVICE).await;
    assert_eq!(snapshot.addrs(), ["10.0.0.1:7000", "10.0.0.2:7000"]);
    assert_eq!(
        snapshot.instances[1].weight, 3,
        "the instance is stored whole"
    );
    assert!(discover(subject, "nobody-serves-this").await.is_empty());
}

pub async fn keep_alive_renews_a_live_lease_and_an_unknown_lease_is_not_found(subject: &Subject) {
    // Proves keep-alive answers with (at least) the TTL asked for, and that an
    // unknown lease is NotFound, the registrar's signal to register again.
    let ttl = subject.ttl_short * 4;
    let lease = subject
        .registry
        .register(instance("10.0.0.1:7000"), ttl)
        .await
        .unwrap();
    let granted = subject.registry.keep_alive(lease).await.unwrap();
    assert!(granted >= ttl, "granted {granted:?}, asked for {ttl:?}");
    let status = subject
        .registry
        .keep_alive(UNKNOWN_LEASE)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status}");
}

pub async fn deregister_removes_at_once_and_a_second_deregister_is_not_found(subject: &Subject) {
    // Proves graceful leave: the instance is gone from the next discover, and
    // the revoked lease can neither be revoked again nor renewed.
    let lease = register(subject, instance("10.0.0.1:7000")).await;
    register(subject, instance("10.0.0.2:7000")).await;
    subject.registry.deregister(lease).await.unwrap();
    assert_eq!(discover(subject, SERVICE).await.addrs(), ["10.0.0.2:7000"]);
    let again = subject.registry.deregister(lease).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again}");
    let renew = subject.registry.keep_alive(lease).await.unwrap_err();
    assert_eq!(renew.code(), Code::NotFound, "{renew}");
}

pub async fn re_registering_an_address_replaces_it_and_revokes_the_old_lease(subject: &Subject) {
    // Proves a restarted server wins over its previous incarnation: one listing
    // for the address, with the new registration's fields, and the old lease is
    // dead (its stale keep-alives cannot resurrect anything).
    let old = register(subject, instance("10.0.0.1:7000")).await;
    let new = register(subject, instance("10.0.0.1:7000").with_weight(5)).await;
    assert_ne!(old, new);
    let snapshot = discover(subject, SERVICE).await;
    assert_eq!(snapshot.addrs(), ["10.0.0.1:7000"]);
    assert_eq!(snapshot.instances[0].weight, 5);
    let stale = subject.registry.keep_alive(old).await.unwrap_err();
    assert_eq!(stale.code(), Code::NotFound, "{stale}");
    subject.registry.keep_alive(new).await.unwrap();
}

pub async fn watch_from_a_revision_delivers_a_join_and_a_leave_with_rising_revisions(
    subject: &Subject,
) {
    // Proves watch resumes from a revision: a join made *before* the watch
    // call is still delivered (nothing between snapshot and watch is lost),
    // and a leave made while the watch waits wakes it.
    let empty = discover(subject, SERVICE).await;
    let lease = register(subject, instance("10.0.0.1:7000")).await;
    let joined = watch(subject, SERVICE, empty.revision).await;
    assert_eq!(joined.addrs(), ["10.0.0.1:7000"]);
    assert!(joined.revision > empty.revision);

    let registry = Arc::clone(&subject.registry);
    let waiting = tokio::spawn(async move { registry.watch(SERVICE, joined.revision).await });
    tokio::task::yield_now().await;
    subject.registry.deregister(lease).await.unwrap();
    let left = timeout(subject.patience, waiting)
        .await
        .expect("the leave wakes the watch")
        .unwrap()
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(left.revision > joined.revision);
}

pub async fn watch_ignores_changes_to_other_services(subject: &Subject) {
    // Proves a watch wakes for its own service only: a registration elsewhere
    // during the wait leaves it waiting; one in its own service wakes it.
    register(subject, instance("10.0.0.1:7000")).await;
    let known = discover(subject, SERVICE).await;
    let registry = Arc::clone(&subject.registry);
    let waiting = tokio::spawn(async move { registry.watch(SERVICE, known.revision).await });
    register(subject, Instance::new("other-service", "10.0.0.9:7000")).await;
    tokio::time::sleep(subject.ttl_short).await;
    assert!(
        !waiting.is_finished(),
        "a change to another service woke the watch"
    );
    register(subject, instance("10.0.0.2:7000")).await;
    let woken = timeout(subject.patience, waiting)
        .await
        .expect("its own service's change wakes the watch")
        .unwrap()
        .unwrap();
    assert_eq!(woken.addrs(), ["10.0.0.1:7000", "10.0.0.2:7000"]);
}

pub async fn lease_expires_without_keep_alive_and_a_watch_sees_the_leave(subject: &Subject) {
    // Proves the failure detector: an instance whose holder stops renewing is
    // listed, then removed by the registry itself, and a waiting watch hears of
    // it without anyone calling the registry.
    let ttl = subject.ttl_short;
    let lease = subject
        .registry
        .register(instance("10.0.0.1:7000"), ttl)
        .await
        .unwrap();
    let listed = discover(subject, SERVICE).await;
    assert_eq!(listed.addrs(), ["10.0.0.1:7000"]);
    let expired = watch(subject, SERVICE, listed.revision).await;
    assert!(expired.is_empty(), "{expired:?}");
    let status = subject.registry.keep_alive(lease).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status}");
}

pub async fn revision_never_goes_backwards_as_a_service_empties_and_returns(subject: &Subject) {
    // Proves revisions are monotonic per service, also across the service
    // becoming empty (and possibly forgotten) and coming back.
    let lease = register(subject, instance("10.0.0.1:7000")).await;
    let first = discover(subject, SERVICE).await.revision;
    subject.registry.deregister(lease).await.unwrap();
    let emptied = discover(subject, SERVICE).await.revision;
    register(subject, instance("10.0.0.1:7000")).await;
    let back = discover(subject, SERVICE).await.revision;
    assert!(
        first < emptied && emptied < back,
        "{first} {emptied} {back}"
    );
}

pub async fn watch_answers_at_once_for_a_revision_the_registry_never_issued(subject: &Subject) {
    // Proves a watcher that knew a registry before it lost its history (a
    // restarted registry service, a wiped etcd) is answered at once with the
    // current, lower, revision instead of waiting for ever.
    register(subject, instance("10.0.0.1:7000")).await;
    let current = discover(subject, SERVICE).await;
    let answer = watch(subject, SERVICE, current.revision + 1_000_000).await;
    assert_eq!(answer.addrs(), ["10.0.0.1:7000"]);
    assert!(answer.revision <= current.revision + 1_000_000);
}

pub async fn out_of_range_ttl_is_refused_as_invalid_argument(subject: &Subject) {
    // Proves the registries share one validation: a zero or multi-hour TTL is
    // a request no registry will ever accept.
    for ttl in [Duration::ZERO, Duration::from_secs(7200)] {
        let status = subject
            .registry
            .register(instance("10.0.0.1:7000"), ttl)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{ttl:?}: {status}");
    }
    assert!(discover(subject, SERVICE).await.is_empty());
}

fn registrar_config(subject: &Subject) -> RegistrarConfig {
    RegistrarConfig {
        ttl: subject.ttl_short,
        ..RegistrarConfig::default()
    }
}

pub async fn registrar_and_resolver_follow_a_server_from_start_to_stop(subject: &Subject) {
    // Proves the unchanged helpers work on this registry: a registrar keeps its
    // server listed for several TTLs, a resolver sees it join and, after
    // `stop()`, leave.
    let resolver = Resolver::spawn(
        Arc::clone(&subject.registry),
        SERVICE,
        ResolverConfig::default(),
    );
    let registrar = Registrar::spawn(
        Arc::clone(&subject.registry),
        instance("10.0.0.1:7000"),
        registrar_config(subject),
    );
    let mut snapshots = resolver.subscribe();
    timeout(
        subject.patience,
        snapshots.wait_for(|snapshot| snapshot.addrs() == ["10.0.0.1:7000"]),
    )
    .await
    .expect("the resolver sees the server join")
    .unwrap();
    // Three TTLs: only keep-alives can keep it listed this long.
    tokio::time::sleep(subject.ttl_short * 3).await;
    assert_eq!(discover(subject, SERVICE).await.addrs(), ["10.0.0.1:7000"]);
    registrar.stop().await.unwrap();
    timeout(subject.patience, snapshots.wait_for(Snapshot::is_empty))
        .await
        .expect("the resolver sees the server leave")
        .unwrap();
}

pub async fn registrar_re_registers_when_its_lease_is_lost(subject: &Subject) {
    // Proves lease loss → re-register: when the registry drops the lease (as
    // after an expiry during a partition), the registrar's next keep-alive is
    // refused and it registers again under a new lease.
    let registrar = Registrar::spawn(
        Arc::clone(&subject.registry),
        instance("10.0.0.1:7000"),
        registrar_config(subject),
    );
    let mut leases = registrar.lease_changes();
    let first = timeout(subject.patience, leases.wait_for(Option::is_some))
        .await
        .expect("the registrar registers")
        .unwrap()
        .expect("a lease");
    subject.registry.deregister(first).await.unwrap();
    let second = timeout(
        subject.patience,
        leases.wait_for(|lease| lease.is_some_and(|lease| lease != first)),
    )
    .await
    .expect("the registrar registers again")
    .unwrap()
    .expect("a lease");
    assert_ne!(second, first);
    assert_eq!(discover(subject, SERVICE).await.addrs(), ["10.0.0.1:7000"]);
    registrar.stop().await.unwrap();
}
