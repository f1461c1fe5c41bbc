//! Server groups, host names and the registry: references resolve to hosts of
//! the right role, names are unique, overrides and start times apply where
//! written, forwarding ends.

use super::*;

#[test]
fn references_to_unknown_hosts_are_rejected_with_a_hint() {
    // Proves a fault, a target and an expectation naming a missing host each fail at their line.
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"srever-1\"\n");
    assert_eq!(
        error,
        "x.toml:19: host: unknown host or group \"srever-1\" (did you mean \"server-1\"?)"
    );
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"server-4\"\n");
    assert_eq!(error, "x.toml:19: host: unknown host or group \"server-4\" (group \"server\" has 3 hosts: server-1..server-3)");
    let error = error_replacing("targets = [\"server\"]", "targets = [\"servers\"]");
    assert_eq!(
        error,
        "x.toml:12: targets: unknown host or group \"servers\" (did you mean \"server\"?)"
    );
    let error =
        error_appending("[[expect]]\nkind = \"call_count\"\nendpoint = \"server-7\"\nmin = 1\n");
    assert!(
        error.starts_with("x.toml:18: endpoint: unknown host or group \"server-7\""),
        "{error}"
    );
}

#[test]
fn hosts_of_the_wrong_role_are_rejected() {
    // Proves clients cannot crash, be targets or be endpoints, and servers are not clients.
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"client-1\"\n");
    assert_eq!(
        error,
        "x.toml:19: host: \"client-1\" is a client (expected a server host or group, or the registry)"
    );
    let error =
        error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nclient = \"server\"\n");
    assert_eq!(
        error,
        "x.toml:19: client: \"server\" is a server (expected a client host or group)"
    );
}

#[test]
fn replicas_outside_the_limit_are_rejected() {
    // Proves 0 and 101 replicas are errors with the allowed range.
    assert_eq!(
        error_replacing("replicas = 3", "replicas = 0"),
        "x.toml:7: replicas = 0 is out of range (replicas must be 1..=100)"
    );
    assert_eq!(
        error_replacing("replicas = 3", "replicas = 101"),
        "x.toml:7: replicas = 101 is out of range (replicas must be 1..=100)"
    );
}

#[test]
fn group_names_must_be_unique_and_plain() {
    // Proves host-name clashes and names turmoil cannot use are refused.
    let error = error_appending("[[servers]]\ngroup = \"client\"\n");
    assert_eq!(error, "x.toml:17: group \"client\": the name \"client\" is already taken (every group and host name must be unique; rename the group)");
    let error = error_appending("[[servers]]\ngroup = \"Server_B\"\n");
    assert!(
        error.starts_with("x.toml:17: invalid group name \"Server_B\""),
        "{error}"
    );
    let error = error_appending("[[servers]]\ngroup = \"registry\"\n");
    assert!(
        error.starts_with("x.toml:17: group name \"registry\" is reserved"),
        "{error}"
    );
}

#[test]
fn per_host_overrides_apply_to_one_host_only() {
    // Proves [servers.hosts.server-2] changes server-2 and nothing else, and a bad host name is refused.
    let s = parse(&BASE.replace(
        "replicas = 3",
        "replicas = 3\n[servers.hosts.server-2]\nerror_rate = 0.5\nweight = 3",
    ))
    .unwrap_or_else(|e| panic!("{e:#}"));
    let rates: Vec<(f64, u32)> = s
        .server_hosts()
        .map(|h| (h.behaviour.error_rate, h.weight))
        .collect();
    assert_eq!(rates, [(0.0, 1), (0.5, 3), (0.0, 1)]);
    let error = error_replacing(
        "replicas = 3",
        "replicas = 3\n[servers.hosts.server-5]\nweight = 3",
    );
    assert!(
        error.starts_with("x.toml:8: [servers.hosts.server-5]: no such host in group \"server\""),
        "{error}"
    );
}

#[test]
fn registry_and_discovery_get_documented_defaults() {
    // Proves [registry] defaults (ttl 3s, heartbeat ttl/3, watch 2s), the default
    // service "echo", balancer round_robin, pool 1, no keys, start_at 0, and that
    // the registry host becomes nameable in faults.
    let s = with_registry(
        "[[faults]]\nat = \"5s\"\nkind = \"partition\"\nbetween = [\"registry\", \"client\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        s.registry,
        Some(RegistryConfig {
            ttl: Duration::from_secs(3),
            heartbeat: Duration::from_secs(1),
            watch_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(1),
            connection: ConnectionConfig {
                connect_timeout: Duration::from_millis(500),
                keepalive_interval: Duration::from_secs(1),
                keepalive_timeout: Duration::from_secs(1),
            },
        })
    );
    assert_eq!(s.servers[0].service, "echo");
    assert_eq!(s.servers[0].forward, None);
    assert_eq!(s.servers[0].hosts[2].start_at, Duration::ZERO);
    let client = &s.clients[0];
    assert_eq!(client.service.as_deref(), Some("echo"));
    assert!(client.targets.is_empty());
    assert_eq!(client.balancer, squall::BalancerKind::RoundRobin);
    assert_eq!((client.pool_size, client.hash_keys), (1, None));
    assert_eq!(s.instances_of("echo").count(), 3);
    let FaultAction::Partition { links } = &s.faults[0].action else {
        panic!("{:?}", s.faults[0])
    };
    assert_eq!(links[0].from, REGISTRY_HOST);
}

