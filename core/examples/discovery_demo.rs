//! Service discovery over real TCP: three arith servers register with a
//! registry service, and a client calls `Arith.Multiply` by service name through
//! a `ServiceClient` that follows the registry, printing which instance served
//! each call. Halfway through, one server leaves; the client stops using it.
//!
//! Run (two terminals):
//! `cargo run -p squall --example registry_server -- 127.0.0.1:7100`
//! `cargo run -p squall --example discovery_demo -- 127.0.0.1:7100`
//!
//! Or against etcd instead of the registry service (one terminal):
//! `cargo run -p squall --features etcd --example discovery_demo -- --etcd http://127.0.0.1:2379`

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

/// Which registry the demo uses.
#[derive(Clone, Debug)]
enum Target {
    /// The squall registry service at this address (`registry_server`).
    Service(String),
    /// An etcd cluster at this client URL (`--etcd http://127.0.0.1:2379`).
    Etcd(String),
}

impl Target {
    /// `[ADDR]` or `--etcd URL`.
    fn from_args() -> Result<Target, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.as_slice() {
            [] => Ok(Target::Service("127.0.0.1:7100".into())),
            [flag, url] if flag == "--etcd" => Ok(Target::Etcd(url.clone())),
            [addr] if !addr.starts_with("--") => Ok(Target::Service(addr.clone())),
            _ => Err("usage: discovery_demo [REGISTRY_ADDR | --etcd URL]".into()),
        }
    }

    /// A registry client: one pooled connection to the registry service, or
    /// an etcd client.
    async fn registry(&self) -> Result<Arc<dyn Registry>, Status> {
        match self {
            Target::Service(addr) => {
                let pool = Pool::new(Tcp, addr, ChannelConfig::default(), 1);
                let registry = RemoteRegistry::new(pool);
                // The token a `registry_server` started with the same variable requires.
                Ok(match std::env::var("SQUALL_REGISTRY_TOKEN") {
                    Ok(token) if !token.is_empty() => Arc::new(registry.with_token(token)),
                    _ => Arc::new(registry),
                })
            }
            #[cfg(feature = "etcd")]
            Target::Etcd(url) => {
                use squall::registry::{EtcdConfig, EtcdRegistry};
                let config = EtcdConfig::new([url.clone()]).with_prefix("/squall-demo/services");
                Ok(Arc::new(EtcdRegistry::connect(config).await?))
            }
            #[cfg(not(feature = "etcd"))]
            Target::Etcd(url) => Err(Status::invalid_argument(format!(
                "--etcd {url} needs the etcd registry: run with `--features etcd`"
            ))),
        }
    }
}

/// Starts an arith server on a free port, registered as service `arith`.
/// Returns its address, its registrar and a handle that shuts it down.
async fn start_arith(
    target: &Target,
) -> Result<(String, Registrar, oneshot::Sender<()>), Box<dyn std::error::Error>> {
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
        target.registry().await?,
        Instance::new("arith", addr.clone()),
        config,
    );
    Ok((addr, registrar, stop_tx))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    println!("registry: {target:?}");
    let mut servers = Vec::new();
    for _ in 0..3 {
        let (addr, registrar, stop) = start_arith(&target).await?;
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
    let resolver = Resolver::spawn(target.registry().await?, "arith", ResolverConfig::default());
    // The registrars register concurrently; wait until all three are listed.
    let mut snapshots = resolver.subscribe();
    tokio::time::timeout(
        Duration::from_secs(5),
        snapshots.wait_for(|s| s.instances.len() == 3),
    )
    .await
    .map_err(|_| {
        "the three servers did not appear in the registry within 5 s (is the registry running?)"
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
