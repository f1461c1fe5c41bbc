//! The network of a real run: every server host listens on its own free port
//! on 127.0.0.1, and every connection from host A to host B goes through the
//! fault proxy of the link A→B (a listener of its own on 127.0.0.1), which
//! applies the link's state as the timeline changes it, in wall-clock time.
//!
//! What each fault does on a real link (and how that differs from turmoil is
//! in `docs/FIDELITY.md`):
//! - **partition** (both ways or one way): new connects hang (the SYN is lost,
//!   as on a real network; turmoil refuses them at once); bytes in flight on
//!   open connections wait in the proxy until the link heals (TCP would
//!   retransmit them), and backpressure reaches the sender.
//! - **hold**: the same, for both directions, until `release`.
//! - **latency**: every chunk of bytes is delivered one sampled latency after
//!   the proxy read it, in order.
//! - **loss**: a lost segment is retransmitted by TCP, so a chunk is delayed
//!   by one retransmission timeout (200 ms of scenario time) with the loss
//!   probability; bytes are never dropped from a stream.
//! - **silent death**: the host's links forward nothing — not even its FIN —
//!   and connects to it hang, until it restarts.
//! - **crash**: the host's sockets close (its runtime is dropped); the proxy
//!   passes the FIN on. Connects to a host that is not listening are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::clock::RealClock;
use crate::host::server::sample;
use crate::scenario::LatencyRange;

/// The retransmission timeout a lost segment costs, in scenario time: Linux's
/// minimum RTO.
const RETRANSMIT_DELAY: Duration = Duration::from_millis(200);

/// Bytes read from a socket at once by a proxy.
const CHUNK_BYTES_MAX: usize = 64 * 1024;

/// Chunks queued in one direction of one proxied connection before the proxy
/// stops reading (backpressure, like a full TCP window).
const CHUNKS_QUEUED_MAX: usize = 64;

/// Proxied connections one link accepts over a run: far above any scenario
/// (clients pool a few connections per endpoint and reconnect after faults).
const CONNECTIONS_PER_LINK_MAX: usize = 100_000;

/// The state of the whole network, changed by the timeline.
#[derive(Debug)]
struct State {
    /// Directed links that drop everything (a partition adds both directions).
    blocked: BTreeSet<(String, String)>,
    /// Links (unordered) holding everything until released.
    held: BTreeSet<(String, String)>,
    /// Hosts that died silently and have not restarted.
    dead: BTreeSet<String>,
    /// Per-link latency (unordered), overriding `latency`.
    link_latency: BTreeMap<(String, String), LatencyRange>,
    /// The network's default latency.
    latency: LatencyRange,
    /// Per-link loss (unordered), overriding `loss`.
    link_loss: BTreeMap<(String, String), f64>,
    /// The network's loss rate.
    loss: f64,
    /// Where each listening host listens.
    listening: BTreeMap<String, SocketAddr>,
    /// The proxy listener of each directed link opened so far.
    proxies: BTreeMap<(String, String), SocketAddr>,
    /// Draws latencies and losses (a real run is not reproducible anyway, but
    /// a seeded stream keeps the harness free of OS randomness).
    rng: squall::rng::Rng,
}

/// A link as an unordered pair.
pub(crate) fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

