//! The HTML timeline: one self-contained page with a lane per host, the
//! verdicts, fault windows and breaker bands of the run it shows.

use sim::{run, Scenario};

fn scenario(file: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    Scenario::from_file(path).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn the_report_draws_a_lane_per_host_with_faults_breakers_and_verdicts() {
    let scenario = scenario("breaker-recovery.toml");
    let outcome = run(&scenario, 1).unwrap();
    let page = sim::report::html(&scenario, &outcome);
    let hosts = scenario.client_hosts().count() + scenario.server_hosts().count();
    assert_eq!(page.matches(r#"<g class="lane""#).count(), hosts);
    assert!(
        page.contains(r#"class="breaker open""#),
        "breaker bands drawn"
    );
    assert!(page.contains(r#"class="fault-at""#), "fault instants drawn");
    for verdict in &outcome.verdicts {
        let name = verdict
            .name
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        assert!(page.contains(&name), "verdict {} listed", verdict.name);
    }
    // Self-contained: nothing is fetched (the only URL is the SVG namespace).
    let urls = page.matches("http").count();
    let namespaces = page.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(urls, namespaces, "the page fetches nothing");
    // Every mark carries its trace line for hovering.
    let marks: Vec<&str> = page.split(r#"<rect class="mark"#).skip(1).collect();
    assert!(marks.len() > 100, "{} marks", marks.len());
    for mark in marks {
        let body = &mark[..mark.find("</rect>").expect("a closed mark")];
        assert!(
            body.contains("<title>"),
            "a mark without its trace line: {body}"
        );
    }
}

#[test]
fn fault_windows_span_from_a_fault_to_the_fault_that_undoes_it() {
    let scenario = scenario("partition-heal.toml");
    let outcome = run(&scenario, 1).unwrap();
    let page = sim::report::html(&scenario, &outcome);
    assert!(
        page.contains(r#"<rect class="fault""#),
        "a partition window is shaded"
    );
    assert!(page.contains("partition "), "{}", &page[..200]);
}
