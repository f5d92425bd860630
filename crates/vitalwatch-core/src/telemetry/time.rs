//! [`Timestamp`]: a UTC instant in microseconds, parsed from the payload's many spellings.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use std::fmt;

/// A UTC instant, microseconds since the Unix epoch.
///
/// Stored and shown as RFC 3339 with a `Z` and six fractional digits, so text order is time
/// order (see [`Timestamp::to_rfc3339`]).
///
/// Serde (for state that is stored whole, such as the alert engine's per-device state) writes
/// the microseconds as an integer; records meant for people use RFC 3339 text through their
/// own `with` helpers.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// 2000-01-01T00:00:00Z: readings claiming an earlier time come from an unset clock.
pub const EARLIEST_MICROS: i64 = 946_684_800_000_000;
/// Below this an epoch number is seconds, above it milliseconds (1e11 s is the year 5138).
const EPOCH_MILLIS_THRESHOLD: f64 = 1e11;

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    pub fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis.saturating_mul(1000))
    }

    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub fn millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Seconds since the epoch, fractional.
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    pub fn saturating_add_micros(self, micros: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(micros))
    }

    pub fn saturating_sub(self, other: Timestamp) -> i64 {
        self.0.saturating_sub(other.0)
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Timestamp {
        Timestamp(dt.timestamp_micros())
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// `2024-01-16T10:30:45.123456Z`: fixed width, so lexical order is time order.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// Appends [`Timestamp::to_rfc3339`]'s text to `out`: the same characters, without a new
    /// `String` (the store formats two per reading into buffers it reuses).
    pub fn write_rfc3339(self, out: &mut String) {
        use chrono::Datelike;
        use chrono::format::{Fixed, Item, Numeric, Pad};
        const ITEMS: [Item<'static>; 13] = [
            Item::Numeric(Numeric::Year, Pad::Zero),
            Item::Literal("-"),
            Item::Numeric(Numeric::Month, Pad::Zero),
            Item::Literal("-"),
            Item::Numeric(Numeric::Day, Pad::Zero),
            Item::Literal("T"),
            Item::Numeric(Numeric::Hour, Pad::Zero),
            Item::Literal(":"),
            Item::Numeric(Numeric::Minute, Pad::Zero),
            Item::Literal(":"),
            Item::Numeric(Numeric::Second, Pad::Zero),
            Item::Fixed(Fixed::Nanosecond6),
            Item::Literal("Z"),
        ];
        let dt = self.to_datetime();
        // Four-digit years only: RFC 3339 has no others, and chrono spells them its own way.
        if (0..=9999).contains(&dt.year()) {
            // Writing into a String cannot fail.
            let _ = dt.format_with_items(ITEMS.iter()).write_to(out);
        } else {
            out.push_str(&self.to_rfc3339());
        }
    }

    /// Parses RFC 3339 / ISO 8601 text. A time with no zone (the seed's example) is UTC.
    /// Accepts `T` or a space between date and time, and a missing seconds fraction.
    pub fn parse_text(raw: &str) -> Option<Timestamp> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(raw) {
            return Some(Timestamp(dt.with_timezone(&Utc).timestamp_micros()));
        }
        // The seed's own spelling (no zone): chrono's ISO parser, much faster than a format string.
        if let Ok(naive) = raw.parse::<NaiveDateTime>() {
            return Some(Timestamp(naive.and_utc().timestamp_micros()));
        }
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(raw, format) {
                return Some(Timestamp(naive.and_utc().timestamp_micros()));
            }
        }
        // A zone without the colon, as some firmware prints it: `+0100`.
        for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
            if let Ok(dt) = DateTime::parse_from_str(raw, format) {
                return Some(Timestamp(dt.with_timezone(&Utc).timestamp_micros()));
            }
        }
        None
    }

    /// Parses an epoch number: seconds (possibly fractional) or, above 1e11, milliseconds.
    pub fn parse_epoch(value: f64) -> Option<Timestamp> {
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        let micros = if value >= EPOCH_MILLIS_THRESHOLD {
            value * 1e3
        } else {
            value * 1e6
        };
        // i64::MAX micros is the year 294 247; anything near it is nonsense anyway.
        if micros >= 9.0e18 {
            return None;
        }
        Some(Timestamp(micros.round() as i64))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Option<&str>) {
        let parsed = Timestamp::parse_text(raw).map(Timestamp::to_rfc3339);
        assert_eq!(parsed.as_deref(), expected, "parsing {raw:?}");
    }

    #[test]
    fn text_forms() {
        check(
            "2024-01-16T10:30:45.123456",
            Some("2024-01-16T10:30:45.123456Z"),
        );
        check("2024-01-16T10:30:45", Some("2024-01-16T10:30:45.000000Z"));
        check("2024-01-16 10:30:45.5", Some("2024-01-16T10:30:45.500000Z"));
        check("2024-01-16T10:30:45Z", Some("2024-01-16T10:30:45.000000Z"));
        check(
            "2024-01-16T11:30:45.25+01:00",
            Some("2024-01-16T10:30:45.250000Z"),
        );
        check(
            "2024-01-16T11:30:45+0100",
            Some("2024-01-16T10:30:45.000000Z"),
        );
        check("2024-01-16", None);
        check("yesterday", None);
        check("", None);
        check("2024-13-16T10:30:45", None);
    }

    #[test]
    fn epoch_seconds_and_millis() {
        let secs = Timestamp::parse_epoch(1_705_401_045.0).unwrap();
        let millis = Timestamp::parse_epoch(1_705_401_045_000.0).unwrap();
        assert_eq!(secs, millis);
        assert_eq!(secs.to_rfc3339(), "2024-01-16T10:30:45.000000Z");
        assert_eq!(
            Timestamp::parse_epoch(1_705_401_045.5).unwrap().micros() % 1_000_000,
            500_000
        );
        assert_eq!(Timestamp::parse_epoch(-1.0), None);
        assert_eq!(Timestamp::parse_epoch(f64::NAN), None);
        assert_eq!(Timestamp::parse_epoch(1e300), None);
    }

    #[test]
    fn text_order_is_time_order() {
        let a = Timestamp::from_micros(EARLIEST_MICROS).to_rfc3339();
        let b = Timestamp::from_micros(EARLIEST_MICROS + 1).to_rfc3339();
        let c = Timestamp::from_secs(4_102_444_800).to_rfc3339();
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    fn written(ts: Timestamp) -> String {
        let mut out = String::from("kept:");
        ts.write_rfc3339(&mut out);
        out
    }

    #[test]
    fn written_text_is_the_rfc3339_text_appended() {
        for micros in [
            0,
            1,
            EARLIEST_MICROS,
            1_705_401_045_123_456,
            1_705_401_045_000_000,
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999Z
            253_402_300_800_000_000, // year 10000: the fallback
            -1,
            -62_167_219_200_000_001, // just before year 0
            i64::MIN,
            i64::MAX,
        ] {
            let ts = Timestamp::from_micros(micros);
            assert_eq!(written(ts), format!("kept:{}", ts.to_rfc3339()), "{micros}");
        }
    }

    proptest::proptest! {
        #[test]
        fn written_text_matches_for_any_instant(micros in proptest::num::i64::ANY) {
            let ts = Timestamp::from_micros(micros);
            proptest::prop_assert_eq!(written(ts), format!("kept:{}", ts.to_rfc3339()));
        }

        #[test]
        fn written_text_matches_for_four_digit_years(
            micros in -62_167_219_200_000_000i64..253_402_300_800_000_000
        ) {
            let ts = Timestamp::from_micros(micros);
            proptest::prop_assert_eq!(written(ts), format!("kept:{}", ts.to_rfc3339()));
        }
    }
}
