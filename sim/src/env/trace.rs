//! [`Tracer`]: how users' handlers, workloads and invariants write their own
//! events into the run's trace.

use std::fmt;

use crate::recorder::Recorder;
use crate::trace::EventKind;

/// Kind prefixes the harness's own events use: a user kind may not start with
/// one, so `replay --kind call` and the built-in expectations never mistake a
/// user event for a harness one.
pub const RESERVED_KIND_PREFIXES: &[&str] = &[
    "call",
    "server",
    "conn",
    "fault",
    "breaker",
    "registry",
    "endpoints",
    "note",
    "host",
    "sim",
];

/// Longest user event kind, in bytes.
pub const USER_KIND_BYTES_MAX: usize = 64;
/// Most fields on one user event.
pub const USER_FIELDS_MAX: usize = 32;
/// Longest field value, in bytes; longer values are cut (with a `…` marker) so
/// one careless event cannot bloat the trace.
pub const USER_VALUE_BYTES_MAX: usize = 1024;

/// Writes user events into the trace on behalf of one host. Cheap to clone;
/// `Send + Sync`, so handlers and spawned tasks can keep one.
///
/// ```ignore
/// tracer.record("kv.read", &[("key", &key), ("version", &version)]);
/// // trace:   12.004130 client-1   kv.read key=a version=3
/// ```
#[derive(Clone, Debug)]
pub struct Tracer {
    /// The host events are recorded on.
    host: String,
    /// The run's log.
    recorder: Recorder,
}

impl Tracer {
    pub(crate) fn new(host: &str, recorder: Recorder) -> Tracer {
        Tracer {
            host: host.to_owned(),
            recorder,
        }
    }

    /// The host this tracer records on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Records `kind` with `fields` at the current simulated time.
    ///
    /// # Panics
    /// On a programmer error in `kind`: empty, longer than
    /// [`USER_KIND_BYTES_MAX`], characters other than `[A-Za-z0-9_.-]`, or
    /// starting with a [reserved prefix](RESERVED_KIND_PREFIXES); or more than
    /// [`USER_FIELDS_MAX`] fields. These are fixed strings in the user's code,
    /// so the first run finds them.
    pub fn record(&self, kind: &str, fields: &[(&str, &dyn fmt::Display)]) {
        if let Err(problem) = check_kind(kind) {
            panic!("sim: user event kind {kind:?} {problem}");
        }
        assert!(
            fields.len() <= USER_FIELDS_MAX,
            "sim: user event {kind:?} has {} fields, over the limit of {USER_FIELDS_MAX}",
            fields.len()
        );
        let fields = fields
            .iter()
            .map(|(key, value)| (sanitize_key(key), bounded(value.to_string())))
            .collect();
        self.recorder.record(
            &self.host,
            EventKind::User {
                kind: kind.to_owned(),
                fields,
            },
        );
    }
}

/// Why `kind` is not a valid user event kind, if it is not.
pub(crate) fn check_kind(kind: &str) -> Result<(), String> {
    if kind.is_empty() || kind.len() > USER_KIND_BYTES_MAX {
        return Err(format!(
            "must be 1..={USER_KIND_BYTES_MAX} bytes (e.g. \"kv.read\")"
        ));
    }
    if !kind
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err("may only contain letters, digits, '_', '.' and '-'".into());
    }
    let first = kind.split('.').next().unwrap_or(kind);
    if RESERVED_KIND_PREFIXES.contains(&first) {
        return Err(format!(
            "starts with {first:?}, which the harness's own events use; prefix it with your service (e.g. \"kv.{kind}\")"
        ));
    }
    Ok(())
}

fn sanitize_key(key: &str) -> String {
    let key: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(USER_KIND_BYTES_MAX)
        .collect();
    if key.is_empty() {
        "_".to_owned()
    } else {
        key
    }
}

fn bounded(mut value: String) -> String {
    if value.len() > USER_VALUE_BYTES_MAX {
        let mut cut = USER_VALUE_BYTES_MAX;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_kinds_may_not_impersonate_harness_events() {
        assert!(check_kind("kv.read").is_ok());
        assert!(check_kind("call.end").is_err());
        assert!(check_kind("server").is_err());
        assert!(check_kind("kv read").is_err());
        assert!(check_kind("").is_err());
        assert!(check_kind(&"k".repeat(USER_KIND_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn long_values_are_cut_to_the_limit() {
        let cut = bounded("é".repeat(USER_VALUE_BYTES_MAX));
        assert!(cut.len() <= USER_VALUE_BYTES_MAX + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
