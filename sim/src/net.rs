//! The turmoil implementation of squall's [`Transport`]: the unchanged core runs
//! over the simulated network. Connection attempts are recorded in the trace.
//!
//! Every connection is registered in the run's [`Sockets`], so a crash closes
//! the host's connections in a deterministic order (see [`crate::sockets`]).
//!
//! In a real-TCP run (`sim run --real`, [`crate::Simulation::run_real`]) the
//! same transport connects over loopback through each link's fault proxy
//! instead ([`crate::real`]); names and trace events are the same.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use squall::transport::{Connection, Listener, Transport};

use crate::real::RealNet;
use crate::recorder::Recorder;
use crate::sockets::Sockets;
pub use crate::sockets::{SimReader, SimWriter};
use crate::trace::EventKind;

/// The port every simulated server listens on.
pub const SERVER_PORT: u16 = 7000;

/// turmoil's network, seen from one host.
#[derive(Clone, Debug)]
pub struct SimTransport {
    /// The host this transport belongs to (for trace events).
    host: String,
    /// Where connection events go.
    recorder: Recorder,
    /// The real network, in a real-TCP run.
    real: Option<Arc<RealNet>>,
}

impl SimTransport {
    /// The transport of `host`.
    pub fn new(host: &str, recorder: Recorder) -> SimTransport {
        SimTransport {
            host: host.to_owned(),
            real: recorder.real_net().cloned(),
            recorder,
        }
    }
}

/// The host part of an address (`server-1` of `server-1:7000`), for trace events.
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

/// Records `conn.failed … reason="TimedOut …"` for a connect dropped before
/// it resolved (the caller's connect timeout fired).
struct AbandonedConnect<'a> {
    recorder: &'a Recorder,
    host: &'a str,
    /// `Some` while the connect is pending.
    peer: Option<String>,
}

impl Drop for AbandonedConnect<'_> {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            // Inside a host only: a crash drops pending connects from outside
            // the simulation (in a real run: while tearing the host down),
            // which is not a connect timeout.
            let in_host = turmoil::sim_elapsed().is_some()
                || (crate::real::clock::is_real() && !crate::real::clock::tearing_down());
            if in_host {
                self.recorder.record(
                    self.host,
                    EventKind::ConnectFailed {
                        peer,
                        reason: "TimedOut (the caller gave up waiting for the connect)".to_owned(),
                    },
                );
            }
        }
    }
}

/// The listener underneath a [`SimListener`].
enum Bound {
    Sim(turmoil::net::TcpListener),
    Real(tokio::net::TcpListener),
}

/// A bound simulated listener.
pub struct SimListener {
    /// turmoil's listener, or a real one.
    inner: Bound,
    /// The host, to register accepted connections under.
    host: String,
    /// Where accepted connections are registered.
    sockets: Sockets,
}

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimListener")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}
impl Transport for SimTransport {
    type Reader = SimReader;
    type Writer = SimWriter;
    type Listener = SimListener;

    async fn connect(&self, addr: &str) -> io::Result<Connection<SimReader, SimWriter>> {
        let peer = host_of(addr).to_owned();
        // A connect the caller gives up on (its connect timeout; turmoil's
        // connects hang under `hold` or to a crashed host) is dropped before
        // it resolves: the guard records it, so timeouts are traced too.
        let mut abandoned = AbandonedConnect {
            recorder: &self.recorder,
            host: &self.host,
            peer: Some(peer.clone()),
        };
        let result = match &self.real {
            None => turmoil::net::TcpStream::connect(addr)
                .await
                .and_then(|stream| {
                    let peer = stream.peer_addr()?;
                    Ok((self.recorder.sockets().open(&self.host, stream), peer))
                }),
            Some(net) => net.connect(&self.host, &peer).await.and_then(|stream| {
                let peer = stream.peer_addr()?;
                Ok((Sockets::real(stream), peer))
            }),
        };
        abandoned.peer = None;
        match result {
            Ok(((reader, writer), peer_addr)) => {
                self.recorder
                    .record(&self.host, EventKind::Connected { peer });
                Ok(Connection {
                    reader,
                    writer,
                    peer: peer_addr,
                })
            }
            Err(error) => {
                self.recorder.record(
                    &self.host,
                    EventKind::ConnectFailed {
                        peer,
                        reason: format!("{:?} ({error})", error.kind()),
                    },
                );
                Err(error)
            }
        }
    }

    async fn bind(&self, addr: &str) -> io::Result<SimListener> {
        let inner = match &self.real {
            None => Bound::Sim(turmoil::net::TcpListener::bind(addr).await?),
            Some(net) => {
                // Every host on loopback, each on a free port (parallel runs
                // never clash); peers reach it through their links' proxies.
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                net.listen(&self.host, listener.local_addr()?);
                Bound::Real(listener)
            }
        };
        Ok(SimListener {
            inner,
            host: self.host.clone(),
            sockets: self.recorder.sockets().clone(),
        })
    }
}

impl Listener for SimListener {
    type Reader = SimReader;
    type Writer = SimWriter;

    async fn accept(&mut self) -> io::Result<Connection<SimReader, SimWriter>> {
        let ((reader, writer), peer) = match &mut self.inner {
            Bound::Sim(inner) => {
                let (stream, peer) = inner.accept().await?;
                (self.sockets.open(&self.host, stream), peer)
            }
            Bound::Real(inner) => {
                let (stream, peer) = inner.accept().await?;
                let _ = stream.set_nodelay(true);
                (Sockets::real(stream), peer)
            }
        };
        Ok(Connection {
            reader,
            writer,
            peer,
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            Bound::Sim(inner) => inner.local_addr(),
            Bound::Real(inner) => inner.local_addr(),
        }
    }
}

/// The address of server host `host` inside the simulation (`kv-1:7000`):
/// every simulated server listens on [`SERVER_PORT`].
pub fn addr_of(host: &str) -> String {
    format!("{host}:{SERVER_PORT}")
}

/// The address a simulated server binds.
pub fn bind_addr() -> String {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)).to_string()
}
