//! The timeline report: one self-contained HTML file (inline SVG, CSS and a
//! few lines of script; nothing fetched) that shows what a run did — per-host
//! lanes of calls by outcome, latency percentiles over time, breaker state
//! bands per client × endpoint, fault windows, registry and membership
//! changes, and the verdict table. Hovering a mark shows its trace line.
//!
//! Bounded: at most [`MARKS_MAX`] call marks are drawn (beyond that every
//! n-th, and the page says so), so a long run still makes a page a browser opens.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::scenario::{Scenario, REGISTRY_HOST};
use crate::trace::{Event, EventKind};
use crate::world::RunOutcome;

/// Most call/handler marks drawn.
pub const MARKS_MAX: usize = 20_000;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 150.0;
const LANE: f64 = 36.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Scale {
    end: f64,
}

impl Scale {
    fn x(&self, at: Duration) -> f64 {
        LEFT + at.as_secs_f64() / self.end.max(1e-9) * WIDTH
    }
}

/// A fault window: from a fault to the fault that undoes it (same arguments).
fn fault_windows(events: &[Event], end: Duration) -> Vec<(Duration, Duration, String)> {
    let undo = [
        ("partition ", "heal "),
        ("partition_oneway ", "heal_oneway "),
        ("hold ", "release "),
        ("crash ", "restart "),
        ("silent_death ", "restart "),
        ("leave ", "restart "),
    ];
    let faults: Vec<(Duration, &str)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Fault { description } => Some((e.at, description.as_str())),
            _ => None,
        })
        .collect();
    let mut windows = Vec::new();
    for (i, (at, description)) in faults.iter().enumerate() {
        for (start, stop) in undo {
            let Some(args) = description.strip_prefix(start) else {
                continue;
            };
            let closing = format!("{stop}{args}");
            let until = faults[i + 1..]
                .iter()
                .find(|(_, d)| *d == closing)
                .map_or(end, |(t, _)| *t);
            windows.push((*at, until, description.to_string()));
        }
    }
    windows
}

fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "Ok" => "ok",
        "DeadlineExceeded" => "late",
        _ => "fail",
    }
}

