//! Durations as users write them: `"500ms"`, `"1s"`, `"5m"`, `"72h"`, `"1h30m"`; a bare number
//! means seconds (`"2"`, `"0.5"`). Units: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`.

use std::time::Duration;

/// A duration string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration `{input}`: {reason} (examples: 500ms, 1s, 5m, 72h, 1h30m; a bare number is seconds)")]
pub struct DurationError {
    /// The text given.
    pub input: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Parses a duration (see the module docs). Zero is accepted; negative values are not.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(err("must be a finite, non-negative number"));
        }
        return Duration::try_from_secs_f64(secs).map_err(|_| err("too large"));
    }
    let mut total_ns: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit after the last number"))?;
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(err("unknown unit (ns, us, ms, s, m, h, d)")),
        };
        let value: f64 = num.parse().map_err(|_| err("bad number"))?;
        let ns = value * scale as f64;
        if !ns.is_finite() || ns > 1e30 {
            return Err(err("too large"));
        }
        total_ns += ns.round() as u128;
        rest = next;
    }
    let ns = u64::try_from(total_ns).map_err(|_| err("too large"))?;
    Ok(Duration::from_nanos(ns))
}

/// serde helper: a duration given as a string (`"5m"`) or a number of seconds.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Int(u64),
        Float(f64),
        Text(String),
    }
    match <Repr as serde::Deserialize>::deserialize(d)? {
        Repr::Int(n) => Ok(Duration::from_secs(n)),
        Repr::Float(f) => parse_duration(&f.to_string()).map_err(serde::de::Error::custom),
        Repr::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_duration("5m"), Ok(ms(300_000)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2"), Ok(ms(2000)));
        assert_eq!(parse_duration("0.25"), Ok(ms(250)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        for bad in ["", "s", "5x", "-1", "5m3", "1..2s", "nan", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
        let e = parse_duration("5x").expect_err("bad unit");
        assert!(e.to_string().contains("unknown unit"), "{e}");
    }
}
