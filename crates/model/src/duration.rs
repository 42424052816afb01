//! Durations as Istio accepts them in YAML: Go's `time.ParseDuration` syntax
//! (`30s`, `2.5s`, `1h`, `7200s`, `1h30m`, `100ms`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration as StdDuration;

/// A duration that remembers how it was written, so it can be shown back verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duration {
    text: String,
    value: StdDuration,
}

impl Duration {
    /// Parses Go duration syntax. Negative durations are rejected (Istio has none).
    pub fn parse(text: &str) -> Result<Self, String> {
        parse_go_duration(text).map(|value| Duration {
            text: text.to_string(),
            value,
        })
    }

    pub fn from_std(value: StdDuration) -> Self {
        Duration {
            text: format_seconds(value),
            value,
        }
    }

    pub fn as_std(&self) -> StdDuration {
        self.value
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn format_seconds(d: StdDuration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let s = format!("{:.9}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0'))
    }
}

fn parse_go_duration(text: &str) -> Result<StdDuration, String> {
    let invalid = || format!("invalid duration {text:?}");
    let s = text.trim();
    if s.is_empty() {
        return Err(invalid());
    }
    if s.starts_with('-') {
        return Err(format!("duration {text:?} must not be negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(StdDuration::ZERO);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: f64 = 0.0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &s[start..i];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let scale = match &s[unit_start..i] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit in duration {text:?}")),
            unit => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * scale;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(StdDuration::from_secs_f64(total))
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        let cases = [
            ("30s", 30_000),
            ("2.5s", 2_500),
            ("1h", 3_600_000),
            ("7200s", 7_200_000),
            ("1h30m", 5_400_000),
            ("100ms", 100),
            ("0", 0),
            ("0s", 0),
        ];
        for (text, millis) in cases {
            let d = Duration::parse(text).unwrap();
            assert_eq!(d.as_std().as_millis(), millis, "{text}");
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "30", "1x", "s", "-1s", "1.2.3s", "abc"] {
            assert!(Duration::parse(text).is_err(), "{text} should fail");
        }
    }

    #[test]
    fn formats_std_as_seconds() {
        assert_eq!(
            Duration::from_std(StdDuration::from_millis(1500)).as_str(),
            "1.5s"
        );
        assert_eq!(
            Duration::from_std(StdDuration::from_secs(10)).as_str(),
            "10s"
        );
    }
}