/// Nearest-rank percentile of `sorted`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The report of `outcome` (a run of `scenario`), as one HTML document.
pub fn html(scenario: &Scenario, outcome: &RunOutcome) -> String {
    let events = &outcome.trace.events;
    let end = outcome.simulated.max(Duration::from_millis(1));
    let scale = Scale {
        end: end.as_secs_f64(),
    };
    let mut hosts: Vec<String> = scenario.client_hosts().map(|(_, h)| h.to_owned()).collect();
    hosts.extend(scenario.server_hosts().map(|h| h.name.clone()));
    if scenario.registry.is_some() {
        hosts.push(REGISTRY_HOST.to_owned());
    }
    let lane_of: BTreeMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let marks = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::CallEnd { .. } | EventKind::Executed { .. }
            )
        })
        .count();
    let every = marks.div_ceil(MARKS_MAX).max(1);

    let mut svg = String::new();
    let lanes_height = LANE * hosts.len() as f64;
    let top = 20.0;
    let _ = write!(
        svg,
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}">"#,
        LEFT + WIDTH + 20.0,
        top + lanes_height + 30.0
    );
    // Fault windows, behind everything.
    for (from, to, description) in fault_windows(events, end) {
        let (x1, x2) = (scale.x(from), scale.x(to));
        let _ = write!(
            svg,
            r#"<rect class="fault" x="{x1:.1}" y="{top}" width="{:.1}" height="{lanes_height}"><title>{} .. {}: {}</title></rect>"#,
            (x2 - x1).max(1.0),
            crate::scenario::format_duration(from),
            crate::scenario::format_duration(to),
            escape(&description)
        );
    }
    // Lanes.
    for (i, host) in hosts.iter().enumerate() {
        let y = top + LANE * i as f64;
        let _ = write!(
            svg,
            r#"<g class="lane" data-host="{h}"><rect class="lane-bg" x="{LEFT}" y="{y}" width="{WIDTH}" height="{LANE}"/><text x="4" y="{:.1}">{h}</text></g>"#,
            y + LANE / 2.0 + 4.0,
            h = escape(host)
        );
    }
    // Breaker bands: per client × endpoint, the state between transitions.
    let mut breaker: BTreeMap<(&str, &str), (Duration, &str)> = BTreeMap::new();
    let mut bands = Vec::new();
    for event in events {
        if let EventKind::Breaker { endpoint, to, .. } = &event.kind {
            let key = (event.host.as_str(), endpoint.as_str());
            if let Some((since, state)) = breaker.insert(key, (event.at, to.as_str())) {
                bands.push((key, since, event.at, state));
            }
        }
    }
    for (key, (since, state)) in &breaker {
        bands.push((*key, *since, end, state));
    }
    for ((client, endpoint), from, to, state) in bands {
        if state == "closed" {
            continue;
        }
        let Some(&lane) = lane_of.get(client) else {
            continue;
        };
        let y = top + LANE * lane as f64 + LANE - 6.0;
        let (x1, x2) = (scale.x(from), scale.x(to));
        let _ = write!(
            svg,
            r#"<rect class="breaker {state}" x="{x1:.1}" y="{y:.1}" width="{:.1}" height="5"><title>{client}: breaker for {endpoint} {state} from {}</title></rect>"#,
            (x2 - x1).max(1.0),
            crate::scenario::format_duration(from)
        );
    }
    // Marks: call ends on client lanes (height by latency), handler runs on
    // server lanes, membership and registry changes as diamonds.
    let max_latency = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CallEnd { latency, .. } => Some(*latency),
            _ => None,
        })
        .max()
        .unwrap_or(Duration::from_millis(1))
        .max(Duration::from_millis(1));
    let mut seen = 0usize;
    for event in events {
        let Some(&lane) = lane_of.get(event.host.as_str()) else {
            continue;
        };
        let y0 = top + LANE * lane as f64;
        let x = scale.x(event.at);
        let line = escape(&event.to_string());
        match &event.kind {
            EventKind::CallEnd {
                outcome, latency, ..
            } => {
                seen += 1;
                if seen % every != 0 {
                    continue;
                }
                let share = (latency.as_secs_f64() / max_latency.as_secs_f64()).clamp(0.0, 1.0);
                let y = y0 + 2.0 + (1.0 - share.sqrt()) * (LANE - 12.0);
                let _ = write!(
                    svg,
                    r#"<rect class="mark {}" x="{x:.1}" y="{y:.1}" width="2" height="3"><title>{line}</title></rect>"#,
                    outcome_class(outcome)
                );
            }
            EventKind::Executed { .. } => {
                seen += 1;
                if seen % every != 0 {
                    continue;
                }
                let _ = write!(
                    svg,
                    r#"<rect class="mark exec" x="{x:.1}" y="{:.1}" width="1" height="8"><title>{line}</title></rect>"#,
                    y0 + LANE / 2.0 - 4.0
                );
            }
            EventKind::Endpoints { .. } | EventKind::Registry { .. } | EventKind::Crashed => {
                let _ = write!(
                    svg,
                    r#"<path class="member" d="M{x:.1} {:.1} l4 4 l-4 4 l-4 -4 z"><title>{line}</title></path>"#,
                    y0 + 2.0
                );
            }
            _ => {}
        }
    }
    // Fault instants and the time axis.
    for event in events {
        if let EventKind::Fault { description } = &event.kind {
            let x = scale.x(event.at);
            let _ = write!(
                svg,
                r#"<line class="fault-at" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}"><title>{} fault {}</title></line>"#,
                top + lanes_height,
                crate::scenario::format_duration(event.at),
                escape(description)
            );
        }
    }
    let seconds = end.as_secs().max(1);
    let step = (seconds / 10).max(1);
    for s in (0..=seconds).step_by(step as usize) {
        let x = scale.x(Duration::from_secs(s));
        let _ = write!(
            svg,
            r#"<text class="axis" x="{x:.1}" y="{:.1}">{s}s</text>"#,
            top + lanes_height + 16.0
        );
    }
    svg.push_str("</svg>");

    let latency_svg = latency_chart(events, &scale, end);
    let mut verdicts = String::new();
    for v in &outcome.verdicts {
        let _ = write!(
            verdicts,
            r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            if v.pass { "pass" } else { "fail" },
            if v.pass { "ok" } else { "FAIL" },
            escape(&v.name),
            escape(&v.wanted),
            escape(&v.observed)
        );
    }
    let under_test: String = outcome
        .under_test
        .iter()
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    let sampled = if every > 1 {
        format!("<p class=\"note\">{marks} marks; every {every}th drawn.</p>")
    } else {
        String::new()
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name} seed {seed}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 16px; color: #222; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }}
.lane-bg {{ fill: #fafafa; stroke: #e4e4e4; }}
.fault {{ fill: #f5c542; opacity: .18; }}
.fault-at {{ stroke: #c98a00; stroke-dasharray: 3 3; }}
.mark.ok {{ fill: #2e9e44; }} .mark.fail {{ fill: #d33; }} .mark.late {{ fill: #e68a00; }}
.mark.exec {{ fill: #5a6fd6; }}
.member {{ fill: #8a3ffc; }}
.breaker.open {{ fill: #d33; }} .breaker.half_open {{ fill: #e68a00; }}
.axis {{ font-size: 10px; fill: #666; }}
.p50 {{ stroke: #2e9e44; fill: none; }} .p99 {{ stroke: #d33; fill: none; }}
table {{ border-collapse: collapse; margin-top: 8px; }} td {{ padding: 2px 8px; border-bottom: 1px solid #eee; }}
tr.fail td {{ color: #b00; font-weight: 600; }}
#tip {{ position: fixed; pointer-events: none; background: #222; color: #fff; padding: 3px 6px; font: 12px monospace; display: none; }}
.legend span {{ margin-right: 12px; }}
</style></head>
<body data-status="loading">
<h1>{name} — seed {seed} — {verdict}</h1>
<div>trace {hash} · {events} events · {simulated} simulated</div>
<ul>{under_test}</ul>
<div class="legend"><span style="color:#2e9e44">■ ok</span><span style="color:#d33">■ failed</span><span style="color:#e68a00">■ deadline</span><span style="color:#5a6fd6">▮ handler run</span><span style="color:#8a3ffc">◆ membership/registry/crash</span><span style="color:#c98a00">┆ fault (window shaded)</span><span>breaker bands: red open, orange half-open</span></div>
{sampled}
{svg}
<h2>Latency over time (p50 green, p99 red, per second)</h2>
{latency_svg}
<h2>Verdicts</h2>
<table>{verdicts}</table>
<div id="tip"></div>
<script>
(function () {{
  var errors = [];
  window.addEventListener('error', function (e) {{ errors.push(String(e.message)); }});
  var tip = document.getElementById('tip');
  document.querySelectorAll('svg [class] > title').forEach(function (t) {{
    var mark = t.parentNode;
    mark.addEventListener('mousemove', function (e) {{
      tip.textContent = t.textContent; tip.style.display = 'block';
      tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
    }});
    mark.addEventListener('mouseleave', function () {{ tip.style.display = 'none'; }});
  }});
  var lanes = document.querySelectorAll('#timeline g.lane').length;
  document.body.dataset.lanes = String(lanes);
  document.body.dataset.marks = String(document.querySelectorAll('#timeline .mark').length);
  document.body.dataset.status = errors.length ? 'error: ' + errors.join('; ') : 'ok';
}})();
</script>
</body></html>
"#,
        name = escape(&outcome.scenario),
        seed = outcome.seed,
        verdict = if outcome.passed() { "PASS" } else { "FAIL" },
        hash = outcome.hash(),
        events = events.len(),
        simulated = crate::scenario::format_duration(outcome.simulated),
    )
}

/// p50 and p99 of the latency of calls ending in each second.
fn latency_chart(events: &[Event], scale: &Scale, end: Duration) -> String {
    let seconds = end.as_secs() as usize + 1;
    let mut buckets: Vec<Vec<Duration>> = vec![Vec::new(); seconds];
    for event in events {
        if let EventKind::CallEnd { latency, .. } = &event.kind {
            if let Some(bucket) = buckets.get_mut(event.at.as_secs() as usize) {
                bucket.push(*latency);
            }
        }
    }
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for (s, bucket) in buckets.iter_mut().enumerate() {
        if bucket.is_empty() {
            continue;
        }
        bucket.sort();
        let at = Duration::from_secs(s as u64) + Duration::from_millis(500);
        p50.push((at, percentile(bucket, 50.0)));
        p99.push((at, percentile(bucket, 99.0)));
    }
    let max = p99
        .iter()
        .map(|(_, l)| *l)
        .max()
        .unwrap_or(Duration::from_millis(1));
    let height = 120.0;
    let y = |l: Duration| 10.0 + height - l.as_secs_f64() / max.as_secs_f64().max(1e-9) * height;
    let points = |series: &[(Duration, Duration)]| {
        series
            .iter()
            .map(|(at, l)| format!("{:.1},{:.1}", scale.x(*at), y(*l)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        r#"<svg id="latency" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}"><text class="axis" x="4" y="16">{} (max p99)</text><polyline class="p50" points="{}"/><polyline class="p99" points="{}"/></svg>"#,
        LEFT + WIDTH + 20.0,
        height + 30.0,
        crate::scenario::format_duration(max),
        points(&p50),
        points(&p99)
    )
}
