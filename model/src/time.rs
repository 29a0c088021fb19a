//! Event time: the contract's `ts` field and the local calendar.

use serde::{Deserializer, Serializer, de};
use std::fmt;

/// Milliseconds in one day.
pub const DAY_MS: u64 = 86_400_000;

/// The bureau's local offset from UTC (Asia/Shanghai has no daylight saving time).
pub const LOCAL_OFFSET_MS: u64 = 8 * 3_600_000;

/// The local calendar day (days since 1970-01-01, Asia/Shanghai) of an event time.
pub const fn local_day(ms: u64) -> u64 {
    (ms + LOCAL_OFFSET_MS) / DAY_MS
}

/// Formats a local day number as `YYYY-MM-DD`.
pub fn format_day(day: u64) -> String {
    let date = ::time::Date::from_julian_day(2_440_588 + day as i32).unwrap_or(::time::Date::MIN);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month() as u8,
        date.day()
    )
}

/// Parses an RFC 3339 timestamp into Unix epoch milliseconds. Times before 1970 are `None`.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let t =
        ::time::OffsetDateTime::parse(s, &::time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Serde adapter for `ts: Option<u64>`: accepts epoch milliseconds or an RFC 3339 string,
/// always writes epoch milliseconds.
pub mod ts_opt {
    use super::*;

    /// Writes the time as an integer of epoch milliseconds.
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(ms) => s.serialize_u64(*ms),
            None => s.serialize_none(),
        }
    }

    /// Reads epoch milliseconds or an RFC 3339 string; `null` is absent.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(TsVisitor)
    }

    struct TsVisitor;

    impl<'de> de::Visitor<'de> for TsVisitor {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("epoch milliseconds or an RFC 3339 string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("ts before 1970"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_rfc3339_ms(v)
                .map(Some)
                .ok_or_else(|| E::custom("ts is not an RFC 3339 time"))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_offset_and_fraction() {
        assert_eq!(
            parse_rfc3339_ms("2026-11-27T08:00:00.250+08:00"),
            Some(1_795_737_600_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-27T00:00:00Z"),
            Some(1_795_737_600_000)
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn local_day_rolls_over_at_shanghai_midnight() {
        let utc_1559 = 1_795_708_740_000; // 2026-11-26T15:59:00Z = 23:59 local
        assert_eq!(format_day(local_day(utc_1559)), "2026-11-26");
        assert_eq!(format_day(local_day(utc_1559 + 120_000)), "2026-11-27");
    }
}
