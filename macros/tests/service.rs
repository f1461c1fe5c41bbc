//! `#[squall::service]` end to end over loopback TCP: names on the wire,
//! argument shapes, per-call options, idempotency reaching the wire and the
//! retry policy, and the typed and string-named APIs meeting on the same bytes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use squall::client::{Caller, OutgoingRequest, Reply};
use squall::{
    CallOptions, Client, Code, Context, Endpoint, FailMode, Router, Server, ServiceClient,
    ServiceClientConfig, Status, Tcp,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PutArgs {
    key: String,
    value: String,
}

/// A store: the example, plus the argument shapes.
#[squall::service]
pub trait Store {
    /// Reads a key.
    #[idempotent]
    async fn get(&self, ctx: Context, key: String) -> Result<Option<String>, Status>;
    /// Writes a key; returns the new count of keys.
    #[idempotent(false)]
    async fn put(&self, ctx: Context, args: PutArgs) -> Result<u64, Status>;
    /// Several arguments travel as a tuple.
    async fn add_all(&self, ctx: Context, a: i64, b: i64, c: i64) -> Result<i64, Status>;
    /// No arguments travel as `()`; no `Context` is fine too.
    async fn count(&self) -> Result<u64, Status>;
    /// What the server saw of the call: metadata `tag` and the idempotent flag.
    async fn echo_call(&self, ctx: Context) -> Result<(Option<String>, bool), Status>;
}

#[derive(Default)]
struct Memory {
    keys: Mutex<Vec<(String, String)>>,
}

impl Store for Memory {
    async fn get(&self, _ctx: Context, key: String) -> Result<Option<String>, Status> {
        let keys = self.keys.lock().unwrap();
        Ok(keys.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()))
    }
    async fn put(&self, _ctx: Context, args: PutArgs) -> Result<u64, Status> {
        let mut keys = self.keys.lock().unwrap();
        keys.retain(|(k, _)| *k != args.key);
        keys.push((args.key, args.value));
        Ok(keys.len() as u64)
    }
    async fn add_all(&self, _ctx: Context, a: i64, b: i64, c: i64) -> Result<i64, Status> {
        Ok(a + b + c)
    }
    async fn count(&self) -> Result<u64, Status> {
        Ok(self.keys.lock().unwrap().len() as u64)
    }
    async fn echo_call(&self, ctx: Context) -> Result<(Option<String>, bool), Status> {
        Ok((ctx.get("tag").map(str::to_owned), ctx.idempotent()))
    }
}

/// Serves `router` on a free loopback port and returns its address.
async fn serve(router: impl Into<Router>) -> String {
    let listener = Tcp.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(Server::new(router).serve(listener, std::future::pending()));
    addr
}

#[test]
fn method_names_are_the_trait_name_dot_the_upper_camel_case_method() {
    // Proves the documented naming rule on every method of the trait.
    let router = StoreServer::new(Memory::default()).into_router();
    assert_eq!(
        router.method_names(),
        [
            "Store.AddAll",
            "Store.Count",
            "Store.EchoCall",
            "Store.Get",
            "Store.Put"
        ]
    );
}

