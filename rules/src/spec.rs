//! Rules as written and as validated.

use crate::expr::Expr;
use model::Stream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How bad a condition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Minor,
    Major,
    Critical,
}

impl Severity {
    /// The spelling used in files and labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

/// One rule as written in a file (`[[rule]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    pub stream: String,
    /// `event` (default): a matching event makes the condition hold for `keep_firing_for`.
    /// `state`: the condition holds while the group's latest event matches.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    /// Event and state rules: the number the condition carries, a CEL expression over
    /// `event` and `ref` (e.g. `event.speed_mps`), taken from the event that made it fire;
    /// 1 without it. (Always written: rules travel between processes in bincode, which has
    /// no field names to skip by.)
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    /// `{ sliding = "10m" }` or `{ tumbling = "1m" }`.
    #[serde(default)]
    pub window: Option<WindowSource>,
    /// `count`, `rate`, or `sum(field)`, `avg(field)`, `min(field)`, `max(field)`,
    /// `distinct(field)`, `last(field)`.
    #[serde(default)]
    pub aggregate: Option<String>,
    /// Over the aggregate: CEL with `value` and `count` (and `prior`, `prior_count`).
    #[serde(default)]
    pub condition: Option<String>,
    /// Tumbling windows: how many earlier windows the condition sees, as `prior[0]` (the
    /// window before this one) … and `prior_count[…]` (0 for a window without events).
    #[serde(default)]
    pub prior_windows: Option<u32>,
    /// State rules: once firing, stay until an event matches this (instead of until the
    /// filter stops matching). Window rules: over `value`.
    #[serde(default)]
    pub clear_condition: Option<String>,
    /// Event and window rules: an event of the group that matches this (CEL over `event` and
    /// `ref`) ends the condition at once, whatever `keep_firing_for` says, and empties the
    /// window: a hold that lasts until a later test passes.
    #[serde(default)]
    pub ended_by: Option<String>,
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    /// Absence: a registered device with no matching event for this long.
    #[serde(default)]
    pub absent_for: Option<String>,
    /// The registry absence is judged against: `elevators`, `cameras`, `scales`.
    #[serde(default)]
    pub registry: Option<String>,
    /// Absence: only time within these local hours counts (`"06:00-20:00"`, Asia/Shanghai).
    #[serde(default)]
    pub hours: Option<String>,
    /// Absence: any event of these streams from the device counts as hearing from it too.
    #[serde(default)]
    pub seen_on: Vec<String>,
    /// Absence: which registered devices the rule watches, in CEL over `ref` only (e.g.
    /// `has(ref.kitchen) && ref.kitchen.venue_type == "school"`).
    #[serde(default)]
    pub registry_filter: Option<String>,
    /// Deadline: a matching event starts a clock of working days for its group; an event of
    /// `done_stream` matching `done` stops it; the condition fires when the clock runs out.
    #[serde(default)]
    pub deadline: Option<DeadlineSource>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub route: Vec<String>,
    #[serde(default)]
    pub inhibits: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

const fn yes() -> bool {
    true
}

/// A window as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSource {
    #[serde(default)]
    pub sliding: Option<String>,
    #[serde(default)]
    pub tumbling: Option<String>,
}

/// A deadline as written: `{ working_days = 7, done_stream = "complaint_status",
/// done = 'event.status in ["accepted", "rejected"]' }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineSource {
    /// Working days after the day of the starting event (weekends and the reference data's
    /// holidays skipped, its make-up working days counted); due at the end of the last one,
    /// local time (Asia/Shanghai).
    pub working_days: u32,
    /// The stream whose events can stop the clock (default: the rule's stream).
    #[serde(default)]
    pub done_stream: Option<String>,
    /// Over an event of `done_stream` of the same group: the clock stops when it holds.
    pub done: String,
}

/// What makes the raw condition true.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Each matching event: true for `keep_firing_for` after it.
    Event,
    /// The latest event of the group matches (`clear`: until an event matches it instead).
    State { clear: Option<Expr> },
    /// An aggregate over a window of matching events, with a condition over `value`.
    Window {
        window: Window,
        aggregate: Aggregate,
        condition: Expr,
        clear: Option<Expr>,
        /// Earlier tumbling windows the condition sees (`prior`).
        prior: u32,
    },
    /// No matching event from a registered device for `after_ms` (of time within `hours`,
    /// local milliseconds from midnight, when given).
    Absence {
        after_ms: u64,
        registry: Registry,
        hours: Option<(u64, u64)>,
        /// Other streams whose events count as hearing from the device.
        seen_on: Vec<Stream>,
        /// Which devices it watches (over `ref`); the others are neither registered nor heard.
        registry_filter: Option<Expr>,
    },
    /// A matching event starts a clock of `working_days` for its group, unless one runs; an
    /// event of `done_stream` matching `done` stops it; true once it runs out, until stopped.
    Deadline {
        working_days: u32,
        done_stream: Stream,
        done: Expr,
    },
}

