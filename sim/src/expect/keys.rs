//! Hash-key checks for consistent hashing. A key "reached" an endpoint when a
//! call carrying it (`call.start key=…`) ended Ok there: the `call.end`
//! endpoint, which is the attempt that answered. Failed calls say nothing about
//! where the ring maps a key, so they are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{examples, Index, OK};
use crate::scenario::Filter;

/// When a call started and which endpoint answered it.
type Sighting<'t> = ((Duration, &'t str, u64), &'t str);

impl<'t> Index<'t> {
    /// (key, (start, client, call), endpoint) of every successful keyed call in the window.
    fn keyed_successes<'s>(
        &'s self,
        filter: &'s Filter,
    ) -> impl Iterator<Item = (&'t str, Sighting<'t>)> + 's {
        self.calls(filter).filter_map(|(&(client, call), record)| {
            let key = record.key?;
            let start = record.start?;
            let end = record.ends.first().filter(|end| end.outcome == OK)?;
            Some((key, ((start, client, call), end.endpoint?)))
        })
    }

    /// Each key's successful calls reached at most `max_endpoints` endpoints.
    pub(super) fn key_affinity(
        &self,
        filter: &Filter,
        max_endpoints: u64,
    ) -> (String, String, bool) {
        let mut reached: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (key, (_, endpoint)) in self.keyed_successes(filter) {
            reached.entry(key).or_default().insert(endpoint);
        }
        let wanted = format!("<= {max_endpoints} endpoints per key");
        if reached.is_empty() {
            return (wanted, "no successful keyed calls matched".into(), false);
        }
        let spread: Vec<String> = reached
            .iter()
            .filter(|(_, endpoints)| endpoints.len() as u64 > max_endpoints)
            .map(|(key, endpoints)| {
                let list: Vec<&str> = endpoints.iter().copied().collect();
                format!("{key}: {}", list.join("+"))
            })
            .collect();
        let widest = reached.values().map(BTreeSet::len).max().unwrap_or(0);
        let observed = if spread.is_empty() {
            format!("{} keys, at most {widest} endpoints each", reached.len())
        } else {
            format!(
                "{} of {} keys spread wider ({})",
                spread.len(),
                reached.len(),
                examples(&spread)
            )
        };
        (wanted, observed, spread.is_empty())
    }

    /// Every key whose endpoint changed across `at` was on `endpoint` before:
    /// compares each key's last successful call started before `at` with its
    /// first started at or after `at`.
    pub(super) fn keys_moved_only_from(
        &self,
        filter: &Filter,
        endpoint: &str,
        at: Duration,
    ) -> (String, String, bool) {
        let mut before: BTreeMap<&str, Sighting<'_>> = BTreeMap::new();
        let mut after: BTreeMap<&str, Sighting<'_>> = BTreeMap::new();
        for (key, sighting) in self.keyed_successes(filter) {
            // Before `at` the latest sighting counts, after it the earliest.
            if sighting.0 .0 < at {
                let slot = before.entry(key).or_insert(sighting);
                if sighting.0 > slot.0 {
                    *slot = sighting;
                }
            } else {
                let slot = after.entry(key).or_insert(sighting);
                if sighting.0 < slot.0 {
                    *slot = sighting;
                }
            }
        }
        let wanted = format!("only keys on {endpoint} move at {at:?}");
        let (mut both, mut moved, mut wrong) = (0u64, 0u64, Vec::new());
        for (key, (_, was)) in &before {
            let Some((_, now)) = after.get(key) else {
                continue;
            };
            both += 1;
            if was != now {
                moved += 1;
                if *was != endpoint {
                    wrong.push(format!("{key}: {was} -> {now}"));
                }
            }
        }
        if both == 0 {
            return (
                wanted,
                "no key succeeded both before and after".into(),
                false,
            );
        }
        let observed = if wrong.is_empty() {
            format!("{both} keys seen on both sides, {moved} moved, all from {endpoint}")
        } else {
            format!(
                "{} of {moved} moved keys were not on {endpoint} ({})",
                wrong.len(),
                examples(&wrong)
            )
        };
        (wanted, observed, wrong.is_empty())
    }
}
