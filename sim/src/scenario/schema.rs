//! The validated scenario: plain types the runner consumes. Every name here is
//! resolved (groups expanded to hosts), every default applied, every limit checked;
//! the runner never re-validates and never sees a span.
//!
//! Discovery and balancing: [`Scenario::registry`] runs a registry on the host
//! [`REGISTRY_HOST`]; servers register under [`ServerGroup::service`] from
//! [`ServerHost::start_at`]; a client either discovers a service or calls static
//! targets, through its [`ClientGroup::balancer`]. Resilience: [`Resilience`] on
//! each client (fail mode, retry, breaker, budget, hedge), embedding core's own
//! config types, each already `validate()`d.

use std::time::Duration;

use squall::{
    BalancerKind, BreakerConfig, BudgetConfig, Codec, FailMode, HedgePolicy, RetryPolicy,
};

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
    /// The `[registry]` table: when present, a registry runs on host
    /// [`REGISTRY_HOST`], every server registers with it, and clients with a
    /// `service` discover their endpoints through it. `None`: no registry host.
    pub registry: Option<RegistryConfig>,
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

    /// The server hosts that register under `service`, in registration order.
    pub fn instances_of<'s>(&'s self, service: &'s str) -> impl Iterator<Item = &'s ServerHost> {
        self.servers
            .iter()
            .filter(move |g| g.service == service)
            .flat_map(|g| g.hosts.iter())
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

/// The name of the registry's host (reserved: no group may take it). Fault
/// `between`/`from`/`to` may name it when the scenario has a `[registry]`.
pub const REGISTRY_HOST: &str = "registry";

/// `[registry]`: the registry service the harness runs on [`REGISTRY_HOST`].
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryConfig {
    /// Lease time-to-live: an instance whose heartbeats stop is evicted this long
    /// after its last renewal. Default 3s. At most 60s.
    pub ttl: Duration,
    /// How often each server renews its lease. Default `ttl / 3`, so two
    /// heartbeats may be lost before the lease expires. Always below `ttl`.
    pub heartbeat: Duration,
    /// How long a client's watch (long poll) waits for a change before asking
    /// again: bounds how stale a client's view is after a lost notification.
    /// Default 2s. At most 60s.
    pub watch_timeout: Duration,
    /// How long a client's (and a server's registrar's) registry call may take
    /// before it is retried with backoff (key `call_timeout`, default 1s).
    pub call_timeout: Duration,
    /// The registry clients' connection settings (table
    /// `[registry.connection]`; default connect 500ms, keepalive 1s + 1s).
    pub connection: ConnectionConfig,
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
    /// The service name the hosts register under when there is a registry
    /// (key `service`, default `"echo"`). Clients with `service = "echo"` find them.
    pub service: String,
    /// When set, each handler forwards the call to one of these servers before
    /// replying (keys `forward_to`, `forward_method`, `forward_timeout`): the
    /// two-hop topology for deadline propagation.
    pub forward: Option<Forward>,
    /// Key `code = "user"`: the group runs the user's router, plugged in by a
    /// test through [`crate::Simulation::server`]; the built-in echo server
    /// refuses to stand in for it (a scenario about a user's service must not
    /// pass on the echo). Default `"echo"`: the echo server unless plugged.
    pub user_code: bool,
    /// The line of its `group` key, for messages about the group.
    pub line: usize,
}

/// A server handler's onward call: static endpoints, round robin, no retry, the
/// inherited deadline (capped by `timeout` when set).
#[derive(Clone, Debug, PartialEq)]
pub struct Forward {
    /// Server hosts called (groups expanded, duplicates removed, file order;
    /// never empty, never the forwarding group's own hosts, no cycles).
    pub targets: Vec<String>,
    /// `Service.Method` called on them (key `forward_method`, default `"Echo.Echo"`).
    pub method: String,
    /// Extra cap on the onward call (key `forward_timeout`); `None`: only the
    /// deadline inherited from the incoming call bounds it. Added beyond the
    /// contract because the key was asked for and `Forward` had no field for it.
    pub timeout: Option<Duration>,
    /// The hop's connection settings (table `forward_connection`, keys as
    /// `[clients.connection]`; default 1s each).
    pub connection: ConnectionConfig,
    /// The hop's retries (table `forward_retry`, keys as `[clients.retry]`;
    /// default 1 attempt). More than one attempt fails over to another target.
    pub retry: squall::RetryPolicy,
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
    /// When the server starts (binds, and registers when there is a registry):
    /// key `start_at` on the group or per host, default 0. Later than 0 is an
    /// instance joining mid-run. Always before the scenario's `duration`.
    pub start_at: Duration,
}

/// How a server's handler behaves: applied by the harness layer before the
/// router (the built-in echo's or the user's).
#[derive(Clone, Debug, PartialEq)]
pub struct Behaviour {
    /// Service time per call, uniform in the range from the host's seeded RNG. Default 1ms.
    pub latency: LatencyRange,
    /// Fraction of calls the handler fails with `error_code` (0..=1, default 0).
    pub error_rate: f64,
    /// The code of injected failures (key `error_code`, default `Internal`;
    /// any code but `Ok`). They may have executed, as a real handler's would.
    pub error_code: squall::Code,
    /// Calls running at once on the host (key `concurrency_limit`); one more
    /// is refused with `ResourceExhausted`, not executed (a load shedder).
    /// `None`: no limit.
    pub concurrency_limit: Option<u32>,
    /// Load-dependent latency (key `latency_per_call`): each call's service
    /// time grows by this much per call already running on the host, so a
    /// server slows down as it fills up. Default 0.
    pub latency_per_call: Duration,
}

impl Behaviour {
    /// A fixed service time and nothing else.
    pub fn fixed(latency: Duration) -> Behaviour {
        Behaviour {
            latency: LatencyRange::fixed(latency),
            error_rate: 0.0,
            error_code: squall::Code::Internal,
            concurrency_limit: None,
            latency_per_call: Duration::ZERO,
        }
    }
}

/// A group of identical clients, `{name}-1` … `{name}-N`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientGroup {
    /// The group name.
    pub name: String,
    /// The hosts.
    pub hosts: Vec<String>,
    /// Server hosts this client calls (groups expanded, duplicates removed, file
    /// order): static endpoints, balanced by `balancer`. Empty exactly when
    /// `service` is set.
    pub targets: Vec<String>,
    /// The service discovered through the registry (key `service`; requires
    /// `[registry]`). `None`: `targets` are static endpoints. Exactly one of the two
    /// is given in the file.
    pub service: Option<String>,
    /// How calls are spread over the endpoints (key `balancer`, default `round_robin`).
    pub balancer: BalancerKind,
    /// Fail mode, retry, breaker, budget and hedging.
    pub resilience: Resilience,
    /// When set, each call carries the hash key `k{n}` with `n` uniform in
    /// `0..hash_keys` from the client's seeded RNG (key `hash_keys`, 1..=100000):
    /// the workload for `consistent_hash`.
    pub hash_keys: Option<u32>,
    /// Connections per endpoint (key `pool_size`, 1..=64, default 1).
    pub pool_size: usize,
    /// What calls to issue and when.
    pub workload: Workload,
    /// Per-call settings: the overall deadline and the codec.
    pub call: CallConfig,
    /// Per-connection settings.
    pub connection: ConnectionConfig,
    /// Key `code = "user"`: the group runs the user's workload, plugged in by
    /// a test through [`crate::Simulation::client`]; default `"echo"`.
    pub user_code: bool,
    /// The line of its `group` key, for messages about the group.
    pub line: usize,
    /// The line of its `method` (or `mix`) key: where a method the servers do
    /// not serve is reported.
    pub method_line: usize,
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
    /// Whether re-sending a call that may have executed is safe (key
    /// `idempotent` in the mix entry, or at the client's top level with `method`;
    /// default false). Only idempotent calls are retried after they may have run,
    /// and only they are hedged.
    pub idempotent: bool,
}

