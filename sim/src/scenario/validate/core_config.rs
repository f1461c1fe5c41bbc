//! Core's own config checks, reported in scenario terms: a resilience table is
//! turned into core's config type and checked with its `validate()`, and a
//! `ConfigError` (which names a core field) is located at the file key it came
//! from. A leaf: the resilience sections import it, it imports none of them.

use std::ops::Range;

use squall::resilience::ConfigError;
use toml::Spanned;

use crate::scenario::error::{Locator, ScenarioError};

/// The span of an optional spanned key.
pub(super) fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

/// A core `ConfigError` as a located scenario error: at the key it names (core
/// field → file key), or at the table when that key was not written (a default
/// that conflicts with a written key).
pub(super) fn config_error(
    loc: &Locator<'_>,
    table: &str,
    table_span: Range<usize>,
    error: &ConfigError,
    keys: &[(&str, &str, Option<Range<usize>>)],
) -> ScenarioError {
    let found = keys.iter().find(|(field, _, _)| *field == error.field());
    let key = found.map_or(error.field(), |(_, key, _)| key);
    let at = found
        .and_then(|(_, _, span)| span.clone())
        .unwrap_or(table_span);
    loc.at(
        at,
        format!("[clients.{table}] {key}: {}", error.problem()),
        Some(format!(
            "keys not written take core's defaults; see [clients.{table}] in docs/SCENARIOS.md"
        )),
    )
}
