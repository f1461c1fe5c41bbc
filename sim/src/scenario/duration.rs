//! Durations as people write them (`"250ms"`, `"1.5s"`, `"1m"`) and latency
//! specs (`"2ms"` or `{ min = "1ms", max = "5ms" }`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The longest duration a scenario may mention anywhere: one simulated hour. A
/// longer value is a typo (`"30m"` for `"30s"`?) or an experiment too slow to run
/// in the test suite.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);

/// The units a duration may carry, with their length in nanoseconds.
const UNITS: [(&str, u128); 6] = [
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The hint every malformed duration gets.
const DURATION_HINT: &str =
    "write a number and a unit, e.g. \"250ms\", \"1.5s\", \"10us\", \"1m\"; units: us, ms, s, m, h";

/// Parses `"250ms"`, `"1.5s"`, `"10us"`, `"1m"`, `"1h"`. No sign, no spaces, at
/// most [`DURATION_MAX`]. The error is a message with its hint in parentheses.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.contains(char::is_whitespace) {
        return Err(spaced_duration(text));
    }
    if text.is_empty() {
        return Err(format!("empty duration ({DURATION_HINT})"));
    }
    if text.starts_with('-') {
        return Err(format!(
            "invalid duration \"{text}\": durations cannot be negative"
        ));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "invalid duration \"{text}\": no number ({DURATION_HINT})"
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "invalid duration \"{text}\": no unit (did you mean \"{number}ms\" or \"{number}s\"?)"
        ));
    }
    let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        let hint = match unit_alias(unit) {
            Some(alias) => format!("did you mean \"{number}{alias}\"?"),
            None => "units: us, ms, s, m for minutes, h".to_string(),
        };
        return Err(format!(
            "invalid duration \"{text}\": unknown unit \"{unit}\" ({hint})"
        ));
    };
    let nanos = number_times(number, unit_nanos).ok_or_else(|| {
        format!("invalid duration \"{text}\": \"{number}\" is not a number ({DURATION_HINT})")
    })?;
    if nanos > DURATION_MAX.as_nanos() {
        return Err(format!(
            "duration \"{text}\" is longer than the 1h limit (is the unit right?)"
        ));
    }
    // Cannot truncate: bounded by DURATION_MAX above.
    Ok(Duration::from_nanos(nanos as u64))
}

/// The error for a duration written with spaces (`"10 s"`, `" 10s"`). The docs
/// promise one spelling, and a scenario file is read by people as well as by this
/// parser, so spaces are refused rather than trimmed. The hint shows the text
/// without them when that is a valid duration; otherwise the worse mistake is
/// reported first (`"10 parsecs"`: unknown unit), quoting the text as written.
fn spaced_duration(text: &str) -> String {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    match parse_duration(&compact) {
        Ok(_) => format!("invalid duration \"{text}\": no spaces allowed (write \"{compact}\")"),
        Err(error) => error.replacen(&format!("\"{compact}\""), &format!("\"{text}\""), 1),
    }
}

/// Common spellings of our units, for the did-you-mean.
fn unit_alias(unit: &str) -> Option<&'static str> {
    let lower = unit.to_ascii_lowercase();
    if let Some((name, _)) = UNITS.iter().find(|(name, _)| *name == lower) {
        return Some(name);
    }
    Some(match lower.as_str() {
        "ns" | "nanos" => "us",
        "micros" | "usec" | "usecs" => "us",
        "msec" | "msecs" | "millis" | "milliseconds" => "ms",
        "sec" | "secs" | "second" | "seconds" => "s",
        "min" | "mins" | "minute" | "minutes" => "m",
        "hr" | "hrs" | "hour" | "hours" => "h",
        _ => return None,
    })
}

/// `number` (digits, optionally `.` digits) times `unit_nanos`, exactly, or
/// `None` when it is not a number or overflows. Sub-nanosecond fractions truncate.
fn number_times(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // 20 digits is more than any duration under the limit needs; it also bounds the
    // powers of ten below so nothing can overflow.
    if whole.len() > 20 || fraction.len() > 20 {
        return None;
    }
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole_value.checked_mul(unit_nanos)?;
    if !fraction.is_empty() {
        let fraction_value: u128 = fraction.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        total = total.checked_add(fraction_value.checked_mul(unit_nanos)? / scale)?;
    }
    Some(total)
}