#[test]
fn registry_timings_are_checked() {
    // Proves a heartbeat that is not below the ttl, and a ttl past the limit, are refused.
    let error = error_appending("[registry]\nttl = \"2s\"\nheartbeat = \"2s\"\n");
    assert_eq!(error, "x.toml:18: heartbeat 2s is not below ttl 2s (every lease would lapse between renewals; use heartbeat = ttl / 3)");
    let error = error_appending("[registry]\nttl = \"5m\"\n");
    assert!(
        error.starts_with("x.toml:17: ttl 300s is above the 60s limit"),
        "{error}"
    );
}

#[test]
fn forwarding_targets_must_exist_and_must_not_loop() {
    // Proves forward_to is resolved like targets, cannot name its own group,
    // cannot form a cycle, and its companion keys need it.
    let two_groups = "[[servers]]\ngroup = \"backend\"\n";
    let error = error_replacing("replicas = 3", "replicas = 3\nforward_to = [\"bakend\"]");
    assert!(
        error.starts_with("x.toml:8: forward_to: unknown host or group \"bakend\""),
        "{error}"
    );
    let error = error_replacing("replicas = 3", "replicas = 3\nforward_to = [\"server-2\"]");
    assert!(
        error.starts_with("x.toml:8: forward_to: \"server-2\" is in this group"),
        "{error}"
    );
    let cyclic = BASE.replace("replicas = 3", "replicas = 3\nforward_to = [\"backend\"]")
        + two_groups
        + "forward_to = [\"server\"]\n";
    let error = parse(&cyclic).map(|_| ()).unwrap_err().to_string();
    assert!(
        error.starts_with("x.toml:8: forwarding from \"server\" leads back to it"),
        "{error}"
    );
    let error = error_replacing(
        "replicas = 3",
        "replicas = 3\nforward_method = \"Echo.Echo\"",
    );
    assert!(
        error.starts_with("x.toml:8: forward_method is set but forward_to is not"),
        "{error}"
    );
    let chain = BASE.replace(
        "replicas = 3",
        "replicas = 3\nforward_to = [\"backend\"]\nforward_timeout = \"300ms\"",
    ) + two_groups;
    let s = parse(&chain).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        s.servers[0].forward,
        Some(Forward {
            targets: vec!["backend-1".into()],
            method: "Echo.Echo".into(),
            timeout: Some(Duration::from_millis(300)),
            connection: ConnectionConfig {
                connect_timeout: Duration::from_secs(1),
                keepalive_interval: Duration::from_secs(1),
                keepalive_timeout: Duration::from_secs(1),
            },
            retry: squall::RetryPolicy {
                max_attempts: 1,
                ..squall::RetryPolicy::default()
            },
        })
    );
}

#[test]
fn start_at_must_be_inside_the_run_and_precede_lifecycle_faults() {
    // Proves a server that would start at the end is refused, a per-host start_at
    // overrides the group's, and crashing a server before it starts is an error.
    let error = error_replacing("replicas = 3", "replicas = 3\nstart_at = \"30s\"");
    assert!(
        error.starts_with("x.toml:8: start_at 30s is not before the end of the scenario (30s)"),
        "{error}"
    );
    let late = BASE.replace(
        "replicas = 3",
        "replicas = 3\n[servers.hosts.server-3]\nstart_at = \"10s\"",
    );
    let s = parse(&late).unwrap_or_else(|e| panic!("{e:#}"));
    let starts: Vec<Duration> = s.server_hosts().map(|h| h.start_at).collect();
    assert_eq!(
        starts,
        [Duration::ZERO, Duration::ZERO, Duration::from_secs(10)]
    );
    let error = parse(&format!(
        "{late}[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"server-3\"\n"
    ))
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with(
            "x.toml:18: server-3 only starts at 10s (start_at), so it cannot be acted on at 5s"
        ),
        "{error}"
    );
}

#[test]
fn overload_keys_parse_and_an_unknown_error_code_suggests_one() {
    // Proves concurrency_limit, latency_per_call and error_code reach the
    // behaviour, and a misspelt code is refused with a suggestion.
    let text = BASE.replace(
        "replicas = 3",
        "replicas = 3\nconcurrency_limit = 3\nlatency_per_call = \"5ms\"\nerror_code = \"Unavailable\"",
    );
    let s = parse(&text).unwrap_or_else(|e| panic!("{e:#}"));
    let behaviour = &s.servers[0].hosts[0].behaviour;
    assert_eq!(behaviour.concurrency_limit, Some(3));
    assert_eq!(behaviour.latency_per_call, Duration::from_millis(5));
    assert_eq!(behaviour.error_code, squall::Code::Unavailable);
    let text = BASE.replace("replicas = 3", "replicas = 3\nerror_code = \"Unavailabel\"");
    let error = parse(&text).unwrap_err().to_string();
    assert!(error.contains("did you mean \"Unavailable\""), "{error}");
}
