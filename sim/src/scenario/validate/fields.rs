//! Leaf field checks shared by every section: integers, fractions, latencies,
//! durations, method, service and codec names. Each takes one raw value and its
//! span and returns the checked value or a located error; none knows which table
//! it is in, so this module imports nothing from its siblings.

use std::time::Duration;

use squall::Codec;
use toml::Spanned;

use crate::scenario::duration::{format_duration, DurationText, LatencySpec, DURATION_MAX};
use crate::scenario::error::{did_you_mean_or_list, Locator, ScenarioError};
use crate::scenario::raw::RawConnection;
use crate::scenario::schema::{ConnectionConfig, LatencyRange};

/// Most hosts a group may have: more is a typo, and turmoil steps every host every tick.
pub const REPLICAS_MAX: i64 = 100;
/// Highest balancer weight.
pub const WEIGHT_MAX: i64 = 1000;
/// Longest latency anywhere (network, link, handler): longer is a unit typo.
pub const LATENCY_MAX: Duration = Duration::from_secs(60);

/// Key `code`: `"echo"` (default) or `"user"`.
pub(crate) fn user_code(
    loc: &Locator<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<bool, ScenarioError> {
    match raw.map(|c| (c.get_ref().as_str(), c.span())) {
        None | Some(("echo", _)) => Ok(false),
        Some(("user", _)) => Ok(true),
        Some((other, span)) => Err(loc.at(
            span,
            format!("code = {other:?}: the code under test is \"echo\" (built in) or \"user\" (plugged in by a test)"),
            Some(did_you_mean_or_list(other, &["echo", "user"])),
        )),
    }
}

/// A service name: letters, digits, `-`, `_`, `.`; 1..=64 characters.
pub(crate) fn check_service_text(
    loc: &Locator<'_>,
    service: &Spanned<String>,
) -> Result<String, ScenarioError> {
    let text = service.get_ref();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if text.is_empty() || text.len() > 64 || !plain {
        return Err(loc.at(
            service.span(),
            format!("invalid service name \"{text}\""),
            Some("use letters, digits, '-', '_' and '.', at most 64 characters".into()),
        ));
    }
    Ok(text.clone())
}

/// `Service.Method`: two non-empty identifiers joined by one dot.
pub(crate) fn method_name(
    loc: &Locator<'_>,
    method: &Spanned<String>,
) -> Result<String, ScenarioError> {
    let text = method.get_ref();
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match text.split_once('.') {
        Some((service, name)) if ident(service) && ident(name) => Ok(text.clone()),
        _ => Err(loc.at(
            method.span(),
            format!("invalid method \"{text}\""),
            Some("write Service.Method, e.g. \"Echo.Echo\"".into()),
        )),
    }
}

/// `codec`: `msgpack` (default) or `json`.
pub(crate) fn codec(
    loc: &Locator<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<Codec, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(Codec::MessagePack);
    };
    match raw.get_ref().as_str() {
        "msgpack" | "messagepack" => Ok(Codec::MessagePack),
        "json" => Ok(Codec::Json),
        other => Err(loc.at(
            raw.span(),
            format!("unknown codec \"{other}\""),
            Some(did_you_mean_or_list(other, &["msgpack", "json"])),
        )),
    }
}

/// `replicas`: 1..=[`REPLICAS_MAX`], default 1.
pub(crate) fn replicas(
    loc: &Locator<'_>,
    raw: Option<&Spanned<i64>>,
) -> Result<u32, ScenarioError> {
    Ok(integer(loc, raw, "replicas", 1, REPLICAS_MAX)?.unwrap_or(1))
}

/// An integer key within `min..=max`.
pub(crate) fn integer(
    loc: &Locator<'_>,
    raw: Option<&Spanned<i64>>,
    key: &str,
    min: i64,
    max: i64,
) -> Result<Option<u32>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = *raw.get_ref();
    if value < min || value > max {
        return Err(loc.at(
            raw.span(),
            format!("{key} = {value} is out of range"),
            Some(format!("{key} must be {min}..={max}")),
        ));
    }
    // Cannot fail: max is at most REPLICAS_MAX..PAYLOAD_BYTES_MAX, all below u32::MAX.
    Ok(u32::try_from(value).ok())
}

/// A fraction key within 0..=1 (NaN is rejected too).
pub(crate) fn fraction(
    loc: &Locator<'_>,
    raw: Option<&Spanned<f64>>,
    key: &str,
) -> Result<Option<f64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = *raw.get_ref();
    if !(0.0..=1.0).contains(&value) {
        return Err(loc.at(
            raw.span(),
            format!("{key} = {value} is out of range"),
            Some(format!("{key} is a fraction from 0 to 1; 0.05 means 5%")),
        ));
    }
    Ok(Some(value))
}

/// A latency key, at most [`LATENCY_MAX`].
pub(crate) fn latency(
    loc: &Locator<'_>,
    raw: Option<&Spanned<LatencySpec>>,
    key: &str,
) -> Result<Option<LatencyRange>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let spec = raw.get_ref();
    if spec.max > LATENCY_MAX {
        return Err(loc.at(
            raw.span(),
            format!(
                "{key} {} is above the {} limit",
                format_duration(spec.max),
                format_duration(LATENCY_MAX)
            ),
            Some("is the unit right? \"200ms\", not \"200s\"".into()),
        ));
    }
    Ok(Some(LatencyRange {
        min: spec.min,
        max: spec.max,
    }))
}

/// A duration key that must be above zero.
pub(crate) fn positive_duration(
    loc: &Locator<'_>,
    raw: Option<&Spanned<DurationText>>,
    key: &str,
) -> Result<Option<Duration>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = raw.get_ref().0;
    if value.is_zero() || value > DURATION_MAX {
        return Err(loc.at(
            raw.span(),
            format!("{key} must be above zero"),
            Some(format!("e.g. {key} = \"1s\"")),
        ));
    }
    Ok(Some(value))
}

/// `[clients.connection]` with defaults 1s / 1s / 1s.
pub(super) fn check_connection(
    loc: &Locator<'_>,
    raw: Option<&RawConnection>,
) -> Result<ConnectionConfig, ScenarioError> {
    let second = Duration::from_secs(1);
    let Some(raw) = raw else {
        return Ok(ConnectionConfig {
            connect_timeout: second,
            keepalive_interval: second,
            keepalive_timeout: second,
        });
    };
    Ok(ConnectionConfig {
        connect_timeout: positive_duration(loc, raw.connect_timeout.as_ref(), "connect_timeout")?
            .unwrap_or(second),
        keepalive_interval: positive_duration(
            loc,
            raw.keepalive_interval.as_ref(),
            "keepalive_interval",
        )?
        .unwrap_or(second),
        keepalive_timeout: positive_duration(
            loc,
            raw.keepalive_timeout.as_ref(),
            "keepalive_timeout",
        )?
        .unwrap_or(second),
    })
}