/// Formats a duration the way a scenario would write it (`250ms`, `1.5s`, `10us`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    for (unit, size) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if nanos >= size {
            let whole = nanos / size;
            let rest = nanos % size;
            if rest == 0 {
                return format!("{whole}{unit}");
            }
            // Up to three decimals, trailing zeros trimmed: 1.5s, 2.25ms.
            let thousandths = rest * 1000 / size;
            if thousandths * size == rest * 1000 {
                let digits = format!("{thousandths:03}");
                return format!("{whole}.{}{unit}", digits.trim_end_matches('0'));
            }
        }
    }
    format!("{}ns", nanos)
}

/// A duration read from a TOML string with [`parse_duration`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DurationText(pub(crate) Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\" or \"1.5s\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationText, E> {
                parse_duration(text).map(DurationText).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// A latency as written: a fixed `"2ms"` or a uniform range `{ min, max }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LatencySpec {
    /// The lower bound (equal to `max` for a fixed latency).
    pub(crate) min: Duration,
    /// The upper bound.
    pub(crate) max: Duration,
}

impl<'de> Deserialize<'de> for LatencySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LatencyVisitor;
        impl<'de> Visitor<'de> for LatencyVisitor {
            type Value = LatencySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a latency: a duration such as \"2ms\", or { min = \"1ms\", max = \"5ms\" }",
                )
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<LatencySpec, E> {
                let d = parse_duration(text).map_err(E::custom)?;
                Ok(LatencySpec { min: d, max: d })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LatencySpec, A::Error> {
                let (mut min, mut max) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "min" => min = Some(map.next_value::<DurationText>()?.0),
                        "max" => max = Some(map.next_value::<DurationText>()?.0),
                        other => return Err(de::Error::unknown_field(other, &["min", "max"])),
                    }
                }
                let min = min.ok_or_else(|| de::Error::missing_field("min"))?;
                let max = max.ok_or_else(|| de::Error::missing_field("max"))?;
                if min > max {
                    return Err(de::Error::custom(format!(
                        "latency min {} is above max {} (swap them)",
                        format_duration(min),
                        format_duration(max)
                    )));
                }
                Ok(LatencySpec { min, max })
            }
        }
        deserializer.deserialize_any(LatencyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_fractions_exactly() {
        // Proves the grammar: integer or decimal number, then us/ms/s/m/h.
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(".5ms"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_unknown_units_with_a_hint() {
        // Proves "10 parsecs" is refused and says which units exist.
        let error = parse_duration("10 parsecs").unwrap_err();
        assert!(error.contains("unknown unit \"parsecs\""), "{error}");
        assert!(
            error.contains("units: us, ms, s, m for minutes, h"),
            "{error}"
        );
        let error = parse_duration("5secs").unwrap_err();
        assert!(error.contains("did you mean \"5s\"?"), "{error}");
    }

    #[test]
    fn rejects_negative_unitless_huge_and_malformed() {
        // Proves every malformed shape is an error, never a panic or a silent zero.
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_duration("250")
            .unwrap_err()
            .contains("did you mean \"250ms\""));
        assert!(parse_duration("2h").unwrap_err().contains("1h limit"));
        assert!(parse_duration("99999999999999999999999999s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration(".s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn rejects_spaces_with_a_hint_showing_the_fixed_text() {
        // Proves the documented "no space" rule holds inside, before and after the
        // number (a regression: "10 s" and " 10s" used to be read as 10s).
        for written in ["10 s", " 10s", "10s ", "1.5\ts"] {
            let error = parse_duration(written).unwrap_err();
            assert!(error.contains("no spaces allowed"), "{written:?}: {error}");
        }
        assert_eq!(
            parse_duration("10 s").unwrap_err(),
            "invalid duration \"10 s\": no spaces allowed (write \"10s\")"
        );
        assert!(parse_duration(" 250ms")
            .unwrap_err()
            .contains("(write \"250ms\")"));
    }

    #[test]
    fn formats_as_a_scenario_would_write_it() {
        // Proves wanted/observed texts read like the file: 1.5s, 250ms, 10us.
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_micros(10)), "10us");
        assert_eq!(format_duration(Duration::from_micros(2250)), "2.25ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
