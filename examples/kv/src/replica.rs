//! One replica: its data, the coordinator logic for `KV.Put` / `KV.Get`, the
//! peer methods `KV.Replicate` / `KV.Fetch` / `KV.Dump`, and recovery after a
//! restart. Nothing here knows about the simulation except [`router`], which
//! takes its peers' clients from the [`ServerEnv`]; in production the same
//! code would take them from the registry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim::{ServerEnv, Tracer};
use squall::client::{CallHandle, Caller};
use squall::{CallOptions, Context, Router, Status};
use tokio::sync::mpsc;

use crate::{Kv, KvConfig, KvServer, Peer, PeerCall, PeerClient, PeerServer, Put, Versioned};

/// One replica's state. Memory only: a crash loses it.
struct Replica<C> {
    config: KvConfig,
    data: Mutex<BTreeMap<String, Versioned>>,
    /// False from a restart until recovery finished: the replica must not
    /// answer reads (its copy may miss acknowledged writes).
    recovered: AtomicBool,
    peers: Vec<PeerClient<C>>,
    /// Where `KV.Dump` records how many keys it sent.
    tracer: Tracer,
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

    /// Starts `call` on every peer, each bounded by the peer timeout, and
    /// awaits each on its own task; the answers arrive on the returned channel
    /// as they come (a slow or partitioned peer delays nobody, and its call
    /// finishes in the background).
    fn ask_peers<R, F>(&self, call: F) -> mpsc::Receiver<Result<R, Status>>
    where
        R: serde::de::DeserializeOwned + Send + 'static,
        F: Fn(PeerCall<'_, C>) -> CallHandle<C::Future, R>,
    {
        let (tx, rx) = mpsc::channel(self.peers.len().max(1));
        for peer in &self.peers {
            let options = CallOptions::new().timeout(self.config.peer_timeout);
            let call = call(peer.with_options(options));
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(call.await).await;
            });
        }
        rx
    }

    /// A coordinated put: stored here, then on `write_quorum - 1` peers.
    async fn coordinate_put(&self, put: Put) -> Result<u64, Status> {
        self.ready()?;
        self.store(&put);
        let mut answers = self.ask_peers(|peer| peer.replicate(put.clone()));
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

    /// A coordinated read: the newest of `read_quorum` replicas' copies.
    async fn coordinate_get(&self, key: String) -> Result<Option<Versioned>, Status> {
        self.ready()?;
        let mut best = self.lock().get(&key).cloned();
        let mut answered = 1;
        let mut answers = self.ask_peers(|peer| peer.fetch(key.clone()));
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
            let mut answers = self.ask_peers(|peer| peer.dump());
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

impl<C: Caller> Kv for Replica<C> {
    async fn put(&self, _ctx: Context, put: Put) -> Result<u64, Status> {
        self.coordinate_put(put).await
    }

    async fn get(&self, _ctx: Context, key: String) -> Result<Option<Versioned>, Status> {
        self.coordinate_get(key).await
    }
}

impl<C: Caller> Peer for Replica<C> {
    async fn replicate(&self, put: Put) -> Result<(), Status> {
        self.store(&put);
        Ok(())
    }

    async fn fetch(&self, key: String) -> Result<Option<Versioned>, Status> {
        self.ready()?;
        Ok(self.lock().get(&key).cloned())
    }

    async fn dump(&self) -> Result<Vec<(String, Versioned)>, Status> {
        self.ready()?;
        let dump: Vec<(String, Versioned)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.tracer.record("kv.dump", &[("keys", &dump.len())]);
        Ok(dump)
    }
}

/// The router of one replica. `env.incarnation() > 0` means the host
/// restarted and lost its memory: it recovers before serving reads.
pub fn router(env: &ServerEnv, config: KvConfig) -> Router {
    let peers = env
        .peers()
        .iter()
        .map(|p| PeerClient::from_client(env.client_to(p)))
        .collect();
    let restarted = env.incarnation() > 0;
    let replica = Arc::new(Replica {
        config,
        data: Mutex::new(BTreeMap::new()),
        recovered: AtomicBool::new(!restarted),
        peers,
        tracer: env.tracer(),
    });
    if restarted {
        tokio::spawn(Arc::clone(&replica).recover());
    }
    Router::new()
        .register(KvServer::new(Arc::clone(&replica)))
        .register(PeerServer::new(replica))
}
