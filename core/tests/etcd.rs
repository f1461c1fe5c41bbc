//! The etcd registry against a real etcd (feature `etcd`): the shared registry
//! contract, a lease outliving a `kill -9`ed holder until its TTL, and
//! registrations and watches across an etcd restart.
//!
//! Needs `SQUALL_ETCD_ENDPOINTS` (comma-separated client URLs);
//! `tests/etcd/run.sh` installs etcd, starts one on free loopback ports and sets
//! it. Without it the tests skip with a message, unless
//! `SQUALL_ETCD_REQUIRED=1` (CI), where a missing or unreachable etcd fails
//! them. The restart test runs its own etcd (`SQUALL_ETCD_BIN`, default
//! `etcd` on `PATH`), since it must stop and start it.
#![cfg(feature = "etcd")]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::contract::{registry_contract, Subject};
use squall::registry::{
    EtcdConfig, EtcdRegistry, RegistrarConfig, RegistrarEvent, ResolverConfig, ResolverState,
};
use squall::{Instance, Registrar, Registry, Resolver, SeedSource, Snapshot};
use tokio::time::timeout;

/// How long anything that must happen eventually may take: an etcd lease of
/// `TTL` plus etcd's expiry check plus a slow machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// etcd's leases are whole seconds with a minimum of about 1.5 s; 3 s leaves
/// a registrar (renewing every second) two seconds of slack on a loaded machine.
const TTL: Duration = Duration::from_secs(3);

/// The configured endpoints, or `None` (skip) when no etcd is configured and
/// none is required.
fn endpoints() -> Option<Vec<String>> {
    let required = std::env::var("SQUALL_ETCD_REQUIRED").is_ok_and(|value| value == "1");
    match std::env::var("SQUALL_ETCD_ENDPOINTS") {
        Ok(list) if !list.trim().is_empty() => {
            Some(list.split(',').map(|e| e.trim().to_owned()).collect())
        }
        _ if required => panic!(
            "SQUALL_ETCD_REQUIRED=1 but SQUALL_ETCD_ENDPOINTS is unset: run tests/etcd/run.sh"
        ),
        _ => {
            eprintln!("skipped: no etcd (set SQUALL_ETCD_ENDPOINTS, or run tests/etcd/run.sh)");
            None
        }
    }
}

/// A key prefix no other test (or earlier run on the same etcd) uses.
fn unique_prefix() -> String {
    format!("/squall-test/{:016x}", SeedSource::from_os().seed())
}

/// A registry on `endpoints` under `prefix`, checked to be reachable: an etcd
/// that was promised but does not answer fails the test.
async fn connect(endpoints: Vec<String>, prefix: String) -> EtcdRegistry {
    let config = EtcdConfig::new(endpoints).with_prefix(prefix);
    let registry = EtcdRegistry::connect(config.clone())
        .await
        .unwrap_or_else(|status| panic!("etcd at {:?}: {status}", config.endpoints));
    registry
        .discover("probe")
        .await
        .unwrap_or_else(|status| panic!("etcd at {:?} unreachable: {status}", config.endpoints));
    registry
}

async fn etcd() -> Option<Subject> {
    let endpoints = endpoints()?;
    let registry = connect(endpoints, unique_prefix()).await;
    Some(Subject {
        registry: Arc::new(registry),
        ttl_short: TTL,
        patience: PATIENCE,
        _guard: Box::new(()),
    })
}

mod contract {
    use super::*;
    registry_contract!(etcd);
}

/// Env var naming the prefix the child process registers under.
const CHILD_PREFIX: &str = "SQUALL_ETCD_CHILD_PREFIX";
const CRASHY: &str = "crashy";