#[tokio::test]
async fn typed_calls_reach_the_implementation_with_every_argument_shape() {
    // Proves one, several (tuple) and no arguments round-trip through the
    // generated server and client.
    let addr = serve(StoreServer::new(Memory::default())).await;
    let client = StoreClient::connect(&addr).await.unwrap();
    let args = PutArgs {
        key: "k".into(),
        value: "v".into(),
    };
    assert_eq!(client.put(args).await.unwrap(), 1);
    assert_eq!(client.get("k".into()).await.unwrap().as_deref(), Some("v"));
    assert_eq!(client.get("absent".into()).await.unwrap(), None);
    assert_eq!(client.add_all(1, 2, 3).await.unwrap(), 6);
    assert_eq!(client.count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_typed_call_is_sent_before_it_is_awaited() {
    // Proves the handle is the "start now, await later" form: the put reaches
    // the server while its handle sits unawaited, seen by a later call.
    let addr = serve(StoreServer::new(Memory::default())).await;
    let client = StoreClient::connect(&addr).await.unwrap();
    let put = client.put(PutArgs {
        key: "early".into(),
        value: "bird".into(),
    });
    // One connection, requests written in order: the get runs after the put.
    let got = client.get("early".into()).await.unwrap();
    assert_eq!(got.as_deref(), Some("bird"));
    assert_eq!(put.await.unwrap(), 1);
}

#[tokio::test]
async fn the_string_client_and_the_typed_server_agree_on_the_wire() {
    // Proves typed and string-named calls are interchangeable: several
    // arguments are the tuple the string API sends, one argument is itself.
    let addr = serve(StoreServer::new(Memory::default())).await;
    let client = Client::connect(&addr).await.unwrap();
    let sum: i64 = client.call("Store.AddAll", &(4, 5, 6)).await.unwrap();
    assert_eq!(sum, 15);
    let missing: Option<String> = client.call("Store.Get", &"x").await.unwrap();
    assert_eq!(missing, None);
    let count: u64 = client.call("Store.Count", &()).await.unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn per_call_options_reach_the_server_and_idempotency_comes_from_the_trait() {
    // Proves with_options carries metadata, and that the IDEMPOTENT flag on
    // the wire is the trait's declaration, or the call's own on top of it.
    let addr = serve(StoreServer::new(Memory::default())).await;
    let client = StoreClient::connect(&addr).await.unwrap();
    let options = CallOptions::new()
        .metadata("tag", "blue")
        .timeout(Duration::from_secs(5));
    let seen = client.with_options(options).echo_call().await.unwrap();
    assert_eq!(seen, (Some("blue".to_owned()), false));
    let seen = client
        .with_options(CallOptions::new().idempotent())
        .echo_call()
        .await
        .unwrap();
    assert_eq!(seen, (None, true));
}

/// Records every request a client sends, and answers nothing useful.
#[derive(Clone, Default)]
struct Recording {
    requests: Arc<Mutex<Vec<OutgoingRequest>>>,
}

impl Caller for Recording {
    type Future = std::future::Ready<Result<Reply, Status>>;
    fn call(&self, request: OutgoingRequest) -> Self::Future {
        self.requests.lock().unwrap().push(request);
        std::future::ready(Err(Status::unavailable("recording only").not_executed()))
    }
}

#[tokio::test]
async fn the_client_sends_the_declared_idempotency_of_each_method() {
    // Proves #[idempotent] sets OutgoingRequest::idempotent (what retries and
    // hedges read) and #[idempotent(false)] / no attribute leave it off.
    let recording = Recording::default();
    let client = StoreClient::new(recording.clone());
    let _ = client.get("k".into()).await;
    let _ = client
        .put(PutArgs {
            key: "k".into(),
            value: "v".into(),
        })
        .await;
    let _ = client.count().await;
    let sent: Vec<(String, bool)> = recording
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.method.clone(), r.idempotent))
        .collect();
    assert_eq!(
        sent,
        [
            ("Store.Get".to_owned(), true),
            ("Store.Put".to_owned(), false),
            ("Store.Count".to_owned(), false)
        ]
    );
}

/// Methods that fail their first run after running (may have executed).
#[squall::service(name = "Flaky")]
trait FlakyOps {
    #[idempotent]
    async fn read(&self) -> Result<u32, Status>;
    async fn write(&self) -> Result<u32, Status>;
}

#[derive(Default)]
struct FirstRunFails {
    runs: AtomicU32,
}

impl FlakyOps for FirstRunFails {
    async fn read(&self) -> Result<u32, Status> {
        self.run()
    }
    async fn write(&self) -> Result<u32, Status> {
        self.run()
    }
}

impl FirstRunFails {
    fn run(&self) -> Result<u32, Status> {
        match self.runs.fetch_add(1, Ordering::SeqCst) + 1 {
            1 => Err(Status::unavailable("first run fails after running")),
            runs => Ok(runs),
        }
    }
}

async fn flaky_client() -> (FlakyOpsClient<ServiceClient<Tcp>>, Arc<FirstRunFails>) {
    // The server and the test share the implementation through the generated
    // `impl FlakyOps for Arc<T>`.
    let service = Arc::new(FirstRunFails::default());
    let addr = serve(FlakyOpsServer::new(Arc::clone(&service))).await;
    let config = ServiceClientConfig {
        fail_mode: FailMode::FailTry,
        ..ServiceClientConfig::default()
    };
    let caller = ServiceClient::new(Tcp, "Flaky", vec![Endpoint::new(addr, 1)], config);
    (FlakyOpsClient::new(caller), service)
}

#[tokio::test]
async fn a_method_declared_idempotent_is_retried_after_it_may_have_run() {
    // Proves the trait's #[idempotent] reaches the retry policy: the read that
    // failed after running is re-sent and the second run's reply returned.
    let (client, service) = flaky_client().await;
    assert_eq!(client.read().await.unwrap(), 2);
    assert_eq!(service.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_method_not_declared_idempotent_is_not_re_sent_after_it_may_have_run() {
    // Proves the default is the safe one: the write that may have run fails
    // back to the caller after exactly one run.
    let (client, service) = flaky_client().await;
    let status = client.write().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.may_have_executed());
    assert_eq!(service.runs.load(Ordering::SeqCst), 1);
}

/// Both parts of the name overridden, as examples/kv keeps its `KV.*` names.
#[squall::service(name = "KV")]
trait Renamed {
    #[method = "Fetch"]
    async fn read_one(&self, key: String) -> Result<String, Status>;
}

struct Upper;

impl Renamed for Upper {
    async fn read_one(&self, key: String) -> Result<String, Status> {
        Ok(key.to_uppercase())
    }
}

#[tokio::test]
async fn name_overrides_replace_the_service_and_method_parts() {
    // Proves #[squall::service(name)] and #[method] set the wire name, for the
    // server and the client alike.
    let router = RenamedServer::new(Upper).into_router();
    assert_eq!(router.method_names(), ["KV.Fetch"]);
    let addr = serve(router).await;
    let client = RenamedClient::connect(&addr).await.unwrap();
    assert_eq!(client.read_one("abc".into()).await.unwrap(), "ABC");
}

#[test]
fn a_typed_server_registers_beside_other_services_on_one_router() {
    // Proves the generated ServiceDef composes with Router::register and route.
    let router = Router::new()
        .register(RenamedServer::new(Upper))
        .register(StoreServer::new(Memory::default()))
        .route("Other.Ping", |_ctx: Context, (): ()| async {
            Ok::<_, Status>(())
        });
    assert_eq!(router.method_names().len(), 7);
    assert!(router.has_method("KV.Fetch") && router.has_method("Other.Ping"));
}

/// Argument names that generated code might have used for itself.
#[squall::service]
trait Awkward {
    async fn sum(
        &self,
        context: Context,
        ctx: u32,
        options: u32,
        server: u32,
    ) -> Result<u32, Status>;
}

struct Adder;

impl Awkward for Adder {
    async fn sum(&self, _: Context, ctx: u32, options: u32, server: u32) -> Result<u32, Status> {
        Ok(ctx * 100 + options * 10 + server)
    }
}

#[tokio::test]
async fn argument_names_never_collide_with_generated_bindings() {
    // Proves arguments named like the generated code's own variables reach
    // the implementation in order, on both sides.
    let addr = serve(AwkwardServer::new(Adder)).await;
    let client = AwkwardClient::connect(&addr).await.unwrap();
    assert_eq!(client.sum(1, 2, 3).await.unwrap(), 123);
}

#[tokio::test]
async fn a_typed_client_calls_through_a_tower_stack() {
    // Proves the typed client takes any Caller, including a tower stack over a
    // Channel made a Caller again by TowerCaller.
    let addr = serve(StoreServer::new(Memory::default())).await;
    let channel = squall::Channel::connect(&Tcp, &addr, squall::ChannelConfig::default())
        .await
        .unwrap();
    let stack = tower::ServiceBuilder::new()
        .concurrency_limit(4)
        .service(channel);
    let client = StoreClient::new(squall::client::TowerCaller::new(stack));
    assert_eq!(client.add_all(1, 1, 1).await.unwrap(), 3);
}
