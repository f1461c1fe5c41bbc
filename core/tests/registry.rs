//! The registry contract run against the in-memory registry and the registry
//! service over loopback TCP, and the registry service's security: what an
//! unauthenticated or merely authenticated peer cannot do to another instance.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::contract::{registry_contract, Subject};
use squall::registry::service::{
    authenticated_router, router, router_with_credentials, RegistryCredentials,
};
use squall::{
    ChannelConfig, Code, Instance, LeaseId, MemoryRegistry, Pool, Registry, RemoteRegistry, Server,
    Tcp,
};
use tokio::sync::oneshot;

const TOKEN: &str = "contract-token";

/// A one-second lease: the registrar renews every 333 ms, so a loaded machine
/// has two thirds of a second of slack before a lease would lapse.
async fn memory() -> Option<Subject> {
    Some(Subject {
        registry: Arc::new(MemoryRegistry::new()),
        ttl_short: Duration::from_secs(1),
        patience: Duration::from_secs(10),
        _guard: Box::new(()),
    })
}

/// Serves `router` on a free loopback port until the returned sender drops.
async fn serve(router: squall::Router) -> (String, oneshot::Sender<()>) {
    let listener = Tcp.bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr").to_string();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(Server::new(router).serve(listener, async {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx)
}

fn client(addr: &str) -> RemoteRegistry<Pool<Tcp>> {
    RemoteRegistry::new(Pool::new(Tcp, addr, ChannelConfig::default(), 1))
}

/// The registry service with a token, as production should serve it: the
/// contract must hold through authentication.
async fn remote() -> Option<Subject> {
    let (addr, stop) = serve(authenticated_router(MemoryRegistry::new(), [TOKEN.into()])).await;
    Some(Subject {
        registry: Arc::new(client(&addr).with_token(TOKEN)),
        ttl_short: Duration::from_secs(1),
        patience: Duration::from_secs(10),
        _guard: Box::new(stop),
    })
}

mod memory_registry {
    use super::*;
    registry_contract!(memory);
}

mod registry_service {
    use super::*;
    registry_contract!(remote);
}

const TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn without_the_token_a_peer_can_neither_register_nor_remove_nor_renew_an_instance() {
    // Proves the attack from issue 10 fails against a registry served with a
    // token: a peer without it (or with a wrong one) cannot list a rogue
    // `Pay@127.0.0.1:6666`, cannot deregister or renew the victim's lease even
    // knowing its id, and cannot read the instance list; the victim is unharmed.
    let (addr, _stop) = serve(authenticated_router(MemoryRegistry::new(), [TOKEN.into()])).await;
    let victim = client(&addr).with_token(TOKEN);
    let lease = victim
        .register(Instance::new("Pay", "127.0.0.1:7000"), TTL)
        .await
        .unwrap();

    for attacker in [client(&addr), client(&addr).with_token("guessed-token")] {
        let refused = [
            attacker
                .register(Instance::new("Pay", "127.0.0.1:6666"), TTL)
                .await
                .map(|_| ()),
            attacker
                .register(Instance::new("Pay", "127.0.0.1:7000").with_weight(0), TTL)
                .await
                .map(|_| ()),
            attacker.deregister(lease).await,
            attacker.keep_alive(lease).await.map(|_| ()),
            attacker.discover("Pay").await.map(|_| ()),
        ];
        for outcome in refused {
            let status = outcome.expect_err("an unauthenticated call was served");
            assert_eq!(status.code(), Code::Unauthenticated, "{status}");
            assert!(!status.may_have_executed() && !status.is_retryable());
        }
    }

    victim
        .keep_alive(lease)
        .await
        .expect("the victim's lease is intact");
    let listed = victim.discover("Pay").await.unwrap();
    assert_eq!(listed.addrs(), ["127.0.0.1:7000"]);
    assert_eq!(listed.instances[0].weight, 1);
}

#[tokio::test]
async fn a_registered_peer_cannot_guess_another_instances_lease() {
    // Proves lease ids are not guessable: a peer that may use the registry
    // (here an open one; with a token, any token holder) and holds a lease of
    // its own tries the ids that sequential or nearby numbering would have
    // issued. None of them is the victim's, whose lease survives. With the
    // 1, 2, 3... ids of the first registry this deregistered the victim.
    let (addr, _stop) = serve(router(MemoryRegistry::new())).await;
    let victim = client(&addr);
    let victim_lease = victim
        .register(Instance::new("Pay", "127.0.0.1:7000"), TTL)
        .await
        .unwrap();
    let attacker = client(&addr);
    let own = attacker
        .register(Instance::new("Other", "127.0.0.1:6666"), TTL)
        .await
        .unwrap();

    let near_own = (1..=512u64).flat_map(|d| [own.0.wrapping_add(d), own.0.wrapping_sub(d)]);
    for guess in (0..=1024u64).chain(near_own).map(LeaseId) {
        if guess == own {
            continue;
        }
        let status = attacker
            .deregister(guess)
            .await
            .expect_err("a guessed lease id was accepted");
        assert_eq!(status.code(), Code::NotFound, "{guess}: {status}");
    }

    victim
        .keep_alive(victim_lease)
        .await
        .expect("the victim's lease survives the guessing");
    let listed = victim.discover("Pay").await.unwrap();
    assert_eq!(listed.addrs(), ["127.0.0.1:7000"]);
}

#[tokio::test]
async fn a_token_scoped_to_its_own_service_cannot_impersonate_or_displace_another() {
    // Proves per-service scopes: a server holding a valid token for `Other`
    // (say, compromised) can neither list a rogue `Pay` instance nor replace
    // the real `Pay` registration by registering its address, while it still
    // registers its own service and may read.
    let credentials = RegistryCredentials::new()
        .token_for("pay-token", ["Pay"])
        .token_for("other-token", ["Other"]);
    let (addr, _stop) = serve(router_with_credentials(MemoryRegistry::new(), credentials)).await;
    let victim = client(&addr).with_token("pay-token");
    let victim_lease = victim
        .register(Instance::new("Pay", "127.0.0.1:7000"), TTL)
        .await
        .unwrap();
    let attacker = client(&addr).with_token("other-token");
    attacker
        .register(Instance::new("Other", "127.0.0.1:6666"), TTL)
        .await
        .expect("a token registers its own service");

    for rogue in [
        Instance::new("Pay", "127.0.0.1:6666"),
        Instance::new("Pay", "127.0.0.1:7000").with_weight(0),
    ] {
        let status = attacker.register(rogue, TTL).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status}");
        assert!(!status.may_have_executed() && !status.is_retryable());
    }

    victim
        .keep_alive(victim_lease)
        .await
        .expect("the victim's lease is intact");
    let listed = attacker
        .discover("Pay")
        .await
        .expect("any valid token may read");
    assert_eq!(listed.addrs(), ["127.0.0.1:7000"]);
    assert_eq!(listed.instances[0].weight, 1);
}
