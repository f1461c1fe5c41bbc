//! Service discovery over real TCP: three arith servers register with a
//! registry service, and a client calls `Arith.Multiply` by service name through
//! a `ServiceClient` that follows the registry, printing which instance served
//! each call. Halfway through, one server leaves; the client stops using it.
//!
//! Run (two terminals):
//! `cargo run -p squall --example registry_server -- 127.0.0.1:7100`
//! `cargo run -p squall --example discovery_demo -- 127.0.0.1:7100`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use squall::client::{CallOptions, Client, Pool};
use squall::registry::{RegistrarConfig, ResolverConfig};
use squall::{
    ChannelConfig, DiscoveryEvent, Instance, Registrar, Registry, RemoteRegistry, Resolver, Router,
    Server, ServiceClient, ServiceClientConfig, Status, Tcp,
};
use tokio::sync::oneshot;

/// A registry client over one pooled connection to the registry service.
fn remote(registry_addr: &str) -> Arc<dyn Registry> {
    let pool = Pool::new(Tcp, registry_addr, ChannelConfig::default(), 1);
    Arc::new(RemoteRegistry::new(pool))
}

/// Starts an arith server on a free port, registered as service `arith`.
/// Returns its address, its registrar and a handle that shuts it down.
async fn start_arith(
    registry_addr: &str,
) -> std::io::Result<(String, Registrar, oneshot::Sender<()>)> {
    let listener = Tcp.bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let router = Router::new().route("Arith.Multiply", |_ctx, (a, b): (i64, i64)| async move {
        a.checked_mul(b)
            .ok_or_else(|| Status::invalid_argument("product overflows i64"))
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(Server::new(router).serve(listener, async {
        let _ = stop_rx.await;
    }));
    let config = RegistrarConfig {
        ttl: Duration::from_secs(3),
        ..RegistrarConfig::default()
    };
    let registrar = Registrar::spawn(
        remote(registry_addr),
        Instance::new("arith", addr.clone()),
        config,
    );
    Ok((addr, registrar, stop_tx))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry_addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7100".into());
    let mut servers = Vec::new();
    for _ in 0..3 {
        let (addr, registrar, stop) = start_arith(&registry_addr).await?;
        println!("arith server at {addr}");
        servers.push((addr, registrar, stop));
    }

    // Who served each call, learned from the client's events (call id = i).
    let served: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let sink = Arc::clone(&served);
    let config = ServiceClientConfig {
        // Round robin makes the spread visible; the default (p2c_ewma) would
        // favour whichever idle instance answered fastest.
        balancer: squall::BalancerKind::RoundRobin,
        observer: Some(Arc::new(move |event: &DiscoveryEvent| match event {
            DiscoveryEvent::AttemptFinished {
                call,
                endpoint,
                outcome: Ok(()),
                ..
            } => {
                sink.lock().unwrap().insert(*call, endpoint.clone());
            }
            DiscoveryEvent::EndpointsChanged { .. } | DiscoveryEvent::BreakerTransition { .. } => {
                println!("  [{event}]");
            }
            _ => {}
        })),
        ..ServiceClientConfig::default()
    };
    let resolver = Resolver::spawn(remote(&registry_addr), "arith", ResolverConfig::default());
    // The registrars register concurrently; wait until all three are listed.
    let mut snapshots = resolver.subscribe();
    tokio::time::timeout(
        Duration::from_secs(5),
        snapshots.wait_for(|s| s.instances.len() == 3),
    )
    .await
    .map_err(|_| {
        "the three servers did not appear in the registry within 5 s (is registry_server running?)"
    })??;
    let client = Client::new(ServiceClient::with_resolver(Tcp, resolver, config));

    let mut call_id = 0u64;
    let mut multiply = |times: u64| {
        let client = client.clone();
        let served = Arc::clone(&served);
        let first = call_id + 1;
        call_id += times;
        async move {
            for id in first..first + times {
                let options = CallOptions::new().metadata("call-id", id.to_string());
                let product: i64 = client
                    .call_with("Arith.Multiply", &(7, id as i64), options)
                    .await?;
                let by = served.lock().unwrap().get(&id).cloned().unwrap_or_default();
                println!("call {id}: 7 x {id} = {product}  (served by {by})");
            }
            Ok::<_, Status>(())
        }
    };
    multiply(6).await?;

    let (leaving, registrar, stop) = servers.remove(0);
    println!("stopping {leaving}: deregistering, then shutting down");
    registrar.stop().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    multiply(6).await?;

    for (_, registrar, _) in servers {
        registrar.stop().await?;
    }
    Ok(())
}
