//! The validated scenario: plain types the runner consumes. Every name here is
//! resolved (groups expanded to hosts), every default applied, every limit checked;
//! the runner never re-validates and never sees a span.
//!
//! Extension points (documented where they go, so later work slots in without
//! reshaping what exists):
//! - discovery/balance: a top-level `registry: Option<RegistryConfig>` on
//!   [`Scenario`]; `balancer` on [`ClientGroup`] (next to `targets`, which becomes
//!   "static endpoints when there is no registry"); `join`/`leave` in [`FaultAction`].
//! - resilience: `retry`, `breaker`, `hedge` on [`CallConfig`]; new [`Check`]
//!   variants (`BreakerOpenedWithin`, `BreakerClosedAfter`, `RetryAmplification`,
//!   `ExecutionsPerCall`) evaluated in `crate::expect`.

use std::time::Duration;

use squall::Codec;

use super::duration::format_duration;

/// A parsed, validated scenario file.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The path the scenario was read from, as given: the prefix of every message.
    pub source: String,
    /// Short name (`partition-heal`): report headings and test names.
    pub name: String,
    /// What the scenario proves and why its thresholds are what they are.
    pub description: String,
    /// How long the workload and the fault timeline run. Calls still in flight at
    /// the end get [`Scenario::time_limit`] to resolve.
    pub duration: Duration,
    /// Pinned seeds the test suite runs; never empty, no duplicates. The first is the default.
    pub seeds: Vec<u64>,
    /// Defaults for every link.
    pub network: Network,
    /// Server groups, in file order (host registration order, which turmoil's RNG depends on).
    pub servers: Vec<ServerGroup>,
    /// Client groups, in file order.
    pub clients: Vec<ClientGroup>,
    /// The fault timeline, sorted by `at` (stable: same-time faults keep file order).
    pub faults: Vec<Fault>,
    /// The expectations checked on the trace, in file order. The implicit
    /// "every call resolved exactly once" is not listed here; `expect::evaluate` always adds it.
    pub expectations: Vec<Expectation>,
}

impl Scenario {
    /// The default seed (the first pinned one).
    pub fn default_seed(&self) -> u64 {
        // Validation guarantees at least one seed; 0 is never reached.
        self.seeds.first().copied().unwrap_or(0)
    }

    /// Every server host, group by group, in registration order.
    pub fn server_hosts(&self) -> impl Iterator<Item = &ServerHost> {
        self.servers.iter().flat_map(|g| g.hosts.iter())
    }

    /// Every client host with its group, in registration order.
    pub fn client_hosts(&self) -> impl Iterator<Item = (&ClientGroup, &str)> {
        self.clients
            .iter()
            .flat_map(|g| g.hosts.iter().map(move |h| (g, h.as_str())))
    }

    /// The turmoil `simulation_duration`: `duration` plus the longest client
    /// timeout plus one second, so every call started before `duration` can
    /// resolve (by reply, failure or its own timeout) before the run is cut off.
    pub fn time_limit(&self) -> Duration {
        let longest_timeout = self
            .clients
            .iter()
            .map(|c| c.call.timeout)
            .max()
            .unwrap_or_default();
        self.duration + longest_timeout + Duration::from_secs(1)
    }
}

/// Network-wide link defaults (turmoil's builder settings).
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// One-way message latency: turmoil `min_message_latency`/`max_message_latency`
    /// (turmoil draws from an exponential curve between them). Default 1ms..5ms.
    pub latency: LatencyRange,
    /// turmoil `fail_rate`: chance per message that the link fails. Default 0.
    pub loss: f64,
    /// turmoil `repair_rate`: chance per message that a failed link repairs. Default 1.
    pub repair_rate: f64,
}

/// A latency range; `min == max` is a fixed latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyRange {
    /// Lower bound, inclusive.
    pub min: Duration,
    /// Upper bound, inclusive; never below `min`.
    pub max: Duration,
}

impl LatencyRange {
    /// A fixed latency.
    pub fn fixed(d: Duration) -> Self {
        LatencyRange { min: d, max: d }
    }
}

impl std::fmt::Display for LatencyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", format_duration(self.min))
        } else {
            write!(
                f,
                "{}..{}",
                format_duration(self.min),
                format_duration(self.max)
            )
        }
    }
}

/// A group of identical servers, `{name}-1` … `{name}-N`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerGroup {
    /// The group name, usable wherever a host list is expected.
    pub name: String,
    /// The hosts, with per-host overrides already applied.
    pub hosts: Vec<ServerHost>,
}

