//! The client side of the test: each client host writes its own keys (with
//! growing versions) and reads everyone's, at the scenario's load, through the
//! scenario's client (balancer, retries). Every acknowledged write and every
//! read goes into the run's [`History`], which [`no_stale_reads`] checks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use sim::{ClientEnv, RunView, SimCaller};
use squall::Status;

use crate::{KvClient, Put, Versioned};

/// Keys each client host owns.
pub const KEYS_PER_CLIENT: u64 = 8;

/// An acknowledged write.
#[derive(Clone, Debug)]
pub struct Write {
    /// The key.
    pub key: String,
    /// Its version.
    pub version: u64,
    /// When the writer received the acknowledgement (simulated).
    pub acked_at: Duration,
}

/// A successful read.
#[derive(Clone, Debug)]
pub struct Read {
    /// The reading host.
    pub client: String,
    /// The key.
    pub key: String,
    /// The version returned (0: not found).
    pub version: u64,
    /// When the read was issued (simulated).
    pub started_at: Duration,
}

/// Every acknowledged write and successful read of one run, in completion order.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<(Vec<Write>, Vec<Read>)>,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Write>, Vec<Read>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writes and reads so far.
    pub fn snapshot(&self) -> (Vec<Write>, Vec<Read>) {
        self.lock().clone()
    }

    /// A key some client has written, or `None` before the first write.
    fn written_key(&self, pick: usize) -> Option<String> {
        let history = self.lock();
        let writes = &history.0;
        (!writes.is_empty()).then(|| writes[pick % writes.len()].key.clone())
    }
}

/// The invariant: no read returns a version older than one acknowledged
/// before the read started (linearizable reads of a single-writer register).
pub fn no_stale_reads(view: &RunView<'_>) -> Result<(), String> {
    let (writes, reads) = view.shared::<History>().snapshot();
    if reads.is_empty() {
        return Err("no read succeeded: the check proves nothing".into());
    }
    // Per key, the acknowledged writes sorted by acknowledgement time.
    let mut acked: BTreeMap<&str, Vec<(Duration, u64)>> = BTreeMap::new();
    for w in &writes {
        acked
            .entry(&w.key)
            .or_default()
            .push((w.acked_at, w.version));
    }
    for list in acked.values_mut() {
        list.sort();
    }
    let mut stale = Vec::new();
    for r in &reads {
        let newest_acked = acked
            .get(r.key.as_str())
            .into_iter()
            .flatten()
            .take_while(|(at, _)| *at < r.started_at)
            .map(|(_, version)| *version)
            .max();
        if let Some(newest) = newest_acked.filter(|&v| r.version < v) {
            stale.push(format!(
                "{} read {} at {:?} and got version {} though version {newest} was acknowledged before",
                r.client, r.key, r.started_at, r.version
            ));
        }
    }
    match stale.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} stale reads of {} ({} acknowledged writes); first: {first}",
            stale.len(),
            reads.len(),
            writes.len()
        )),
    }
}

/// One operation: a write of one of this host's keys (half the time) or a
/// read of any written key.
async fn operation(
    env: ClientEnv,
    kv: KvClient<SimCaller>,
    rng: Arc<Mutex<squall::rng::Rng>>,
    versions: Arc<AtomicU64>,
) {
    let history = env.shared::<History>();
    let (write, pick) = {
        let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
        (rng.gen_bool(0.5), rng.gen_range(0..u64::MAX))
    };
    if write {
        let put = Put {
            key: format!("{}/k{}", env.host(), pick % KEYS_PER_CLIENT),
            version: versions.fetch_add(1, Ordering::Relaxed) + 1,
            value: format!("{}@{}", env.host(), env.now().as_millis()),
        };
        let result: Result<u64, Status> = kv.put(put.clone()).await;
        if result.is_ok() {
            env.tracer()
                .record("kv.put", &[("key", &put.key), ("version", &put.version)]);
            history.lock().0.push(Write {
                key: put.key,
                version: put.version,
                acked_at: env.now(),
            });
        }
    } else {
        let key = history
            .written_key(pick as usize)
            .unwrap_or_else(|| format!("{}/k0", env.host()));
        let started_at = env.now();
        let result: Result<Option<Versioned>, Status> = kv.get(key.clone()).await;
        if let Ok(found) = result {
            let version = found.map_or(0, |v| v.version);
            env.tracer()
                .record("kv.get", &[("key", &key), ("version", &version)]);
            history.lock().1.push(Read {
                client: env.host().to_owned(),
                key,
                version,
                started_at,
            });
        }
    }
}

/// The workload of one client host: [`operation`]s at the scenario's load.
pub async fn run(env: ClientEnv) {
    let rng = Arc::new(Mutex::new(env.rng("kv")));
    let versions = Arc::new(AtomicU64::new(0));
    // The scenario's client (balancer, retries, breakers), typed.
    let kv = KvClient::from_client(env.client().clone());
    let op_env = env.clone();
    env.drive(move || {
        operation(
            op_env.clone(),
            kv.clone(),
            Arc::clone(&rng),
            Arc::clone(&versions),
        )
    })
    .await;
}
