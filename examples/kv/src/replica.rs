//! One replica: its data, the coordinator logic for `KV.Put` / `KV.Get`, the
//! peer methods `KV.Replicate` / `KV.Fetch` / `KV.Dump`, and recovery after a
//! restart. Nothing here knows about the simulation except [`router`], which
//! takes its peers' clients from the [`ServerEnv`]; in production the same
//! code would take them from the registry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim::ServerEnv;
use squall::client::Caller;
use squall::{CallOptions, Client, Context, Router, Status};
use tokio::sync::mpsc;

use crate::{KvConfig, Put, Versioned};

/// A client to one peer.
type Peer<C> = Client<C>;

/// One replica's state. Memory only: a crash loses it.
struct Replica<C> {
    config: KvConfig,
    data: Mutex<BTreeMap<String, Versioned>>,
    /// False from a restart until recovery finished: the replica must not
    /// answer reads (its copy may miss acknowledged writes).
    recovered: AtomicBool,
    peers: Vec<Peer<C>>,
}

fn not_ready() -> Status {
    Status::unavailable("replica is recovering after a restart").not_executed()
}

impl<C: Caller> Replica<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Versioned>> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `put` if it is newer than what is held.
    fn store(&self, put: &Put) {
        let mut data = self.lock();
        let newer = data.get(&put.key).is_none_or(|v| v.version < put.version);
        if newer {
            data.insert(
                put.key.clone(),
                Versioned {
                    version: put.version,
                    value: put.value.clone(),
                },
            );
        }
    }

    fn ready(&self) -> Result<(), Status> {
        if self.recovered.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(not_ready())
        }
    }

    /// Sends `method(args)` to every peer on its own task; the answers
    /// arrive on the returned channel as they come (a slow or partitioned peer
    /// delays nobody, and its call finishes in the background).
    fn ask_peers<A, R>(&self, method: &'static str, args: &A) -> mpsc::Receiver<Result<R, Status>>
    where
        A: serde::Serialize,
        R: serde::de::DeserializeOwned + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(self.peers.len().max(1));
        for peer in &self.peers {
            let call = peer.go_with::<A, R>(
                method,
                args,
                CallOptions::new()
                    .timeout(self.config.peer_timeout)
                    .idempotent(),
            );
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(call.await).await;
            });
        }
        rx
    }

    async fn put(self: Arc<Self>, put: Put) -> Result<u64, Status> {
        self.ready()?;
        self.store(&put);
        let mut answers = self.ask_peers::<Put, ()>("KV.Replicate", &put);
        if self.config.ack_before_replicate {
            // THE BUG: the write is acknowledged while it lives on one replica.
            return Ok(put.version);
        }
        let mut stored = 1;
        while stored < self.config.write_quorum {
            match answers.recv().await {
                Some(Ok(())) => stored += 1,
                Some(Err(_)) => {}
                None => break,
            }
        }
        if stored >= self.config.write_quorum {
            Ok(put.version)
        } else {
            // Stored here and maybe elsewhere: it may have executed.
            Err(Status::unavailable(format!(
                "only {stored} of {} replicas stored the write",
                self.config.write_quorum
            )))
        }
    }

    async fn get(self: Arc<Self>, key: String) -> Result<Option<Versioned>, Status> {
        self.ready()?;
        let mut best = self.lock().get(&key).cloned();
        let mut answered = 1;
        let mut answers = self.ask_peers::<String, Option<Versioned>>("KV.Fetch", &key);
        while answered < self.config.read_quorum {
            match answers.recv().await {
                Some(Ok(theirs)) => {
                    answered += 1;
                    if theirs.as_ref().map(|v| v.version) > best.as_ref().map(|v| v.version) {
                        best = theirs;
                    }
                }
                Some(Err(_)) => {}
                None => break,
            }
        }
        if answered >= self.config.read_quorum {
            Ok(best)
        } else {
            Err(Status::unavailable(format!(
                "only {answered} of {} replicas answered the read",
                self.config.read_quorum
            ))
            .not_executed())
        }
    }

    /// After a restart: merge every peer's data, then serve. Every peer must
    /// answer — an acknowledged write may live on just one of them — so a
    /// replica whose peers are unreachable stays unready (safe, not available).
    async fn recover(self: Arc<Self>) {
        loop {
            let mut answers = self.ask_peers::<(), Vec<(String, Versioned)>>("KV.Dump", &());
            let mut dumps = Vec::new();
            while let Some(answer) = answers.recv().await {
                match answer {
                    Ok(dump) => dumps.push(dump),
                    Err(_) => break,
                }
            }
            if dumps.len() == self.peers.len() {
                for (key, versioned) in dumps.into_iter().flatten() {
                    self.store(&Put {
                        key,
                        version: versioned.version,
                        value: versioned.value,
                    });
                }
                self.recovered.store(true, Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The router of one replica. `env.incarnation() > 0` means the host
/// restarted and lost its memory: it recovers before serving reads.
pub fn router(env: &ServerEnv, config: KvConfig) -> Router {
    let peers = env.peers().iter().map(|p| env.client_to(p)).collect();
    let restarted = env.incarnation() > 0;
    let replica = Arc::new(Replica {
        config,
        data: Mutex::new(BTreeMap::new()),
        recovered: AtomicBool::new(!restarted),
        peers,
    });
    if restarted {
        tokio::spawn(Arc::clone(&replica).recover());
    }
    let tracer = env.tracer();
    let (r1, r2, r3, r4, r5) = (
        Arc::clone(&replica),
        Arc::clone(&replica),
        Arc::clone(&replica),
        Arc::clone(&replica),
        replica,
    );
    Router::new()
        .route("KV.Put", move |_ctx: Context, put: Put| {
            Arc::clone(&r1).put(put)
        })
        .route("KV.Get", move |_ctx: Context, key: String| {
            Arc::clone(&r2).get(key)
        })
        .route("KV.Replicate", move |_ctx: Context, put: Put| {
            let replica = Arc::clone(&r3);
            async move {
                replica.store(&put);
                Ok::<_, Status>(())
            }
        })
        .route("KV.Fetch", move |_ctx: Context, key: String| {
            let replica = Arc::clone(&r4);
            async move {
                replica.ready()?;
                Ok::<_, Status>(replica.lock().get(&key).cloned())
            }
        })
        .route("KV.Dump", move |_ctx: Context, (): ()| {
            let replica = Arc::clone(&r5);
            let tracer = tracer.clone();
            async move {
                replica.ready()?;
                let dump: Vec<(String, Versioned)> = replica
                    .lock()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                tracer.record("kv.dump", &[("keys", &dump.len())]);
                Ok::<_, Status>(dump)
            }
        })
}
