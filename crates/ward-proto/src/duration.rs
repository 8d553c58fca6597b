//! The one duration codec of ward: `500ms`, `90s`, `5m`, `1h30m`, `7d`. ward.toml, the admin
//! API and the agent protocol all read and write durations with it, so a value one side
//! accepts is never read differently (or refused) by the other.

use std::time::Duration;

/// Parses `10s`, `5m`, `1h30m`, `500ms`, `1d` (spaces between parts are allowed). Anything
/// else, including a fraction such as `1.5s`, is an error.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration (expected e.g. 10s, 5m, 1h)".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!(
                "'{text}' is not a duration (expected e.g. 10s, 5m, 1h)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{text}': number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_length = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_length];
        rest = rest[unit_length..].trim_start();
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => return Err(format!("'{text}': a unit is missing (ms, s, m, h or d)")),
            other => {
                return Err(format!(
                    "'{text}': unknown unit '{other}' (ms, s, m, h or d)"
                ))
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// The shortest text [`parse`] reads back as `duration`: `1h30m`, `500ms`, `0s`.
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        // Past u64::MAX milliseconds `parse` cannot read them as one number: seconds first.
        if u64::try_from(millis).is_err() {
            return format!("{}s{}ms", duration.as_secs(), duration.subsec_millis());
        }
        return format!("{millis}ms");
    }
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// `#[serde(with = "ward_proto::duration::text")]`: a `Duration` as its text.
pub mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<Duration, &str>) {
        match (parse(text), expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(actual, expected, "{text}"),
            (Err(actual), Err(expected)) => {
                assert!(actual.contains(expected), "{text}: {actual}")
            }
            (actual, expected) => panic!("{text}: {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_what_every_side_writes() {
        check("5m", Ok(Duration::from_secs(300)));
        check("90s", Ok(Duration::from_secs(90)));
        check("1h30m", Ok(Duration::from_secs(5400)));
        check("1h 30m", Ok(Duration::from_secs(5400)));
        check("1d", Ok(Duration::from_secs(86_400)));
        check("0s", Ok(Duration::ZERO));
        check("500ms", Ok(Duration::from_millis(500)));
        check("1m500ms", Ok(Duration::from_millis(60_500)));
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        check("1.5s", Err("a unit is missing"));
        check("", Err("empty"));
        check("5", Err("unit is missing"));
        check("5w", Err("unknown unit 'w'"));
        check("s", Err("not a duration"));
        check("99999999999999999999s", Err("too large"));
    }

    #[test]
    fn format_round_trips() {
        for duration in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_millis(1500),
            Duration::from_secs(59),
            Duration::from_secs(5400),
            Duration::from_secs(90_061),
            // Found by fuzzing (fuzz/, target `settings`): written as one number of
            // milliseconds, these did not read back ("number too large").
            Duration::from_secs(u64::MAX) + Duration::from_millis(1),
            Duration::from_secs(u64::MAX) + Duration::from_millis(999),
            Duration::from_millis(u64::MAX),
        ] {
            assert_eq!(parse(&format(duration)), Ok(duration), "{duration:?}");
        }
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
