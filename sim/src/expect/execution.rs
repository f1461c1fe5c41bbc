//! What servers actually ran, against what clients were told and sent:
//! retry_amplification, executions_per_call, handlers_end_by_deadline, and the
//! implicit "no call reported not-executed was executed".
//!
//! A handler run is joined to its call by (client host, call number), which the
//! server records from the request's metadata — on every hop: the runner
//! propagates the original caller through a forwarding server.

use std::time::Duration;

use super::{examples, Index, Verdict, OK};
use crate::scenario::{format_duration, Filter};

impl Index<'_> {
    /// The implicit check: a call that failed with `may_have_executed = false`
    /// promised its caller the handler never ran, which is what makes retrying a
    /// non-idempotent call safe. Any `server.executed` naming it breaks that
    /// promise — unless that run itself declared "not executed" (`server.done
    /// … outcome=refused`: a handler that refused before doing anything), which
    /// is the user's promise, not the framework's.
    pub(super) fn not_executed_means_not_executed(&self) -> Verdict {
        let mut checked = 0u64;
        let mut broken = Vec::new();
        for (&(client, call), record) in &self.calls {
            let Some(end) = record.ends.first() else {
                continue;
            };
            if end.outcome == OK || end.may_have_executed {
                continue;
            }
            checked += 1;
            let runs = self.executions.get(&(client, call)).copied().unwrap_or(0);
            let refused = self.refusals.get(&(client, call)).copied().unwrap_or(0);
            let runs = runs.saturating_sub(refused);
            if runs > 0 {
                broken.push(format!("{client}#{call} ran {runs}x"));
            }
        }
        let pass = broken.is_empty();
        let observed = if pass {
            format!("{checked} calls reported not executed, none ran")
        } else {
            format!(
                "{} of {checked} calls reported not executed ran anyway ({})",
                broken.len(),
                examples(&broken)
            )
        };
        Verdict {
            name: "no call reported not-executed was executed".into(),
            wanted: "0 server.executed for failed calls with may_have_executed=false".into(),
            observed,
            pass,
            line: None,
        }
    }

    /// Attempts (hedges included) of the calls started in the window, per call.
    pub(super) fn retry_amplification(&self, filter: &Filter, max: f64) -> (String, String, bool) {
        let (mut calls, mut attempts) = (0u64, 0u64);
        for (key, _) in self.calls(filter) {
            calls += 1;
            attempts += u64::from(self.attempts_per_call.get(key).copied().unwrap_or(0));
        }
        let wanted = format!("<= {max} attempts per call");
        if calls == 0 {
            return (wanted, "no calls matched".into(), false);
        }
        let ratio = attempts as f64 / calls as f64;
        (
            wanted,
            format!("{ratio:.4} ({attempts} attempts for {calls} calls)"),
            ratio <= max,
        )
    }

    /// `server.executed` events per call started in the window, on any server.
    pub(super) fn executions_per_call(&self, filter: &Filter, max: u64) -> (String, String, bool) {
        let mut calls = 0u64;
        let mut over = Vec::new();
        let mut most: Option<(u32, &str, u64)> = None;
        for (&(client, call), _) in self.calls(filter) {
            calls += 1;
            let runs = self.executions.get(&(client, call)).copied().unwrap_or(0);
            if most.is_none_or(|(m, ..)| runs > m) {
                most = Some((runs, client, call));
            }
            if u64::from(runs) > max {
                over.push(format!("{client}#{call} ran {runs}x"));
            }
        }
        let wanted = format!("<= {max} executions per call");
        let Some((runs, client, call)) = most else {
            return (wanted, "no calls matched".into(), false);
        };
        let observed = if over.is_empty() {
            format!("at most {runs} ({client}#{call}) over {calls} calls")
        } else {
            format!("{} of {calls} calls over ({})", over.len(), examples(&over))
        };
        (wanted, observed, over.is_empty())
    }

    /// Every handler run for a call started in the window ended (same server,
    /// client and call) by the call's start + its client's timeout + `slack`.
    pub(super) fn handlers_end_by_deadline(
        &self,
        filter: &Filter,
        slack: Duration,
    ) -> (String, String, bool) {
        let wanted = format!(
            "every handler done by call start + timeout + {}",
            format_duration(slack)
        );
        let (mut judged, mut late, mut unended, mut unknown) = (0u64, vec![], vec![], vec![]);
        let mut tightest_margin: Option<Duration> = None;
        for (&(server, client, call), runs) in &self.runs {
            if runs.executed == 0 || !filter.admits_client(client) {
                continue;
            }
            let Some(record) = self.calls.get(&(client, call)) else {
                unknown.push(format!("{client}#{call} on {server}"));
                continue;
            };
            let Some(start) = record.start else {
                unknown.push(format!("{client}#{call} on {server}"));
                continue;
            };
            if !filter.contains(start) || !super::method_matches(filter, record.method) {
                continue;
            }
            let Some(timeout) = self.timeouts.get(client) else {
                unknown.push(format!("{client}#{call} on {server}"));
                continue;
            };
            judged += 1;
            let deadline = start + *timeout + slack;
            // Runs without a `server.done` ended when their server crashed
            // (a crash records none); only runs no crash explains never ended.
            let mut ends = runs.done.clone();
            let missing = (runs.executed as usize).saturating_sub(runs.done.len());
            if missing > 0 {
                let last_run = runs.executed_at.iter().max().copied().unwrap_or_default();
                match self
                    .crashes
                    .get(server)
                    .and_then(|c| c.iter().find(|&&at| at >= last_run))
                {
                    Some(&crash) => ends.extend(std::iter::repeat_n(crash, missing)),
                    None => unended.push(format!("{client}#{call} on {server}")),
                }
            }
            for &done in &ends {
                if done > deadline {
                    late.push(format!(
                        "{client}#{call} on {server} {:?} late",
                        done - deadline
                    ));
                } else {
                    let margin = deadline - done;
                    tightest_margin = Some(tightest_margin.map_or(margin, |m| m.min(margin)));
                }
            }
        }
        if judged == 0 && unknown.is_empty() {
            return (wanted, "no handler runs matched".into(), false);
        }
        let problems: Vec<String> = [
            ("ended after the deadline", &late),
            ("never ended", &unended),
            ("without a known call or client", &unknown),
        ]
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(what, list)| format!("{} {what} ({})", list.len(), examples(list)))
        .collect();
        if problems.is_empty() {
            let margin = tightest_margin.map_or("-".into(), |m| format!("{m:?}"));
            return (
                wanted,
                format!("{judged} handler runs, all in time; tightest margin {margin}"),
                true,
            );
        }
        (wanted, problems.join("; "), false)
    }
}
