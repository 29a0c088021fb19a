//! Event time: the contract's `ts` field and the local calendar.

use serde::{Deserializer, Serializer, de};
use std::fmt;

/// Milliseconds in one day.
pub const DAY_MS: u64 = 86_400_000;

/// The bureau's local offset from UTC (Asia/Shanghai has no daylight saving time).
pub const LOCAL_OFFSET_MS: u64 = 8 * 3_600_000;

/// The wall clock, epoch ms (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The local calendar day (days since 1970-01-01, Asia/Shanghai) of an event time.
pub const fn local_day(ms: u64) -> u64 {
    (ms + LOCAL_OFFSET_MS) / DAY_MS
}

/// When a local day (days since 1970-01-01, Asia/Shanghai) starts: its local midnight, epoch ms.
pub const fn day_start(day: u64) -> u64 {
    (day * DAY_MS).saturating_sub(LOCAL_OFFSET_MS)
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

/// Parses `YYYY-MM-DD` into a local day number (days since 1970-01-01).
pub fn parse_day(s: &str) -> Option<u64> {
    let mut parts = s.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let date =
        ::time::Date::from_calendar_date(year, ::time::Month::try_from(month).ok()?, day).ok()?;
    u64::try_from(date.to_julian_day() - 2_440_588).ok()
}

/// Working days in the bureau's calendar: Monday to Friday, except public holidays, plus the
/// weekend days declared working days in their place (调休).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkCalendar {
    holidays: std::collections::HashSet<u64>,
    workdays: std::collections::HashSet<u64>,
}

impl WorkCalendar {
    /// A calendar with these holidays and make-up working days (local day numbers).
    pub fn new(
        holidays: impl IntoIterator<Item = u64>,
        workdays: impl IntoIterator<Item = u64>,
    ) -> WorkCalendar {
        WorkCalendar {
            holidays: holidays.into_iter().collect(),
            workdays: workdays.into_iter().collect(),
        }
    }

    /// Whether a local day is a working day.
    pub fn is_working(&self, day: u64) -> bool {
        if self.workdays.contains(&day) {
            return true;
        }
        // 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays.
        (day + 3) % 7 < 5 && !self.holidays.contains(&day)
    }

    /// When a time limit of `n` working days that starts at `ms` runs out: the end (local
    /// midnight) of the `n`-th working day after the day of `ms`, epoch ms.
    pub fn working_days_after(&self, ms: u64, n: u32) -> u64 {
        let mut day = local_day(ms);
        let mut left = n;
        // A calendar with no working day at all would never end: give up after ten years.
        let mut guard = 3_660;
        while left > 0 && guard > 0 {
            day += 1;
            guard -= 1;
            if self.is_working(day) {
                left -= 1;
            }
        }
        day_start(day + 1)
    }
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
    #[test]
    fn working_days_skip_weekends_and_holidays_and_count_make_up_days() {
        let day = |s: &str| parse_day(s).unwrap();
        let at = |s: &str| day(s) * DAY_MS - LOCAL_OFFSET_MS + 10 * 3_600_000; // 10:00 local
        let end_of = |s: &str| (day(s) + 1) * DAY_MS - LOCAL_OFFSET_MS;
        assert_eq!(format_day(day("2026-11-27")), "2026-11-27");
        let plain = WorkCalendar::default();
        // Friday 2026-11-27 + 7 working days: Mon 30 Nov … Tue 8 Dec.
        assert_eq!(
            plain.working_days_after(at("2026-11-27"), 7),
            end_of("2026-12-08")
        );
        // Received on a Saturday: the count starts on Monday.
        assert_eq!(
            plain.working_days_after(at("2026-11-28"), 1),
            end_of("2026-11-30")
        );
        // A holiday week (1–7 Oct) with two make-up working days (Sun 27 Sep, Sat 10 Oct).
        let holidays: Vec<u64> = (1..=7).map(|d| day(&format!("2026-10-0{d}"))).collect();
        let cal = WorkCalendar::new(holidays, [day("2026-09-27"), day("2026-10-10")]);
        assert!(cal.is_working(day("2026-09-27")) && !cal.is_working(day("2026-10-05")));
        // From Friday 25 Sep: Sun 27, Mon 28, Tue 29, Wed 30, then Thu 8, Fri 9, Sat 10.
        assert_eq!(
            cal.working_days_after(at("2026-09-25"), 7),
            end_of("2026-10-10")
        );
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(parse_day("tomorrow"), None);
    }

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
