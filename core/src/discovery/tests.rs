//! Behaviour tests for the discovery-aware client and the registry service, on
//! tokio's paused clock over an in-memory network: every delay is virtual and
//! exact, and an endpoint can refuse connections or swallow them whole.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

use super::*;
use crate::client::{CallOptions, Caller, Client, OutgoingRequest, Pool, PoolHealth};
use crate::registry::service::{router as registry_router, RemoteRegistry};
use crate::registry::{Instance, MemoryRegistry, Registry, ResolverConfig};
use crate::resilience::{
    Backoff, BreakerConfig, BudgetConfig, FailMode, HedgeDelay, HedgePolicy, Jitter, RetryPolicy,
};
use crate::transport::{Connection, Listener};
use crate::{BalancerKind, Code, Router, SeedSource, Server};
use crate::{ChannelConfig, Codec};

type MemConnection = Connection<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

/// How an address answers connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Connections reach the listener.
    Up,
    /// Connects fail at once (a crashed host, a closed port).
    Refuse,
    /// Connects succeed but nothing is ever read or answered (a hung host).
    BlackHole,
    /// Connects never complete (a host that drops SYNs: powered off).
    Hang,
}

/// Listeners and the state of each address.
#[derive(Default)]
struct Net {
    /// Where each bound address delivers connections.
    listeners: BTreeMap<String, mpsc::UnboundedSender<MemConnection>>,
    /// Addresses not `Up`.
    modes: BTreeMap<String, Mode>,
    /// Server halves of black-holed connections, kept open and never read.
    swallowed: Vec<DuplexStream>,
}

/// An in-memory [`Transport`]: `tokio::io::duplex` pairs between named hosts.
#[derive(Clone, Default)]
struct MemNet {
    net: Arc<Mutex<Net>>,
}

impl MemNet {
    fn set_mode(&self, addr: &str, mode: Mode) {
        self.net.lock().unwrap().modes.insert(addr.to_owned(), mode);
    }
}

fn fake_peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

impl Transport for MemNet {
    type Reader = ReadHalf<DuplexStream>;
    type Writer = WriteHalf<DuplexStream>;
    type Listener = MemListener;

    async fn connect(&self, addr: &str) -> io::Result<MemConnection> {
        let mode = self
            .net
            .lock()
            .unwrap()
            .modes
            .get(addr)
            .copied()
            .unwrap_or(Mode::Up);
        if mode == Mode::Hang {
            return std::future::pending().await;
        }
        let mut net = self.net.lock().unwrap();
        let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let (client, server) = tokio::io::duplex(1 << 16);
        match mode {
            Mode::Hang => unreachable!("handled before locking"),
            Mode::Refuse => return Err(refused()),
            Mode::BlackHole => net.swallowed.push(server),
            Mode::Up => {
                let listener = net.listeners.get(addr).ok_or_else(refused)?;
                let (reader, writer) = tokio::io::split(server);
                let conn = Connection {
                    reader,
                    writer,
                    peer: fake_peer(),
                };
                listener.send(conn).map_err(|_| refused())?;
            }
        }
        let (reader, writer) = tokio::io::split(client);
        Ok(Connection {
            reader,
            writer,
            peer: fake_peer(),
        })
    }

    async fn bind(&self, addr: &str) -> io::Result<MemListener> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.net
            .lock()
            .unwrap()
            .listeners
            .insert(addr.to_owned(), tx);
        Ok(MemListener { incoming: rx })
    }
}

/// Accepts the connections `MemNet::connect` delivers.
struct MemListener {
    incoming: mpsc::UnboundedReceiver<MemConnection>,
}

impl Listener for MemListener {
    type Reader = ReadHalf<DuplexStream>;
    type Writer = WriteHalf<DuplexStream>;