/// One server host and how its handler behaves at the start of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerHost {
    /// Host name (`server-2`): the turmoil host and the trace's `endpoint`.
    pub name: String,
    /// The group it belongs to.
    pub group: String,
    /// Weight for weighted balancers (1..=1000, default 1). Unused by static round robin.
    pub weight: u32,
    /// Handler behaviour; `server_behaviour` faults change it during the run.
    pub behaviour: Behaviour,
}

/// How a server's handler behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct Behaviour {
    /// Service time per call, uniform in the range from the host's seeded RNG. Default 1ms.
    pub latency: LatencyRange,
    /// Fraction of calls the handler fails with `Internal` (0..=1, default 0).
    pub error_rate: f64,
}

/// A group of identical clients, `{name}-1` … `{name}-N`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientGroup {
    /// The group name.
    pub name: String,
    /// The hosts.
    pub hosts: Vec<String>,
    /// Server hosts this client calls (groups expanded, duplicates removed, file
    /// order). Static endpoints: the runner round-robins across them.
    /// Extension point: with a registry, this becomes the service to discover and
    /// a `balancer: String` field joins it here.
    pub targets: Vec<String>,
    /// What calls to issue and when.
    pub workload: Workload,
    /// Per-call settings. Extension point for retry / breaker / hedge configs.
    pub call: CallConfig,
    /// Per-connection settings.
    pub connection: ConnectionConfig,
}

/// What a client issues and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Open or closed loop.
    pub load: Load,
    /// The methods called and their relative weights; never empty, weights ≥ 1.
    pub mix: Vec<MethodWeight>,
    /// Request payload size in bytes (0..=65536, default 64).
    pub payload_bytes: u32,
    /// When the client starts issuing calls (default 0).
    pub start_at: Duration,
    /// When the client stops issuing calls (default `duration`); in-flight calls
    /// then drain until they resolve.
    pub stop_at: Duration,
}

/// How call arrivals are generated.
#[derive(Clone, Debug, PartialEq)]
pub enum Load {
    /// Open loop: Poisson arrivals at this mean rate from the client's seeded RNG,
    /// regardless of how many calls are outstanding (how real traffic behaves under failure).
    Open {
        /// Mean calls per second, per client host (0 < rate ≤ 10000).
        rate_per_second: f64,
    },
    /// Closed loop: keep exactly this many calls outstanding.
    Closed {
        /// Outstanding calls per client host (1..=1000).
        concurrency: u32,
    },
}

/// One method of a call mix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodWeight {
    /// `Service.Method`.
    pub method: String,
    /// Relative weight (1..=1000).
    pub weight: u32,
}

/// Per-call settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CallConfig {
    /// Overall deadline of each call (default 1s).
    pub timeout: Duration,
    /// Payload codec (default MessagePack).
    pub codec: Codec,
}

/// Per-connection settings (keepalive is what detects silent deaths).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionConfig {
    /// Give up connecting after this long (default 1s). Only `hold` makes a connect
    /// wait in turmoil; a partition refuses at once.
    pub connect_timeout: Duration,
    /// Send a ping after this long without traffic (default 1s).
    pub keepalive_interval: Duration,
    /// Declare the peer dead when a ping is unanswered this long (default 1s).
    pub keepalive_timeout: Duration,
}

/// One entry of the fault timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// When it is applied.
    pub at: Duration,
    /// What is done.
    pub action: FaultAction,
    /// The fault as the file wrote it (`partition client-1 server`): the text of the
    /// trace's `Fault` event.
    pub description: String,
    /// The line of its `[[faults]]` entry, for reports.
    pub line: usize,
}

/// A directed pair of hosts. For symmetric faults the direction does not matter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    /// The sending side (for one-way faults) or one end.
    pub from: String,
    /// The receiving side or the other end.
    pub to: String,
}

