//! A user's service outside the squall workspace: a counter whose `Counter.Add`
//! carries an idempotency id, so a retried add (its reply lost, the call
//! re-sent) is counted once. Its "disk" survives crashes: the simulation's
//! per-host durable state ([`sim::ServerEnv::durable`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sim::{ClientEnv, RunView, ServerEnv};
use squall::{CallOptions, Context, Router, Status};

/// `Counter.Add`'s argument.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Add {
    /// Unique per logical add: the server applies each id once.
    pub id: String,
    /// How much to add.
    pub amount: u64,
}

/// The counter's disk: the total and the ids applied.
#[derive(Debug, Default)]
pub struct Disk {
    inner: Mutex<(u64, BTreeSet<String>)>,
}

impl Disk {
    /// The total and the ids applied so far.
    pub fn read(&self) -> (u64, BTreeSet<String>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Adds the workload had acknowledged (id, amount), for the invariant.
#[derive(Debug, Default)]
pub struct Acked {
    inner: Mutex<Vec<(String, u64)>>,
}

/// The counter's router. With `dedup = false` (the bug) a retried add counts twice.
pub fn router(env: &ServerEnv, dedup: bool) -> Router {
    let disk: Arc<Disk> = env.durable();
    Router::new().route("Counter.Add", move |_ctx: Context, add: Add| {
        let disk = Arc::clone(&disk);
        async move {
            let mut state = disk.inner.lock().unwrap_or_else(|p| p.into_inner());
            let first_time = state.1.insert(add.id);
            if first_time || !dedup {
                state.0 += add.amount;
            }
            Ok::<_, Status>(state.0)
        }
    })
}

/// Each client host adds 1 under a fresh id at the scenario's load.
pub async fn workload(env: ClientEnv) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let op_env = env.clone();
    env.drive(move || {
        let (env, next) = (op_env.clone(), Arc::clone(&next));
        async move {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let add = Add {
                id: format!("{}/{n}", env.host()),
                amount: 1,
            };
            let options = CallOptions::new().idempotent();
            let result: Result<u64, Status> =
                env.client().call_with("Counter.Add", &add, options).await;
            if result.is_ok() {
                let acked: Arc<Acked> = env.shared();
                acked
                    .inner
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((add.id, add.amount));
            }
        }
    })
    .await;
}

/// Each add is counted exactly once: the total equals the number of distinct
/// ids applied (all adds are 1), and every acknowledged id was applied.
pub fn counted_once(view: &RunView<'_>) -> Result<(), String> {
    let acked: Arc<Acked> = view.shared();
    let acked = acked
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (total, applied) = view.durable::<Disk>("counter-1").read();
    if acked.is_empty() {
        return Err("no add was acknowledged: the check proves nothing".into());
    }
    if let Some((id, _)) = acked.iter().find(|(id, _)| !applied.contains(id)) {
        return Err(format!("add {id} was acknowledged but never applied"));
    }
    if total != applied.len() as u64 {
        return Err(format!(
            "total {total} but {} distinct adds applied: {} counted twice",
            applied.len(),
            total.saturating_sub(applied.len() as u64)
        ));
    }
    Ok(())
}
