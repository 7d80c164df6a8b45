//! Durations as written in the configuration file (SPEC §5): `90s`, `5m`, `2h`,
//! `120d`, `500ms`, and compounds such as `1h30m`.
//!
//! The format is deliberately strict so that a typo is an error rather than a
//! surprise: every number carries a unit, units go from largest to smallest and
//! appear at most once, and there are no spaces, signs or fractions. A duration is at
//! most ten years ([`MAX_DURATION`]): a larger one is an error, never a panic later.

use std::time::Duration;

/// Units from largest to smallest, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The longest duration accepted, in days: every deadline and wait the daemon
/// computes from a configured duration stays far inside what `Instant` and
/// `SystemTime` arithmetic can hold.
const MAX_DAYS: u64 = 3650;
pub const MAX_DURATION: Duration = Duration::from_secs(MAX_DAYS * 86_400);

const EXPECTED: &str =
    "expected a number and a unit (ms, s, m, h, d), e.g. `90s`, `10m` or `1h30m`";

/// Parses a duration such as `90s`, `5m`, `2h`, `120d`, `500ms` or `1h30m`.
///
/// The error is a human-readable reason that does not repeat the input, so that
/// callers can prefix it with the location and the value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err(format!("empty duration: {EXPECTED}"));
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    // Index into UNITS of the last unit seen: the next one must be smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(match rest.chars().next() {
                Some('-') => "a duration cannot be negative".to_owned(),
                Some(c) if c.is_whitespace() => {
                    format!("unexpected space: {EXPECTED}")
                }
                _ => EXPECTED.to_owned(),
            });
        }
        let (digits, after) = rest.split_at(digits_len);
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(match after.chars().next() {
                None => format!("`{digits}` has no unit: write e.g. `{digits}s`"),
                Some('.') => "fractions are not supported: write e.g. `1h30m` or `90s`".to_owned(),
                Some(c) if c.is_whitespace() => {
                    format!("unexpected space: {EXPECTED}")
                }
                Some(_) => EXPECTED.to_owned(),
            });
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit `{unit}`: {EXPECTED}"));
        };
        if let Some(last) = last_unit
            && index <= last
        {
            return Err(format!(
                "unit `{unit}` after `{}`: write units from largest to smallest, each once (e.g. `1h30m`)",
                UNITS[last].0
            ));
        }
        last_unit = Some(index);
        let too_large = || format!("duration is too large: at most {MAX_DAYS}d");
        let number: u64 = digits.parse().map_err(|_| too_large())?;
        let ms = number.checked_mul(UNITS[index].1).ok_or_else(too_large)?;
        total_ms = total_ms.checked_add(ms).ok_or_else(too_large)?;
        rest = after;
    }
    let duration = Duration::from_millis(total_ms);
    if duration > MAX_DURATION {
        return Err(format!("duration is too large: at most {MAX_DAYS}d"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_examples() {
        for (text, secs) in [
            ("90s", 90),
            ("5m", 300),
            ("2h", 7_200),
            ("120d", 120 * 86_400),
            ("0s", 0),
            ("1h30m", 5_400),
            ("1d2h3m4s", 86_400 + 7_200 + 180 + 4),
            ("007s", 7),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("1m1ms"), Ok(Duration::from_millis(60_001)));
    }

    #[test]
    fn rejects_with_a_reason() {
        for (text, reason) in [
            ("", "empty duration"),
            ("10", "has no unit"),
            ("-5s", "cannot be negative"),
            ("5 s", "unexpected space"),
            (" 5s", "unexpected space"),
            ("5s ", "unexpected space"),
            ("1h 30m", "unexpected space"),
            ("+5s", "expected a number and a unit"),
            ("1.5h", "fractions are not supported"),
            ("5sec", "unknown unit `sec`"),
            ("5S", "unknown unit `S`"),
            ("5w", "unknown unit `w`"),
            ("s", "expected a number and a unit"),
            ("30m1h", "from largest to smallest"),
            ("1m1m", "from largest to smallest"),
            ("1h-5m", "cannot be negative"),
            ("5s!", "expected a number and a unit"),
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn durations_over_ten_years_are_an_error_not_a_panic() {
        for text in [
            "99999999999999999999999s",
            "213503982334601d",
            "18446744073709552s",
            "9223372036854775807d",
            "18446744073709551615ms",
            "1s18446744073709551615ms",
            "3651d",
            "3650d1ms",
        ] {
            assert_eq!(
                parse_duration(text),
                Err("duration is too large: at most 3650d".to_owned()),
                "{text}"
            );
        }
        // A trailing number without unit after a huge value is that error.
        assert!(parse_duration("18446744073709551615ms1").is_err());
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
        assert_eq!(
            parse_duration("3649d23h59m59s999ms"),
            Ok(MAX_DURATION - Duration::from_millis(1))
        );
    }
}
