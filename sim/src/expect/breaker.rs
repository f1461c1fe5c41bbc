//! Breaker checks: `breaker` events are recorded on the client host whose
//! breaker changed (one breaker per client and endpoint), and placed in the
//! window by the transition's time. The client filter selects whose breakers count.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Index, Transition};
use crate::scenario::{format_duration, Filter};

/// The state name of an open breaker in the trace.
const OPEN: &str = "open";
/// The state name of a closed breaker in the trace.
const CLOSED: &str = "closed";

impl<'t> Index<'t> {
    /// Transitions of `endpoint`'s breakers on admitted clients, at any time, in trace order.
    fn transitions_of<'s>(
        &'s self,
        filter: &'s Filter,
        endpoint: &'s str,
    ) -> impl Iterator<Item = &'s Transition<'t>> + 's {
        self.transitions
            .iter()
            .filter(move |t| t.endpoint == endpoint && filter.admits_client(t.client))
    }

    /// At least `min` transitions to open inside the window.
    pub(super) fn breaker_opened(
        &self,
        filter: &Filter,
        endpoint: &str,
        min: u64,
    ) -> (String, String, bool) {
        let opened: Vec<&Transition<'_>> = self
            .transitions_of(filter, endpoint)
            .filter(|t| t.to == OPEN && filter.contains(t.at))
            .collect();
        let count = opened.len() as u64;
        let observed = match opened.first() {
            Some(first) => format!(
                "{count} openings, first at {:?} ({})",
                first.at, first.client
            ),
            None => format!("0 openings{}", self.last_transition_text(filter, endpoint)),
        };
        (
            format!(">= {min} openings of {endpoint}'s breaker"),
            observed,
            count >= min,
        )
    }

    /// At least one transition to closed inside the window.
    pub(super) fn breaker_closed(&self, filter: &Filter, endpoint: &str) -> (String, String, bool) {
        let closed = self
            .transitions_of(filter, endpoint)
            .find(|t| t.to == CLOSED && filter.contains(t.at));
        let observed = match closed {
            Some(t) => format!("closed at {:?} ({})", t.at, t.client),
            None => format!(
                "never closed{}",
                self.last_transition_text(filter, endpoint)
            ),
        };
        (
            format!("{endpoint}'s breaker closes"),
            observed,
            closed.is_some(),
        )
    }

    /// Every open period that began in the window lasted at least `min`: from the
    /// transition to open to that client's next transition for the endpoint (to
    /// half-open, which core records lazily — on the first call after the period
    /// — so a measured period is never shorter than the real one).
    pub(super) fn breaker_min_open(
        &self,
        filter: &Filter,
        endpoint: &str,
        min: Duration,
    ) -> (String, String, bool) {
        let mut per_client: BTreeMap<&str, Vec<&Transition<'_>>> = BTreeMap::new();
        for t in self.transitions_of(filter, endpoint) {
            per_client.entry(t.client).or_default().push(t);
        }
        // (length, client, opened at) of every judged period.
        let mut periods: Vec<(Duration, &str, Duration)> = Vec::new();
        for (client, transitions) in &per_client {
            for pair in transitions.windows(2) {
                let (open, next) = (pair[0], pair[1]);
                if open.to == OPEN && filter.contains(open.at) {
                    periods.push((next.at.saturating_sub(open.at), client, open.at));
                }
            }
        }
        let wanted = format!("every open period >= {}", format_duration(min));
        let Some(&(shortest, client, at)) = periods.iter().min() else {
            return (
                wanted,
                format!(
                    "no open period ended in the window{}",
                    self.last_transition_text(filter, endpoint)
                ),
                false,
            );
        };
        let short = periods.iter().filter(|(d, ..)| *d < min).count();
        let observed = format!(
            "{short} of {} periods shorter; shortest {shortest:?} ({client}, opened at {at:?})",
            periods.len()
        );
        (wanted, observed, short == 0)
    }

    /// `; last transition: open at 12s (client-1)` or `; no transitions at all`,
    /// so a failing breaker check says where the breaker actually was.
    fn last_transition_text(&self, filter: &Filter, endpoint: &str) -> String {
        match self.transitions_of(filter, endpoint).last() {
            Some(t) => format!("; last transition: {} at {:?} ({})", t.to, t.at, t.client),
            None => "; no transitions at all".into(),
        }
    }
}