/// What a fault does. Host lists are resolved and never empty.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Drop everything both ways (turmoil `partition`): connects are refused at once.
    Partition {
        /// The links.
        links: Vec<Link>,
    },
    /// Drop `from → to` only (turmoil `partition_oneway`).
    PartitionOneway {
        /// The links, directed.
        links: Vec<Link>,
    },
    /// Undo a partition (turmoil `repair`).
    Heal {
        /// The links.
        links: Vec<Link>,
    },
    /// Undo a one-way partition (turmoil `repair_oneway`).
    HealOneway {
        /// The links, directed.
        links: Vec<Link>,
    },
    /// Buffer messages without delivering them (turmoil `hold`): connects hang, so
    /// this is how connect timeouts are exercised.
    Hold {
        /// The links.
        links: Vec<Link>,
    },
    /// Deliver held messages (turmoil `release`).
    Release {
        /// The links.
        links: Vec<Link>,
    },
    /// Stop the hosts (turmoil `crash`): their sockets close cleanly, peers see EOF.
    Crash {
        /// Server hosts.
        hosts: Vec<String>,
    },
    /// Start the hosts again (turmoil `bounce`); on a running host, a crash+restart.
    Restart {
        /// Server hosts.
        hosts: Vec<String>,
    },
    /// A death peers cannot see: partition the hosts from every other host, then
    /// crash them. Only keepalive (or a timeout) tells a peer.
    SilentDeath {
        /// Server hosts.
        hosts: Vec<String>,
    },
    /// Set the one-way latency of links: turmoil `set_link_latency(min)` then
    /// `set_link_max_message_latency(max)`. To end a spike, set the network default again.
    LinkLatency {
        /// The links.
        links: Vec<Link>,
        /// The new latency.
        latency: LatencyRange,
    },
    /// Set the message loss rate: of the links (`set_link_fail_rate`) or, when
    /// `links` is `None`, of the whole network (`set_fail_rate`). Rate 0 ends it.
    Loss {
        /// The links, or the whole network.
        links: Option<Vec<Link>>,
        /// turmoil fail rate, 0..=1.
        rate: f64,
    },
    /// Change how servers' handlers behave; `None` keeps the current value.
    ServerBehaviour {
        /// Server hosts.
        hosts: Vec<String>,
        /// New service time.
        latency: Option<LatencyRange>,
        /// New error rate.
        error_rate: Option<f64>,
    },
}

/// One expectation from the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    /// The `name` the file gave, or one generated from the check and filter
    /// (`success_rate client-1 [10s, 15s)`).
    pub name: String,
    /// What is checked.
    pub check: Check,
    /// Which events count.
    pub filter: Filter,
    /// The line of its `[[expect]]` entry, for reports.
    pub line: usize,
}

/// What an expectation checks. Extension point: add a variant, its parse arm in
/// `validate.rs` and its evaluator in `crate::expect`.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Ok calls / resolved calls ≥ `min`. Fails when no call matched.
    SuccessRate {
        /// 0..=1.
        min: f64,
    },
    /// Nearest-rank percentile of resolved calls' latency within bounds. Fails
    /// when no call matched.
    Latency {
        /// (0, 100]; 100 is the maximum.
        percentile: f64,
        /// The percentile must be at least this (proves a fault had an effect).
        min: Option<Duration>,
        /// The percentile must be at most this.
        max: Option<Duration>,
        /// Which outcomes count.
        outcome: OutcomeFilter,
    },
    /// Attempts sent to `endpoints` within bounds.
    CallCount {
        /// Server hosts (a group counts all of its hosts together).
        endpoints: Vec<String>,
        /// Inclusive lower bound.
        min: Option<u64>,
        /// Inclusive upper bound.
        max: Option<u64>,
    },
    /// Attempts sent to `endpoints` as a share of all matching attempts. Fails when none matched.
    CallShare {
        /// Server hosts.
        endpoints: Vec<String>,
        /// Inclusive lower bound, 0..=1.
        min: Option<f64>,
        /// Inclusive upper bound, 0..=1.
        max: Option<f64>,
    },
    /// No attempt sent to `endpoints` (in the filter's window, which is required).
    NoCalls {
        /// Server hosts.
        endpoints: Vec<String>,
    },
    /// At most `max` calls resolved with a failure.
    MaxFailedCalls {
        /// Inclusive bound.
        max: u64,
    },
}

/// Which resolved calls a latency expectation looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeFilter {
    /// Every resolved call (default): a call that hangs until its timeout counts.
    Any,
    /// Successful calls only.
    Ok,
    /// Failed calls only (how fast failures are reported).
    Failed,
}

/// Which events an expectation counts. Call-based checks (success_rate, latency,
/// max_failed_calls) place a call in the window by its `call.start` time;
/// attempt-based checks (call_count, call_share, no_calls) by the attempt's time.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Filter {
    /// Only calls made by these client hosts (`None`: all clients).
    pub clients: Option<Vec<String>>,
    /// Only calls of this `Service.Method`.
    pub method: Option<String>,
    /// Window start, inclusive (default 0).
    pub from: Duration,
    /// Window end, exclusive (`None`: the end of the run, drain included).
    pub to: Option<Duration>,
}

impl Filter {
    /// Whether `at` falls in `[from, to)`.
    pub fn contains(&self, at: Duration) -> bool {
        at >= self.from && self.to.is_none_or(|to| at < to)
    }

    /// Whether calls from client host `host` count.
    pub fn admits_client(&self, host: &str) -> bool {
        self.clients
            .as_ref()
            .is_none_or(|c| c.iter().any(|h| h == host))
    }
}