    async fn accept(&mut self) -> io::Result<MemConnection> {
        match self.incoming.recv().await {
            Some(conn) => Ok(conn),
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(fake_peer())
    }
}

/// How a test server's `Echo.Who` behaves.
#[derive(Clone, Debug, Default)]
struct Behaviour {
    /// Sleep this long before answering.
    delay: Duration,
    /// Fail with this code (after the handler ran) instead of answering.
    fail: Option<Code>,
}

type Behaviours = Arc<Mutex<BTreeMap<String, Behaviour>>>;

/// Starts an `Echo.Who` server (it answers its own address) at each address.
async fn servers(net: &MemNet, addrs: &[&str]) -> Behaviours {
    let behaviours: Behaviours = Arc::default();
    for addr in addrs {
        behaviours
            .lock()
            .unwrap()
            .insert(addr.to_string(), Behaviour::default());
        let me = addr.to_string();
        let shared = Arc::clone(&behaviours);
        let router = Router::new().route("Echo.Who", move |_ctx, (): ()| {
            let me = me.clone();
            let behaviour = shared.lock().unwrap()[&me].clone();
            async move {
                sleep(behaviour.delay).await;
                match behaviour.fail {
                    Some(code) => Err(Status::new(code, format!("{me} failed on purpose"))),
                    None => Ok(me),
                }
            }
        });
        let listener = net.bind(addr).await.unwrap();
        tokio::spawn(Server::new(router).serve(listener, std::future::pending()));
    }
    behaviours
}

fn set(behaviours: &Behaviours, addr: &str, behaviour: Behaviour) {
    behaviours
        .lock()
        .unwrap()
        .insert(addr.to_owned(), behaviour);
}

fn failing(code: Code) -> Behaviour {
    Behaviour {
        fail: Some(code),
        ..Behaviour::default()
    }
}

fn slow(delay: Duration) -> Behaviour {
    Behaviour {
        delay,
        ..Behaviour::default()
    }
}

type Events = Arc<Mutex<Vec<DiscoveryEvent>>>;

/// Round robin, seeded, no breaker, quick fixed backoff, and an event log.
fn config() -> (ServiceClientConfig, Events) {
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    let config = ServiceClientConfig {
        balancer: BalancerKind::RoundRobin,
        breaker: None,
        retry: RetryPolicy {
            backoff: Backoff {
                initial: Duration::from_millis(10),
                jitter: Jitter::None,
                ..Backoff::default()
            },
            ..RetryPolicy::default()
        },
        seed: SeedSource::new(7),
        observer: Some(Arc::new(move |event: &DiscoveryEvent| {
            sink.lock().unwrap().push(event.clone());
        })),
        ..ServiceClientConfig::default()
    };
    (config, events)
}

fn endpoints(addrs: &[&str]) -> Vec<Endpoint> {
    addrs.iter().map(|addr| Endpoint::new(*addr, 1)).collect()
}

fn client_for(
    net: &MemNet,
    addrs: &[&str],
    config: ServiceClientConfig,
) -> Client<ServiceClient<MemNet>> {
    let service = ServiceClient::new(net.clone(), "echo", endpoints(addrs), config);
    Client::new(service).with_timeout(Some(Duration::from_secs(5)))
}

async fn who(
    client: &Client<ServiceClient<MemNet>>,
    options: CallOptions,
) -> Result<String, Status> {
    client.call_with("Echo.Who", &(), options).await
}

/// The endpoints of each call's attempts, by call id, in order.
fn attempts_by_call(events: &Events) -> BTreeMap<u64, Vec<(String, bool)>> {
    let mut calls: BTreeMap<u64, Vec<(String, bool)>> = BTreeMap::new();
    for event in events.lock().unwrap().iter() {
        if let DiscoveryEvent::Attempt {
            call,
            endpoint,
            hedge,
            ..
        } = event
        {
            calls
                .entry(*call)
                .or_default()
                .push((endpoint.clone(), *hedge));
        }
    }
    calls
}

fn decisions(events: &Events) -> Vec<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            DiscoveryEvent::RetryDecision { decision, .. } => Some(decision.clone()),
            _ => None,
        })
        .collect()
}

