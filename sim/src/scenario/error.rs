//! [`ScenarioError`]: what is wrong with a scenario file, where, and what to do.
//!
//! Every error carries the file, the line, a message and (usually) a hint, and
//! displays as one line: `scenarios/x.toml:14: unknown fault kind "partiton" (did
//! you mean "partition"?)`. The alternate form (`{:#}`) adds the offending source line.

use std::fmt;
use std::ops::Range;

/// A scenario file that could not be read, parsed or validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file, as the user named it (so the message can be pasted into an editor).
    pub path: String,
    /// 1-based line of the offending key or value; `None` when the file itself is
    /// the problem (unreadable, or a whole-file rule such as "no clients").
    pub line: Option<usize>,
    /// What is wrong, in one sentence without a trailing period.
    pub message: String,
    /// What to do about it (`did you mean "latency"?`), when we know.
    pub hint: Option<String>,
    /// The text of the offending line, trimmed, for the alternate display.
    pub source_line: Option<String>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        if f.alternate() {
            if let (Some(line), Some(text)) = (self.line, &self.source_line) {
                write!(f, "\n{line:>5} | {text}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Turns byte spans of one file into located [`ScenarioError`]s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Locator<'a> {
    /// The path shown in messages.
    pub(crate) path: &'a str,
    /// The whole file, to count lines and quote the offending one.
    pub(crate) text: &'a str,
}

impl<'a> Locator<'a> {
    /// The 1-based line holding byte `offset` (clamped to the file, never panics).
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error at the start of `span`.
    pub(crate) fn at(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> ScenarioError {
        let line = self.line_of(span.start);
        let source_line = self
            .text
            .lines()
            .nth(line - 1)
            .map(|l| l.trim().to_string());
        ScenarioError {
            path: self.path.to_string(),
            line: Some(line),
            message: message.into(),
            hint,
            source_line,
        }
    }

    /// An error at a known line (for checks that run after spans are gone).
    pub(crate) fn at_line(
        &self,
        line: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> ScenarioError {
        let source_line = self
            .text
            .lines()
            .nth(line.saturating_sub(1))
            .map(|l| l.trim().to_string());
        ScenarioError {
            path: self.path.to_string(),
            line: Some(line),
            message: message.into(),
            hint,
            source_line,
        }
    }

    /// An error about the whole file.
    pub(crate) fn file(&self, message: impl Into<String>, hint: Option<String>) -> ScenarioError {
        ScenarioError {
            path: self.path.to_string(),
            line: None,
            message: message.into(),
            hint,
            source_line: None,
        }
    }

    /// The key whose value starts at byte `offset`: the name before the `=` on its
    /// line (`weight` in `mix = [{ method = "Echo.Echo", weight = "3" }]`), or
    /// `None` when the value is not directly after `key =` (an array element).
    fn key_before(&self, offset: usize) -> Option<&'a str> {
        let text: &'a str = self.text;
        let before = text.get(..offset)?;
        let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
        let key = line.trim_end().strip_suffix('=')?.trim_end();
        let key = key
            .rsplit(|c: char| c == '{' || c == ',' || c.is_whitespace())
            .next()?;
        (!key.is_empty()).then_some(key)
    }

    /// Rewrites a TOML/serde error into our vocabulary: `unknown field` becomes
    /// `unknown key "x"` with a did-you-mean, `missing field` says what the key is for.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> ScenarioError {
        let span = error.span().unwrap_or(0..0);
        let raw = error.message().trim().trim_end_matches('.').to_string();
        let key = error.span().and_then(|s| self.key_before(s.start));
        let (message, hint) =
            quoted_scalar(&raw, key).unwrap_or_else(|| rewrite_serde_message(&raw));
        let mut located = self.at(span, message, hint);
        if error.span().is_none() {
            located.line = None;
            located.source_line = None;
        }
        located
    }
}

/// A number or boolean written in quotes (`rate = "100"`). serde says only
/// `invalid type: string "100", expected f64`, which names neither the key nor
/// the fix; every numeric and boolean key reaches here, so one rewrite covers
/// them all: which key, what it must be, and the line without the quotes.
fn quoted_scalar(raw: &str, key: Option<&str>) -> Option<(String, Option<String>)> {
    let rest = raw.strip_prefix("invalid type: string \"")?;
    let (value, expected) = rest.rsplit_once("\", expected ")?;
    let (kind, fits) = match expected {
        "f64" | "f32" => ("a number", value.parse::<f64>().is_ok()),
        "i64" | "u64" | "i32" | "u32" | "u16" | "u8" | "usize" => {
            ("a whole number", value.parse::<i64>().is_ok())
        }
        "a boolean" => ("true or false", value == "true" || value == "false"),
        _ => return None,
    };
    let subject = key.map_or_else(|| "the value".to_string(), |k| format!("\"{k}\""));
    let message = format!("{subject} must be {kind}, not the string \"{value}\"");
    let hint = match (key, fits) {
        (Some(key), true) => format!("write {key} = {value}, without quotes"),
        (None, true) => format!("write {value}, without quotes"),
        (_, false) => format!("write {kind}, without quotes"),
    };
    Some((message, Some(hint)))
}

/// The back-quoted words of a serde message, in order: for
/// ``unknown field `lattency`, expected one of `latency`, `loss` `` that is
/// `["lattency", "latency", "loss"]`.
fn quoted_words(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// serde's messages (`unknown field`, `unknown variant`, `missing field`) in our
/// words, plus a hint.
fn rewrite_serde_message(raw: &str) -> (String, Option<String>) {
    let words = quoted_words(raw);
    if let Some(rest) = raw.strip_prefix("unknown field") {
        let Some((unknown, expected)) = words.split_first() else {
            return (raw.to_string(), None);
        };
        let message = format!("unknown key \"{unknown}\"");
        if rest.contains("there are no fields") || expected.is_empty() {
            return (message, Some("this table takes no keys".into()));
        }
        return (message, Some(did_you_mean_or_list(unknown, expected)));
    }
    if raw.starts_with("unknown variant") {
        if let Some((unknown, expected)) = words.split_first() {
            return (
                format!("unknown value \"{unknown}\""),
                Some(did_you_mean_or_list(unknown, expected)),
            );
        }
    }
    if raw.starts_with("missing field") {
        if let Some(field) = words.first() {
            let hint = missing_key_hint(field).map(str::to_string);
            return (format!("missing key \"{field}\""), hint);
        }
    }
    if raw.starts_with("invalid type") || raw.starts_with("invalid value") {
        // serde says "expected u32"; users think in TOML types.
        let plain = raw
            .replace("expected u64", "expected a whole number ≥ 0")
            .replace("expected i64", "expected a whole number");
        return (plain, None);
    }
    (raw.to_string(), None)
}

/// Why a required key is required, for the "missing key" hint.
fn missing_key_hint(field: &str) -> Option<&'static str> {
    Some(match field {
        "description" => {
            "every scenario says what it proves and why its thresholds are what they are"
        }
        "name" => "name the scenario; it appears in reports and test names",
        "duration" => "how long the workload runs, e.g. duration = \"30s\"",
        "group" => "name the group; its hosts are called {group}-1, {group}-2, …",
        "targets" => "which server groups or hosts this client calls, e.g. targets = [\"server\"]",
        "at" => "when the fault happens, e.g. at = \"10s\"",
        "kind" => "say which kind, e.g. kind = \"partition\"",
        _ => return None,
    })
}

/// `1 host`, `3 hosts`: a count with its noun in the right number.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `did you mean "x"?` when one candidate is close, else the list of candidates.
pub(crate) fn did_you_mean_or_list(word: &str, candidates: &[&str]) -> String {
    match suggest(word, candidates.iter().copied()) {
        Some(best) => format!("did you mean \"{best}\"?"),
        None => format!("expected one of: {}", candidates.join(", ")),
    }
}

/// The candidate closest to `word` if it is close enough to be a typo: at most
/// one edit per three characters (a transposition counts as one edit), and at least
/// one edit always allowed.
pub(crate) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let lower = word.to_ascii_lowercase();
    let allowed = (lower.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|&(d, _)| d <= allowed)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and
/// adjacent transpositions each cost one.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposition_costs_one_edit() {
        // Proves swapped characters ("lantecy") are suggested like single typos.
        assert_eq!(edit_distance("lantecy", "latency"), 2);
        assert_eq!(edit_distance("laetncy", "latency"), 1);
        assert_eq!(edit_distance("partiton", "partition"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggestion_requires_closeness() {
        // Proves a far-off word gets no suggestion rather than a misleading one.
        assert_eq!(
            suggest("partiton", ["partition", "heal"]),
            Some("partition")
        );
        assert_eq!(suggest("zzzzzz", ["partition", "heal"]), None);
    }

    #[test]
    fn key_before_finds_the_key_of_a_value_in_tables_and_inline_tables() {
        // Proves the quoted-number message can name the key wherever it is written.
        let text =
            "rate = \"100\"\nmix = [{ method = \"A.B\", weight = \"3\" }]\nseeds = [\"1\"]\n";
        let loc = Locator {
            path: "x.toml",
            text,
        };
        let at = |needle: &str| text.find(needle).unwrap();
        assert_eq!(loc.key_before(at("\"100\"")), Some("rate"));
        assert_eq!(loc.key_before(at("\"3\"")), Some("weight"));
        assert_eq!(loc.key_before(at("\"1\"")), None);
    }

    #[test]
    fn display_is_one_line_with_hint_and_alternate_adds_source() {
        // Proves the user-facing format: path:line: message (hint), excerpt only on {:#}.
        let loc = Locator {
            path: "x.toml",
            text: "a = 1\nkind = \"partiton\"\n",
        };
        let error = loc.at(
            8..9,
            "unknown fault kind \"partiton\"",
            Some("did you mean \"partition\"?".into()),
        );
        assert_eq!(
            error.to_string(),
            "x.toml:2: unknown fault kind \"partiton\" (did you mean \"partition\"?)"
        );
        assert_eq!(
            format!("{error:#}").lines().nth(1),
            Some("    2 | kind = \"partiton\"")
        );
    }
}