/// A window's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Sliding(u64),
    Tumbling(u64),
}

impl Window {
    pub fn size_ms(self) -> u64 {
        match self {
            Window::Sliding(s) | Window::Tumbling(s) => s,
        }
    }
}

/// An aggregate over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Rate,
    Sum(String),
    Avg(String),
    Min(String),
    Max(String),
    Distinct(String),
    Last(String),
}

impl Aggregate {
    /// The field it reads, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Aggregate::Count | Aggregate::Rate => None,
            Aggregate::Sum(f)
            | Aggregate::Avg(f)
            | Aggregate::Min(f)
            | Aggregate::Max(f)
            | Aggregate::Distinct(f)
            | Aggregate::Last(f) => Some(f),
        }
    }
}

/// Registries absence can be judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Registry {
    Elevators,
    Cameras,
    Scales,
}

/// A validated rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub stream: Stream,
    pub filter: Option<Expr>,
    /// The number an event or state rule's condition carries (see [`RuleSource::value`]).
    pub value: Option<Expr>,
    /// An event that ends an event or window rule's condition (see [`RuleSource::ended_by`]).
    pub ended_by: Option<Expr>,
    pub group_by: Vec<String>,
    pub kind: Kind,
    pub for_ms: u64,
    pub keep_firing_for_ms: u64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub route: Vec<String>,
    pub inhibits: Vec<String>,
    pub enabled: bool,
    /// A filter that reads `prev` is evaluated per group, in event-time order, where the
    /// previous event is known: these are the event fields it reads (`event.x`, `prev.x`).
    pub prev_fields: Vec<String>,
    /// Where it was defined (`file:line`).
    pub origin: String,
    /// The text it was built from, for comparing rule sets.
    pub source: RuleSource,
}

/// When an absence that starts at `seen` has lasted `after_ms`, counting only the time within
/// the local daily `hours` (from, to: ms after local midnight) when given.
pub fn absence_due(seen: u64, after_ms: u64, hours: Option<(u64, u64)>) -> u64 {
    use model::time::{DAY_MS, day_start, local_day};
    let Some((from, to)) = hours.filter(|(from, to)| from < to) else {
        return seen + after_ms;
    };
    let (mut t, mut left) = (seen, after_ms);
    loop {
        let midnight = day_start(local_day(t));
        let (open, close) = (midnight + from, midnight + to);
        if t < open {
            t = open;
        }
        if t < close {
            if left <= close - t {
                return t + left;
            }
            left -= close - t;
        }
        t = midnight + DAY_MS + from;
    }
}

/// Parses `HH:MM-HH:MM` into ms after midnight.
pub fn parse_hours(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once('-')?;
    let ms = |x: &str| -> Option<u64> {
        let (h, m) = x.trim().split_once(':')?;
        let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some((h * 60 + m) * 60_000)
    };
    let (from, to) = (ms(a)?, ms(b)?);
    (from < to).then_some((from, to))
}

/// Parses a duration such as `90s`, `10m`, `2h`, `7d`, `500ms`, or `1h30m`.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_counts_only_market_hours() {
        let hours = parse_hours("06:00-20:00");
        assert_eq!(hours, Some((6 * 3_600_000, 20 * 3_600_000)));
        assert_eq!(parse_hours("20:00-06:00"), None);
        assert_eq!(parse_hours("6-20"), None);
        // 2026-11-27 local midnight, epoch ms.
        let midnight = 1_795_708_800_000;
        let h = |n: u64| n * 3_600_000;
        let two_h = h(2);
        assert_eq!(
            absence_due(midnight + h(10), two_h, hours),
            midnight + h(12)
        );
        // Last heard at 19:00: one hour today, the other from 06:00 tomorrow.
        assert_eq!(
            absence_due(midnight + h(19), two_h, hours),
            midnight + h(24 + 7)
        );
        // Last heard at night: counting starts at 06:00.
        assert_eq!(absence_due(midnight + h(2), two_h, hours), midnight + h(8));
        assert_eq!(absence_due(midnight + h(2), two_h, None), midnight + h(4));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("7d"), Some(604_800_000));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 min"), None);
    }
}