fn transitions(events: &Events) -> Vec<(String, BreakerState, BreakerState)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            DiscoveryEvent::BreakerTransition {
                endpoint, from, to, ..
            } => Some((endpoint.clone(), *from, *to)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn failover_sends_the_retry_to_another_endpoint_when_one_refuses_connections() {
    // Proves a refused connect (Unavailable, not executed) is retried on the
    // other endpoint — even for a non-idempotent call, since it never ran — that
    // the endpoint is then avoided while it reconnects, and that the observer
    // sees each attempt with the endpoint it went to.
    let net = MemNet::default();
    servers(&net, &["a:1", "b:1"]).await;
    net.set_mode("a:1", Mode::Refuse);
    let (config, events) = config();
    let client = client_for(&net, &["a:1", "b:1"], config);
    for _ in 0..4 {
        assert_eq!(who(&client, CallOptions::new()).await.unwrap(), "b:1");
    }
    let calls = attempts_by_call(&events);
    assert_eq!(calls.len(), 4);
    let mut failed_over = 0;
    for attempts in calls.values() {
        match attempts.as_slice() {
            [(only, false)] => assert_eq!(only, "b:1"),
            [(first, false), (second, false)] => {
                assert_eq!((first.as_str(), second.as_str()), ("a:1", "b:1"));
                failed_over += 1;
            }
            other => panic!("unexpected attempts {other:?}"),
        }
    }
    // The first call that tries a:1 fails over to b:1; after that refused
    // connect a:1's pool is degraded (reconnecting in the background) and the
    // picker routes around it, so later calls go straight to b:1.
    assert_eq!(failed_over, 1, "a degraded endpoint was tried again");
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_call_that_may_have_executed_is_not_retried() {
    // Proves an Unavailable from a handler (the request ran) is returned after
    // one attempt when the method is not idempotent: re-sending could run it twice.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1"]).await;
    set(&behaviours, "a:1", failing(Code::Unavailable));
    set(&behaviours, "b:1", failing(Code::Unavailable));
    let (config, events) = config();
    let client = client_for(&net, &["a:1", "b:1"], config);
    let status = who(&client, CallOptions::new()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(attempts_by_call(&events)[&1].len(), 1);
    assert_eq!(decisions(&events), ["stop:may_have_executed"]);
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_call_is_retried_on_another_endpoint_until_one_answers() {
    // Proves a declared-idempotent call that failed after running is retried,
    // on the other endpoint (failover), and the reply of the retry is returned.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1"]).await;
    set(&behaviours, "a:1", failing(Code::Unavailable));
    let (config, events) = config();
    let client = client_for(&net, &["a:1", "b:1"], config);
    for _ in 0..2 {
        let reply = who(&client, CallOptions::new().idempotent()).await;
        assert_eq!(reply.unwrap(), "b:1");
    }
    let calls = attempts_by_call(&events);
    let retried: Vec<_> = calls.values().filter(|a| a.len() == 2).collect();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0][0].0, "a:1");
    assert_eq!(retried[0][1].0, "b:1");
    assert_eq!(decisions(&events), ["retry"]);
}

#[tokio::test(start_paused = true)]
async fn failtry_retries_on_the_same_endpoint() {
    // Proves failtry keeps a call on the endpoint it started on (sticky state),
    // up to max_attempts, while failover would have switched.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1"]).await;
    set(&behaviours, "a:1", failing(Code::Unavailable));
    set(&behaviours, "b:1", failing(Code::Unavailable));
    let (mut config, events) = config();
    config.fail_mode = FailMode::FailTry;
    let client = client_for(&net, &["a:1", "b:1"], config);
    who(&client, CallOptions::new().idempotent())
        .await
        .unwrap_err();
    let attempts = &attempts_by_call(&events)[&1];
    assert_eq!(attempts.len(), 3);
    assert!(attempts
        .iter()
        .all(|(endpoint, _)| *endpoint == attempts[0].0));
    assert_eq!(
        decisions(&events),
        ["retry", "retry", "stop:attempts_exhausted"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_retries_when_every_endpoint_fails() {
    // Proves the budget bounds the extra load: over 100 failing idempotent calls
    // within one ttl, attempts ≤ calls × (1 + ratio) + min_per_sec × ttl, and the
    // refused retries are reported as budget_exhausted.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1"]).await;
    set(&behaviours, "a:1", failing(Code::Unavailable));
    set(&behaviours, "b:1", failing(Code::Unavailable));
    let (mut config, events) = config();
    config.retry.backoff.initial = Duration::from_millis(1);
    config.budget = Some(BudgetConfig {
        ttl: Duration::from_secs(10),
        min_per_sec: 1,
        retry_ratio: 0.2,
    });
    let client = client_for(&net, &["a:1", "b:1"], config);
    let calls = 100;
    for _ in 0..calls {
        who(&client, CallOptions::new().idempotent())
            .await
            .unwrap_err();
    }
    let attempts: usize = attempts_by_call(&events).values().map(Vec::len).sum();
    let bound = calls + calls / 5 + 10;
    assert!(attempts <= bound, "{attempts} attempts > {bound}");
    assert!(attempts > calls, "some retries were allowed");
    let exhausted = decisions(&events)
        .iter()
        .filter(|d| *d == "budget_exhausted")
        .count();
    assert!(exhausted > 50, "only {exhausted} budget stops");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_consecutive_failures_and_a_probe_closes_it_after_recovery() {
    // Proves the full breaker cycle as the client drives it: three failures in a
    // row open a:1's breaker, the balancer then sends nothing there, and after the
    // open period one successful probe closes it — all reported as transitions.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1"]).await;
    set(&behaviours, "a:1", failing(Code::Internal));
    let (mut config, events) = config();
    config.fail_mode = FailMode::FailFast;
    config.breaker = Some(BreakerConfig {
        consecutive_failures: Some(3),
        half_open_probes: 1,
        open_base: Duration::from_secs(1),
        open_max: Duration::from_secs(2),
        ..BreakerConfig::default()
    });
    let client = client_for(&net, &["a:1", "b:1"], config);
    let service = client.caller().clone();
    for _ in 0..6 {
        let _ = who(&client, CallOptions::new()).await;
    }
    assert_eq!(service.breaker_state("a:1"), Some(BreakerState::Open));
    let opened_at = events.lock().unwrap().len();
    for _ in 0..10 {
        assert_eq!(who(&client, CallOptions::new()).await.unwrap(), "b:1");
    }
    let after_open: Vec<_> = events.lock().unwrap()[opened_at..]
        .iter()
        .filter(|e| matches!(e, DiscoveryEvent::Attempt { endpoint, .. } if endpoint == "a:1"))
        .cloned()
        .collect();
    assert!(
        after_open.is_empty(),
        "open breaker still chosen: {after_open:?}"
    );
    set(&behaviours, "a:1", Behaviour::default());
    sleep(Duration::from_secs(2)).await;
    let mut served_by_a = 0;
    for _ in 0..4 {
        if who(&client, CallOptions::new()).await.unwrap() == "a:1" {
            served_by_a += 1;
        }
    }
    assert!(served_by_a >= 1);
    assert_eq!(service.breaker_state("a:1"), Some(BreakerState::Closed));
    use BreakerState::{Closed, HalfOpen, Open};
    let a = |from, to| ("a:1".to_owned(), from, to);
    assert_eq!(
        transitions(&events),
        [a(Closed, Open), a(Open, HalfOpen), a(HalfOpen, Closed)]
    );
}

#[tokio::test(start_paused = true)]
async fn with_every_breaker_open_a_call_fails_fast_naming_the_service() {
    // Proves the "nothing available" error: Unavailable, not executed, with the
    // counts of known endpoints and open breakers, and no attempt sent.
    let net = MemNet::default();
    servers(&net, &["a:1"]).await;
    net.set_mode("a:1", Mode::Refuse);
    let (mut config, events) = config();
    config.fail_mode = FailMode::FailFast;
    config.breaker = Some(BreakerConfig {
        consecutive_failures: Some(1),
        ..BreakerConfig::default()
    });
    let client = client_for(&net, &["a:1"], config);
    who(&client, CallOptions::new()).await.unwrap_err();
    let status = who(&client, CallOptions::new()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.may_have_executed());
    assert_eq!(
        status.message(),
        "no endpoint available for service echo: 1 known, 1 with open breakers"
    );
    assert_eq!(
        attempts_by_call(&events).len(),
        1,
        "second call sent nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedge_goes_to_another_endpoint_after_the_delay_and_the_first_reply_wins() {
    // Proves hedging: when the first attempt (to the slow a:1) has not answered
    // after the 50 ms hedge delay, a backup goes to b:1, its reply is returned at
    // 50 ms + b's 10 ms, and the slow attempt is dropped and reported as lost.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1"]).await;
    set(&behaviours, "a:1", slow(Duration::from_secs(1)));
    set(&behaviours, "b:1", slow(Duration::from_millis(10)));
    let (mut config, events) = config();
    config.hedge = Some(HedgePolicy {
        delay: HedgeDelay::Fixed(Duration::from_millis(50)),
        max_extra_ratio: 1.0,
        min_samples: 1,
    });
    let client = client_for(&net, &["a:1", "b:1"], config);
    let mut hedged = 0;
    for _ in 0..2 {
        let start = Instant::now();
        let reply = who(&client, CallOptions::new().idempotent()).await.unwrap();
        assert_eq!(reply, "b:1");
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
        if start.elapsed() >= Duration::from_millis(50) {
            hedged += 1;
        }
    }
    assert_eq!(hedged, 1);
    let calls = attempts_by_call(&events);
    let hedged_call = calls
        .iter()
        .find(|(_, attempts)| attempts.len() == 2)
        .expect("one call was hedged");
    assert_eq!(
        hedged_call.1,
        &vec![("a:1".to_owned(), false), ("b:1".to_owned(), true)]
    );
    let lost = events.lock().unwrap().iter().any(|event| {
        matches!(event, DiscoveryEvent::AttemptFinished { endpoint, outcome: Err(status), .. }
            if endpoint == "a:1" && status.message().starts_with("hedge lost"))
    });
    assert!(lost, "the slow attempt is reported as lost");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_covers_every_attempt_and_backoff() {
    // Proves the call's timeout bounds the whole chain: endpoints that fail after
    // 300 ms each, with 10 attempts allowed, still end the call within its 1 s —
    // and a black-holed endpoint ends it exactly at the deadline.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1"]).await;
    let failing_slowly = Behaviour {
        delay: Duration::from_millis(300),
        fail: Some(Code::Unavailable),
    };
    set(&behaviours, "a:1", failing_slowly.clone());
    set(&behaviours, "b:1", failing_slowly);
    let (mut config, events) = config();
    config.retry.max_attempts = 10;
    let client = client_for(&net, &["a:1", "b:1"], config.clone());
    let start = Instant::now();
    let options = CallOptions::new()
        .idempotent()
        .timeout(Duration::from_secs(1));
    who(&client, options.clone()).await.unwrap_err();
    assert!(
        start.elapsed() <= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(attempts_by_call(&events)[&1].len() <= 4);
    assert_eq!(decisions(&events).last().unwrap(), "stop:deadline");

    net.set_mode("c:1", Mode::BlackHole);
    let client = client_for(&net, &["c:1"], config);
    let start = Instant::now();
    let status = who(&client, options).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn broadcast_returns_every_instances_reply_or_the_first_error() {
    // Proves broadcast reaches each endpoint once and returns the replies sorted
    // by address; one failing instance makes the whole broadcast fail.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1", "c:1"]).await;
    let (config, _events) = config();
    let service = ServiceClient::new(
        net.clone(),
        "echo",
        endpoints(&["c:1", "a:1", "b:1"]),
        config,
    );
    let request = || OutgoingRequest {
        method: "Echo.Who".into(),
        codec: crate::Codec::Json,
        body: crate::Codec::Json.encode(&()).unwrap(),
        metadata: Vec::new(),
        timeout: Some(Duration::from_secs(1)),
        idempotent: true,
    };
    let replies = service.broadcast(request()).await.unwrap();
    let decoded: Vec<(String, String)> = replies
        .into_iter()
        .map(|(endpoint, reply)| (endpoint, reply.codec.decode(&reply.body).unwrap()))
        .collect();
    let expected: Vec<(String, String)> = ["a:1", "b:1", "c:1"]
        .iter()
        .map(|a| (a.to_string(), a.to_string()))
        .collect();
    assert_eq!(decoded, expected);
    set(&behaviours, "b:1", failing(Code::Internal));
    let status = service.broadcast(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
}

#[tokio::test(start_paused = true)]
async fn the_call_id_comes_from_metadata_when_the_caller_sets_it() {
    // Proves events carry the caller's call id (the simulation's), and the
    // client's own counter otherwise.
    let net = MemNet::default();
    servers(&net, &["a:1"]).await;
    let (config, events) = config();
    let client = client_for(&net, &["a:1"], config);
    who(&client, CallOptions::new().metadata("call-id", "42"))
        .await
        .unwrap();
    who(&client, CallOptions::new()).await.unwrap();
    let ids: Vec<u64> = attempts_by_call(&events).keys().copied().collect();
    assert_eq!(ids, [1, 42]);
}

#[tokio::test(start_paused = true)]
async fn the_endpoint_set_follows_a_resolver_over_the_registry_service() {
    // Proves, end to end over the registry *service*: instances registered
    // through a RemoteRegistry appear in the client's endpoint set, departed ones
    // disappear, calls go only to listed instances, and each change is reported.
    let net = MemNet::default();
    servers(&net, &["a:1", "b:1"]).await;
    let listener = net.bind("registry:1").await.unwrap();
    let registry_state = MemoryRegistry::new();
    tokio::spawn(
        Server::new(registry_router(registry_state)).serve(listener, std::future::pending()),
    );
    let pool = Pool::new(net.clone(), "registry:1", Default::default(), 1);
    let registry: Arc<dyn Registry> = Arc::new(RemoteRegistry::new(pool));
    let ttl = Duration::from_secs(10);
    let lease_a = registry
        .register(Instance::new("echo", "a:1"), ttl)
        .await
        .unwrap();
    let resolver = crate::Resolver::spawn(Arc::clone(&registry), "echo", ResolverConfig::default());
    resolver.ready().await;
    let (config, events) = config();
    let service = ServiceClient::with_resolver(net.clone(), resolver, config);
    let client = Client::new(service.clone());
    assert_eq!(who(&client, CallOptions::new()).await.unwrap(), "a:1");

    registry
        .register(Instance::new("echo", "b:1"), ttl)
        .await
        .unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(service.endpoints(), endpoints(&["a:1", "b:1"]));
    registry.deregister(lease_a).await.unwrap();
    sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        assert_eq!(who(&client, CallOptions::new()).await.unwrap(), "b:1");
    }
    let changes: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            DiscoveryEvent::EndpointsChanged { endpoints } => Some(endpoints.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(changes, [vec!["a:1"], vec!["a:1", "b:1"], vec!["b:1"]]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_registry_answer_does_not_empty_a_known_endpoint_set() {
    // Proves the "ignore deletion" rule: when every instance vanishes from the
    // registry (leases lapsed while it was cut off, or it restarted empty), the
    // client keeps calling the endpoints it knew, and adopts the next non-empty
    // list as soon as instances register again.
    let net = MemNet::default();
    servers(&net, &["a:1", "b:1"]).await;
    let registry_state = MemoryRegistry::new();
    let registry: Arc<dyn Registry> = Arc::new(registry_state.clone());
    let ttl = Duration::from_secs(10);
    let lease_a = registry
        .register(Instance::new("echo", "a:1"), ttl)
        .await
        .unwrap();
    let resolver = crate::Resolver::spawn(Arc::clone(&registry), "echo", ResolverConfig::default());
    resolver.ready().await;
    let (config, _events) = config();
    let service = ServiceClient::with_resolver(net.clone(), resolver, config);
    let client = Client::new(service.clone());
    registry.deregister(lease_a).await.unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(service.endpoints(), endpoints(&["a:1"]));
    assert_eq!(who(&client, CallOptions::new()).await.unwrap(), "a:1");
    registry
        .register(Instance::new("echo", "b:1"), ttl)
        .await
        .unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(service.endpoints(), endpoints(&["b:1"]));
}

#[tokio::test(start_paused = true)]
async fn the_remote_registry_tells_a_lost_lease_from_a_server_that_is_not_a_registry() {
    // Proves the wire mapping: a lost lease comes back as the trait's NotFound,
    // and calling a server without the registry's methods is Unimplemented
    // rather than a lost lease (which would make a registrar re-register forever).
    let net = MemNet::default();
    servers(&net, &["echo:1"]).await;
    let listener = net.bind("registry:1").await.unwrap();
    tokio::spawn(
        Server::new(registry_router(MemoryRegistry::new())).serve(listener, std::future::pending()),
    );
    let registry = RemoteRegistry::new(Pool::new(net.clone(), "registry:1", Default::default(), 1));
    let lease = registry
        .register(Instance::new("echo", "a:1"), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        registry.keep_alive(lease).await.unwrap(),
        Duration::from_secs(1)
    );
    sleep(Duration::from_secs(2)).await;
    let lost = registry.keep_alive(lease).await.unwrap_err();
    assert_eq!(lost.code(), Code::NotFound, "{lost}");
    assert_eq!(
        registry.deregister(lease).await.unwrap_err().code(),
        Code::NotFound
    );

    let not_a_registry =
        RemoteRegistry::new(Pool::new(net.clone(), "echo:1", Default::default(), 1));
    let status = not_a_registry.keep_alive(lease).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status}");
    assert!(status.message().contains("Registry.KeepAlive"), "{status}");
}

#[tokio::test(start_paused = true)]
async fn a_remote_watch_waits_across_quiet_long_polls_until_the_list_changes() {
    // Proves RemoteRegistry::watch keeps the trait's "waits as long as it takes"
    // although each long-poll is bounded: a change 12 s later (past two 5 s
    // polls) is what it returns.
    let net = MemNet::default();
    let listener = net.bind("registry:1").await.unwrap();
    let state = MemoryRegistry::new();
    tokio::spawn(
        Server::new(registry_router(state.clone())).serve(listener, std::future::pending()),
    );
    let registry = RemoteRegistry::new(Pool::new(net.clone(), "registry:1", Default::default(), 1));
    let before = registry.discover("echo").await.unwrap();
    let start = Instant::now();
    let changer = tokio::spawn(async move {
        sleep(Duration::from_secs(12)).await;
        state
            .register(Instance::new("echo", "a:1"), Duration::from_secs(30))
            .await
            .unwrap();
    });
    let after = registry.watch("echo", before.revision).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(12));
    assert_eq!(after.addrs(), ["a:1"]);
    changer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_call_made_before_any_instance_registered_waits_for_the_first_one() {
    // Proves wait-for-ready: the registry has answered (with no instance yet)
    // when the call is made; the call waits, is sent as soon as the first
    // instance registers 50 ms later, and succeeds. With wait_for_ready off it
    // fails at once, Unavailable and not executed, naming the service. This is
    // the start-up race seeds 31, 38, 65, ... of registry-partition hit.
    let net = MemNet::default();
    servers(&net, &["a:1"]).await;
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let resolver = crate::Resolver::spawn(Arc::clone(&registry), "echo", ResolverConfig::default());
    resolver.ready().await;
    let (config, _events) = config();
    let service = ServiceClient::with_resolver(net.clone(), resolver, config.clone());
    let client = Client::new(service.clone());
    let start = Instant::now();
    let call = tokio::spawn(async move {
        who(&client, CallOptions::new().timeout(Duration::from_secs(1))).await
    });
    sleep(Duration::from_millis(50)).await;
    registry
        .register(Instance::new("echo", "a:1"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), "a:1");
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );

    let resolver =
        crate::Resolver::spawn(Arc::clone(&registry), "other", ResolverConfig::default());
    resolver.ready().await;
    let impatient = ServiceClientConfig {
        wait_for_ready: false,
        ..config
    };
    let client = Client::new(ServiceClient::with_resolver(
        net.clone(),
        resolver,
        impatient,
    ));
    let start = Instant::now();
    let status = who(&client, CallOptions::new().timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.may_have_executed());
    assert!(status.message().contains("service other"), "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_ready_fails_not_executed_at_its_deadline() {
    // Proves wait-for-ready is bounded by the call's deadline: no instance ever
    // registers, the call ends at its 200 ms timeout, not executed.
    let net = MemNet::default();
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let resolver = crate::Resolver::spawn(Arc::clone(&registry), "echo", ResolverConfig::default());
    resolver.ready().await;
    let (config, _events) = config();
    let client = Client::new(ServiceClient::with_resolver(net.clone(), resolver, config));
    let start = Instant::now();
    let status = who(
        &client,
        CallOptions::new().timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.may_have_executed());
}

/// Runs a fixed workload against a flaky and a slow endpoint with the default
/// (random, load-aware) balancer and returns the event trace as text.
async fn traced_run(seed: u64) -> Vec<String> {
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1", "c:1"]).await;
    set(&behaviours, "a:1", failing(Code::Unavailable));
    set(&behaviours, "c:1", slow(Duration::from_millis(30)));
    let (mut config, events) = config();
    config.balancer = BalancerKind::P2cEwma;
    config.breaker = Some(BreakerConfig::default());
    config.retry.backoff.jitter = Jitter::Full;
    config.seed = SeedSource::new(seed);
    let client = client_for(&net, &["a:1", "b:1", "c:1"], config);
    for _ in 0..30 {
        let _ = who(&client, CallOptions::new().idempotent()).await;
    }
    let trace = events
        .lock()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    trace
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_event_trace() {
    // Proves determinism: with random balancing, jittered backoff and breakers,
    // two runs from one seed emit identical traces, and another seed differs.
    let first = traced_run(11).await;
    assert_eq!(first, traced_run(11).await);
    assert_ne!(first, traced_run(12).await);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_reports_each_attempt_and_the_call_as_cancelled() {
    // Proves every Attempt gets exactly one AttemptFinished even when the caller
    // drops the call mid-flight, and the call itself is reported Cancelled — so a
    // trace can check "every call resolved exactly once".
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1"]).await;
    set(&behaviours, "a:1", slow(Duration::from_secs(10)));
    let (config, events) = config();
    let client = client_for(&net, &["a:1"], config);
    let call = client.go::<_, String>("Echo.Who", &());
    sleep(Duration::from_millis(100)).await;
    drop(call);
    tokio::task::yield_now().await;
    let events = events.lock().unwrap().clone();
    let finished: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DiscoveryEvent::AttemptFinished { outcome, .. } => Some(outcome.clone()),
            DiscoveryEvent::CallFinished { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 2, "{events:?}");
    assert!(finished
        .iter()
        .all(|outcome| outcome.as_ref().unwrap_err().code() == Code::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn a_pool_connect_finishes_even_when_the_call_that_started_it_is_dropped() {
    // Proves the shared connect drives itself: a call that starts a connect to
    // a host that drops SYNs, and is then dropped (its deadline passed), does
    // not leave the connect stalled. The attempt ends at connect_timeout, the
    // pool backs off, and once the host answers the pool reconnects by itself
    // (health() starts it) — before the fix the connect was never polled again
    // and the pool never became ready without another caller.
    let net = MemNet::default();
    servers(&net, &["a:1"]).await;
    net.set_mode("a:1", Mode::Hang);
    let config = ChannelConfig {
        connect_timeout: Duration::from_secs(1),
        ..ChannelConfig::default()
    };
    let pool = Pool::new(net.clone(), "a:1", config, 1);
    let request = OutgoingRequest {
        method: "Echo.Who".to_owned(),
        codec: Codec::MessagePack,
        body: Codec::MessagePack.encode(&()).unwrap(),
        metadata: Vec::new(),
        timeout: Some(Duration::from_millis(100)),
        idempotent: false,
    };
    let waited = tokio::time::timeout(Duration::from_millis(100), pool.call(request)).await;
    assert!(
        waited.is_err(),
        "the call should still be waiting for its connect"
    );
    net.set_mode("a:1", Mode::Up);
    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pool.stats().connect_failures,
        1,
        "the abandoned connect ran to its timeout"
    );
    assert_eq!(pool.health(), PoolHealth::Degraded);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.health(), PoolHealth::Ready);
}

mod may_have_executed;

#[tokio::test(start_paused = true)]
async fn a_per_attempt_timeout_abandons_a_stuck_attempt_and_retries_elsewhere() {
    // Proves attempt_timeout cuts an attempt that would use the whole call
    // deadline: of two calls (round robin), the one that lands on the slow
    // endpoint first is abandoned there after 50 ms and answered by the
    // other; without the bound the same workload waits out the slow endpoint.
    let net = MemNet::default();
    let behaviours = servers(&net, &["a:1", "b:1"]).await;
    set(&behaviours, "a:1", slow(Duration::from_millis(500)));
    let (mut config, events) = config();
    config.retry.attempt_timeout = Some(Duration::from_millis(50));
    let client = client_for(&net, &["a:1", "b:1"], config.clone());
    let options = CallOptions::new()
        .idempotent()
        .timeout(Duration::from_secs(1));
    for _ in 0..2 {
        let start = Instant::now();
        assert_eq!(who(&client, options.clone()).await.unwrap(), "b:1");
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    }
    let calls = attempts_by_call(&events);
    let retried: Vec<Vec<&str>> = calls
        .values()
        .map(|a| a.iter().map(|(e, _)| e.as_str()).collect())
        .filter(|a: &Vec<&str>| a.len() == 2)
        .collect();
    assert_eq!(retried, [["a:1", "b:1"]]);

    config.retry.attempt_timeout = None;
    let client = client_for(&net, &["a:1", "b:1"], config);
    let mut slowest = Duration::ZERO;
    for _ in 0..2 {
        let start = Instant::now();
        who(&client, options.clone()).await.unwrap();
        slowest = slowest.max(start.elapsed());
    }
    assert!(slowest >= Duration::from_millis(500), "{slowest:?}");
}

#[test]
fn a_zero_attempt_timeout_is_refused() {
    // Proves validate() rejects a bound that would abandon every attempt at once.
    let policy = RetryPolicy {
        attempt_timeout: Some(Duration::ZERO),
        ..RetryPolicy::default()
    };
    assert!(policy.validate().is_err());
}