fn directed(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

impl State {
    /// Whether bytes from `from` to `to` are delivered now.
    fn flows(&self, from: &str, to: &str) -> bool {
        !self.blocked.contains(&directed(from, to))
            && !self.held.contains(&pair(from, to))
            && !self.dead.contains(from)
            && !self.dead.contains(to)
    }

    /// Whether a connect from `from` to `to` completes now (SYN and SYN-ACK).
    fn connects(&self, from: &str, to: &str) -> bool {
        self.flows(from, to) && self.flows(to, from)
    }

    /// The delay of the next chunk from `from` to `to`.
    fn delay(&mut self, from: &str, to: &str) -> Duration {
        let link = pair(from, to);
        let latency = self
            .link_latency
            .get(&link)
            .copied()
            .unwrap_or(self.latency);
        let loss = self.link_loss.get(&link).copied().unwrap_or(self.loss);
        let mut delay = sample(&latency, &mut self.rng);
        if loss > 0.0 && self.rng.gen_bool(loss.min(1.0)) {
            delay += RETRANSMIT_DELAY;
        }
        delay
    }
}

/// The network of one real run, shared by the harness and every host thread.
#[derive(Debug)]
pub struct RealNet {
    state: Mutex<State>,
    /// Bumped on every change, so blocked proxies and connects re-check.
    changed: watch::Sender<u64>,
    /// The harness runtime, where every proxy runs (it outlives host crashes).
    proxies: tokio::runtime::Handle,
    /// The run's clock (scenario time ↔ wall time).
    clock: Arc<RealClock>,
}

impl RealNet {
    /// A network with the scenario's default latency and loss whose proxies
    /// run on `proxies` (the harness runtime).
    pub(crate) fn new(
        latency: LatencyRange,
        loss: f64,
        rng: squall::rng::Rng,
        proxies: tokio::runtime::Handle,
        clock: Arc<RealClock>,
    ) -> Arc<RealNet> {
        Arc::new(RealNet {
            state: Mutex::new(State {
                blocked: BTreeSet::new(),
                held: BTreeSet::new(),
                dead: BTreeSet::new(),
                link_latency: BTreeMap::new(),
                latency,
                link_loss: BTreeMap::new(),
                loss,
                listening: BTreeMap::new(),
                proxies: BTreeMap::new(),
                rng,
            }),
            changed: watch::channel(0).0,
            proxies,
            clock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` to the network state and wakes everything waiting on it.
    pub(crate) fn change(&self, change: impl FnOnce(&mut NetControl<'_>)) {
        change(&mut NetControl {
            state: &mut self.lock(),
        });
        self.changed.send_modify(|version| *version += 1);
    }

    /// Waits until `ready` holds for the network state.
    async fn wait_until(&self, ready: impl Fn(&State) -> bool) {
        let mut changed = self.changed.subscribe();
        loop {
            if ready(&self.lock()) {
                return;
            }
            if changed.changed().await.is_err() {
                // The network is gone (the run ended): never ready.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Records that `host` listens at `addr` (its server bound).
    pub(crate) fn listen(&self, host: &str, addr: SocketAddr) {
        self.lock().listening.insert(host.to_owned(), addr);
    }

    /// Records that `host` no longer listens (it crashed).
    pub(crate) fn unlisten(&self, host: &str) {
        self.lock().listening.remove(host);
    }

    /// Connects `from` to host `to` through the link's proxy: hangs while the
    /// link is partitioned or held (the caller's connect timeout ends it),
    /// refused when `to` is not listening.
    pub(crate) async fn connect(self: &Arc<Self>, from: &str, to: &str) -> io::Result<TcpStream> {
        self.wait_until(|state| state.connects(from, to)).await;
        // A handshake costs a round trip.
        let handshake = {
            let mut state = self.lock();
            state.delay(from, to) + state.delay(to, from)
        };
        tokio::time::sleep(self.clock.to_wall(handshake)).await;
        if !self.lock().listening.contains_key(to) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens on {to}"),
            ));
        }
        let proxy = self.proxy(from, to)?;
        TcpStream::connect(proxy).await
    }

    /// The address of the proxy of link `from → to`, started on first use.
    fn proxy(self: &Arc<Self>, from: &str, to: &str) -> io::Result<SocketAddr> {
        let link = directed(from, to);
        if let Some(addr) = self.lock().proxies.get(&link) {
            return Ok(*addr);
        }
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        self.lock().proxies.insert(link, addr);
        let net = Arc::clone(self);
        let (from, to) = (from.to_owned(), to.to_owned());
        self.proxies.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, from, to, "link proxy cannot listen");
                    return;
                }
            };
            for _ in 0..CONNECTIONS_PER_LINK_MAX {
                let Ok((downstream, _)) = listener.accept().await else {
                    return;
                };
                let net = Arc::clone(&net);
                let (from, to) = (from.clone(), to.clone());
                tokio::spawn(async move { net.relay(downstream, &from, &to).await });
            }
            tracing::warn!(from, to, "link proxy reached its connection bound");
        });
        Ok(addr)
    }

    /// Relays one accepted connection of link `from → to` to `to`'s server.
    async fn relay(self: Arc<Self>, downstream: TcpStream, from: &str, to: &str) {
        let Some(server) = self.lock().listening.get(to).copied() else {
            return; // Crashed since the connect: the client sees EOF.
        };
        let Ok(upstream) = TcpStream::connect(server).await else {
            return;
        };
        let _ = downstream.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (down_read, down_write) = downstream.into_split();
        let (up_read, up_write) = upstream.into_split();
        let forward = Arc::clone(&self).pump(down_read, up_write, from, to);
        let backward = Arc::clone(&self).pump(up_read, down_write, to, from);
        tokio::join!(forward, backward);
    }

    /// Moves bytes from `source` (host `from`'s end) to `sink` (host `to`'s),
    /// through the link's state; passes end-of-stream on as a FIN.
    async fn pump(
        self: Arc<Self>,
        mut source: tokio::net::tcp::OwnedReadHalf,
        mut sink: tokio::net::tcp::OwnedWriteHalf,
        from: &str,
        to: &str,
    ) {
        // `None` marks the end of the stream.
        let (queue, mut queued) =
            mpsc::channel::<(tokio::time::Instant, Option<Vec<u8>>)>(CHUNKS_QUEUED_MAX);
        let reader = {
            let net = Arc::clone(&self);
            let (from, to) = (from.to_owned(), to.to_owned());
            async move {
                let mut last = tokio::time::Instant::now();
                let mut buffer = vec![0; CHUNK_BYTES_MAX];
                loop {
                    let read = source.read(&mut buffer).await.unwrap_or(0);
                    let delay = net.clock.to_wall(net.lock().delay(&from, &to));
                    // In order: a chunk never overtakes the one before it.
                    last = last.max(tokio::time::Instant::now() + delay);
                    let item = (read > 0).then(|| buffer[..read].to_vec());
                    let end = item.is_none();
                    if queue.send((last, item)).await.is_err() || end {
                        return;
                    }
                }
            }
        };
        let writer = async move {
            while let Some((due, chunk)) = queued.recv().await {
                tokio::time::sleep_until(due).await;
                self.wait_until(|state| state.flows(from, to)).await;
                let Some(chunk) = chunk else {
                    let _ = sink.shutdown().await;
                    return;
                };
                if sink.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        };
        tokio::join!(reader, writer);
    }
}

/// The timeline's handle on the network state (see [`RealNet::change`]).
#[derive(Debug)]
pub(crate) struct NetControl<'a> {
    state: &'a mut State,
}

impl NetControl<'_> {
    /// Drops `from → to` and `to → from`.
    pub(crate) fn partition(&mut self, a: &str, b: &str) {
        self.state.blocked.insert(directed(a, b));
        self.state.blocked.insert(directed(b, a));
    }

    /// Drops `from → to` only.
    pub(crate) fn partition_oneway(&mut self, from: &str, to: &str) {
        self.state.blocked.insert(directed(from, to));
    }

    /// Undoes a partition both ways.
    pub(crate) fn repair(&mut self, a: &str, b: &str) {
        self.state.blocked.remove(&directed(a, b));
        self.state.blocked.remove(&directed(b, a));
    }

    /// Undoes a one-way partition.
    pub(crate) fn repair_oneway(&mut self, from: &str, to: &str) {
        self.state.blocked.remove(&directed(from, to));
    }

    /// Holds everything on the link.
    pub(crate) fn hold(&mut self, a: &str, b: &str) {
        self.state.held.insert(pair(a, b));
    }

    /// Delivers what the link held.
    pub(crate) fn release(&mut self, a: &str, b: &str) {
        self.state.held.remove(&pair(a, b));
    }

    /// Sets the link's latency.
    pub(crate) fn latency(&mut self, a: &str, b: &str, latency: LatencyRange) {
        self.state.link_latency.insert(pair(a, b), latency);
    }

    /// Sets the loss rate of the link, or of the network.
    pub(crate) fn loss(&mut self, link: Option<(&str, &str)>, rate: f64) {
        match link {
            Some((a, b)) => {
                self.state.link_loss.insert(pair(a, b), rate);
            }
            None => self.state.loss = rate,
        }
    }

    /// `host` died silently (or, `false`, restarted).
    pub(crate) fn silently_dead(&mut self, host: &str, dead: bool) {
        if dead {
            self.state.dead.insert(host.to_owned());
        } else {
            self.state.dead.remove(host);
        }
    }
}