#[tokio::test]
#[ignore = "helper: the child process of a_killed_holders_instance_leaves_when_its_lease_expires"]
async fn child_registers_and_waits_to_be_killed() {
    let (Ok(prefix), Some(endpoints)) = (std::env::var(CHILD_PREFIX), endpoints()) else {
        return;
    };
    let registry: Arc<dyn Registry> = Arc::new(connect(endpoints, prefix).await);
    let config = RegistrarConfig {
        ttl: TTL,
        ..RegistrarConfig::default()
    };
    let _registrar = Registrar::spawn(registry, Instance::new(CRASHY, "127.0.0.1:1"), config);
    // Keep renewing until killed.
    std::future::pending::<()>().await;
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_killed_holders_instance_leaves_when_its_lease_expires() {
    // Proves crash detection end to end: a separate process registers and
    // renews; `kill -9` gives it no chance to deregister, so its instance is
    // still listed right after the kill, and a watch then sees it leave when
    // etcd expires the lease.
    let Some(endpoints) = endpoints() else {
        return;
    };
    let prefix = unique_prefix();
    let registry = connect(endpoints.clone(), prefix.clone()).await;
    let child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "child_registers_and_waits_to_be_killed",
            "--ignored",
        ])
        .env(CHILD_PREFIX, &prefix)
        .env("SQUALL_ETCD_ENDPOINTS", endpoints.join(","))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the child test process");
    let mut child = KillOnDrop(child);

    let listed = timeout(PATIENCE, async {
        loop {
            let snapshot = registry.discover(CRASHY).await.unwrap();
            if !snapshot.is_empty() {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the child registers");
    // Renewals have kept it listed beyond one TTL.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(
        registry.discover(CRASHY).await.unwrap().addrs(),
        ["127.0.0.1:1"]
    );

    child.0.kill().expect("kill -9 the child");
    child.0.wait().expect("reap the child");
    let after_kill = registry.discover(CRASHY).await.unwrap();
    assert_eq!(
        after_kill.addrs(),
        ["127.0.0.1:1"],
        "a killed process cannot deregister: only its lease can remove it"
    );
    let left = timeout(PATIENCE, registry.watch(CRASHY, after_kill.revision))
        .await
        .expect("etcd expires the lease and the watch hears it")
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(left.revision > listed.revision);
}

/// An etcd of our own on free loopback ports, restartable on its data dir.
struct OwnEtcd {
    binary: String,
    data_dir: PathBuf,
    client_url: String,
    peer_url: String,
    process: Option<Child>,
}

impl OwnEtcd {
    fn new() -> OwnEtcd {
        let free_port = || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free loopback port")
                .port()
        };
        let data_dir = std::env::temp_dir().join(format!(
            "squall-etcd-restart-{:016x}",
            SeedSource::from_os().seed()
        ));
        OwnEtcd {
            binary: std::env::var("SQUALL_ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned()),
            data_dir,
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            process: None,
        }
    }

    fn start(&mut self) {
        assert!(self.process.is_none(), "etcd is already running");
        let log = std::fs::File::create(self.data_dir.with_extension("log"))
            .expect("create the etcd log");
        let process = Command::new(&self.binary)
            .arg("--name=restart-test")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.client_url))
            .arg(format!("--advertise-client-urls={}", self.client_url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster=restart-test={}", self.peer_url))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("start {} (set SQUALL_ETCD_BIN): {error}", self.binary));
        self.process = Some(process);
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for OwnEtcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.data_dir.with_extension("log"));
    }
}

/// Waits until the resolver's state satisfies `condition`.
async fn wait_state(resolver: &Resolver, what: &str, condition: impl Fn(&ResolverState) -> bool) {
    let mut states = resolver.subscribe_state();
    timeout(PATIENCE, states.wait_for(|state| condition(state)))
        .await
        .unwrap_or_else(|_| panic!("the resolver did not become {what}"))
        .unwrap();
}

#[tokio::test]
async fn registrations_and_watches_survive_an_etcd_restart() {
    // Proves reconnection: with etcd killed, the resolver goes stale (keeping
    // the last list) and keep-alives fail; after etcd restarts on the same data
    // dir the same client reconnects by itself, the registrar renews again, the
    // resolver is fresh again and sees a join made after the restart.
    if endpoints().is_none() {
        return;
    }
    let mut etcd = OwnEtcd::new();
    etcd.start();
    let registry: Arc<dyn Registry> =
        Arc::new(connect_when_up(vec![etcd.client_url.clone()]).await);

    let events: Arc<Mutex<Vec<RegistrarEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let config = RegistrarConfig {
        ttl: TTL,
        observer: Some(Arc::new(move |event: &RegistrarEvent| {
            sink.lock().unwrap().push(event.clone());
        })),
        ..RegistrarConfig::default()
    };
    let registrar = Registrar::spawn(
        Arc::clone(&registry),
        Instance::new("survivor", "127.0.0.1:1"),
        config,
    );
    let resolver_config = ResolverConfig {
        watch_timeout: Duration::from_secs(2),
        ..ResolverConfig::default()
    };
    let resolver = Resolver::spawn(Arc::clone(&registry), "survivor", resolver_config);
    let mut snapshots = resolver.subscribe();
    timeout(
        PATIENCE,
        snapshots.wait_for(|s| s.addrs() == ["127.0.0.1:1"]),
    )
    .await
    .expect("the resolver sees the registration")
    .unwrap();

    etcd.kill();
    wait_state(&resolver, "stale", |state| {
        matches!(state, ResolverState::Stale { .. })
    })
    .await;
    assert_eq!(
        resolver.snapshot().addrs(),
        ["127.0.0.1:1"],
        "the last known list is kept"
    );
    let renewals_before_restart = renewals(&events);

    etcd.start();
    wait_state(&resolver, "fresh", |state| *state == ResolverState::Fresh).await;
    timeout(PATIENCE, async {
        while renewals(&events) <= renewals_before_restart {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the registrar renews (or re-registers) after the restart");
    registry
        .register(Instance::new("survivor", "127.0.0.2:1"), TTL * 5)
        .await
        .expect("register after the restart");
    timeout(
        PATIENCE,
        snapshots.wait_for(|s: &Snapshot| s.addrs() == ["127.0.0.1:1", "127.0.0.2:1"]),
    )
    .await
    .expect("the resolver sees a join after the restart")
    .unwrap();
    registrar.stop().await.unwrap();
}

/// Successful keep-alives and re-registrations so far.
fn renewals(events: &Mutex<Vec<RegistrarEvent>>) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| {
            matches!(
                event,
                RegistrarEvent::Renewed { .. } | RegistrarEvent::ReRegistered { .. }
            )
        })
        .count()
}

/// Connects once etcd answers (it takes a moment to start).
async fn connect_when_up(endpoints: Vec<String>) -> EtcdRegistry {
    let config = EtcdConfig::new(endpoints).with_prefix(unique_prefix());
    let registry = EtcdRegistry::connect(config).await.expect("etcd config");
    timeout(PATIENCE, async {
        while registry.discover("probe").await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("our etcd starts");
    registry
}