/// A client's resilience settings: core's own config types, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Resilience {
    /// Where retries go (key `fail_mode`: `failfast`, `failover`, `failtry`;
    /// default `failfast`). `failfast` requires `retry.max_attempts = 1`, and the
    /// other two require more than one attempt.
    pub fail_mode: FailMode,
    /// `[clients.retry]`: `max_attempts` (default 1 = no retries), `backoff`,
    /// `codes` (default the policy's retryable codes).
    pub retry: RetryPolicy,
    /// `[clients.breaker]`, one breaker per endpoint; keys not given take
    /// [`BreakerConfig::default`]. `None` (no table): no breaker.
    pub breaker: Option<BreakerConfig>,
    /// `[clients.budget]`, the retry budget; keys not given take
    /// [`BudgetConfig::default`]. `None` (no table): retries bounded only by `max_attempts`.
    pub budget: Option<BudgetConfig>,
    /// `[clients.hedge]`: backup requests for idempotent methods; keys not given
    /// take [`HedgePolicy::default`]. `None` (no table): no hedging.
    pub hedge: Option<HedgePolicy>,
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
    /// Leave gracefully: deregister from the registry, then drain in-flight calls
    /// and stop (kind `leave`; only with a `[registry]`). A later `restart` brings
    /// the host back and it registers again.
    Leave {
        /// Server hosts.
        hosts: Vec<String>,
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
/// `validate/expectations.rs` and its evaluator in `crate::expect`.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// `min` ≤ ok calls / resolved calls ≤ `max`. An upper bound proves a
    /// fault had an effect. Fails when no call matched.
    SuccessRate {
        /// 0..=1 (default 0 when only `max` is given).
        min: f64,
        /// 0..=1; `None`: no upper bound.
        max: Option<f64>,
    },
    /// Calls that resolved with a failure, within bounds (`failed_calls`): a
    /// lower bound proves a fault had an effect.
    FailedCalls {
        /// Inclusive lower bound.
        min: Option<u64>,
        /// Inclusive upper bound.
        max: Option<u64>,
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
    /// `event`: trace events whose text (`registry.expire instance=server-2`)
    /// contains `text`, recorded on host `on` if given, counted inside the
    /// window: at least `min` (default 1 when neither bound is given), at most `max`.
    Event {
        /// A substring of the event's text form.
        text: String,
        /// Only events recorded on this host.
        on: Option<String>,
        /// At least this many.
        min: Option<u64>,
        /// At most this many.
        max: Option<u64>,
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
    /// At least `min` breaker transitions to `open` for `endpoint` (recorded on
    /// the client hosts the filter admits) inside the window.
    BreakerOpened {
        /// One server host.
        endpoint: String,
        /// Inclusive lower bound on the number of openings (default 1).
        min: u64,
    },
    /// At least one breaker transition to `closed` for `endpoint` inside the window.
    BreakerClosed {
        /// One server host.
        endpoint: String,
    },
    /// Every open period of `endpoint`'s breakers that began inside the window
    /// (from a transition to `open` to the same client's next transition for that
    /// endpoint) lasted at least `min`: the anti-flapping check. Periods still open
    /// at the end of the trace are not judged; fails when no period was judged.
    BreakerMinOpen {
        /// One server host.
        endpoint: String,
        /// Inclusive lower bound on each open period.
        min: Duration,
    },
    /// Attempts per call ≤ `max`, over calls started in the window (counting
    /// every attempt of those calls, hedges included). Fails when no call matched.
    RetryAmplification {
        /// Inclusive bound, at least 1.
        max: f64,
    },
    /// No call (started in the window) ran its handler more than `max` times
    /// (`server.executed` events with that client and call). Fails when no call matched.
    ExecutionsPerCall {
        /// Inclusive bound, at least 1.
        max: u64,
    },
    /// Each hash key's successful calls (started in the window, ended Ok) were
    /// answered by at most `max_endpoints` distinct endpoints (the `call.end`
    /// endpoint). Fails when no keyed call succeeded.
    KeyAffinity {
        /// Inclusive bound, at least 1 (default 1).
        max_endpoints: u64,
    },
    /// For every hash key: if the endpoint of its last successful call started
    /// before `at` differs from that of its first successful call started at or
    /// after `at`, the former was `endpoint` — only that endpoint's keys moved.
    /// Fails when no key was seen on both sides of `at`.
    KeysMovedOnlyFrom {
        /// One server host.
        endpoint: String,
        /// The moment the ring changed (a crash, a leave), inside the window.
        at: Duration,
    },
    /// Every handler run (`server.executed`, on any server, forwarded hops
    /// included) for a call started in the window ended (`server.done`, same
    /// server, client and call) no later than the call's start + its client
    /// group's `timeout` + `slack`.
    HandlersEndByDeadline {
        /// Allowance for ticks and the cancel message's travel.
        slack: Duration,
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
/// max_failed_calls, retry_amplification, executions_per_call, key_affinity,
/// keys_moved_only_from, handlers_end_by_deadline) place a call in the window by
/// its `call.start` time; attempt-based checks (call_count, call_share, no_calls)
/// by the attempt's time; breaker checks by the transition's time.
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
    /// Key `may_have_executed`: call-based checks count only calls whose
    /// `call.end` says this (`false`: failures the client may safely retry;
    /// `true`: successes and failures that may have run). `None`: all calls.
    pub may_have_executed: Option<bool>,
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
