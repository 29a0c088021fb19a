//! The per-group state machine: from observations in event-time order to firing intervals.
//!
//! Each (rule, group) has one [`Machine`]. The dataflow feeds it the group's events in
//! event-time order, interleaved with its timers ([`Machine::next_timer`]), and collects the
//! [`Transition`]s: the condition starts firing, or stops. Two steps:
//!
//! 1. the **raw** condition, by rule kind: an event rule is true at each matching event; a
//!    state rule follows the group's latest event (or, with `clear_condition`, turns on with
//!    the filter and off with the clear condition); a window rule evaluates its condition on
//!    the aggregate of the matching events in the window; an absence rule is true once no
//!    matching event came for `absent_for` (counting from registration for a device that never
//!    reported); a deadline rule is true from the due time its starting event carries until
//!    an event matches its `done` condition;
//! 2. **firing**: the raw condition must hold for `for` before firing starts; once firing, it
//!    stops `keep_firing_for` after the raw condition last ended (hysteresis).

use crate::spec::{Aggregate, Kind, Rule, Window};
use model::seen::Seen;
use std::collections::{HashSet, VecDeque};

/// A value a window keeps for its aggregate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Item {
    Num(f64),
    Text(String),
    /// For `count` and `rate`: nothing to keep but the time.
    Unit,
}

/// What a window rule's condition sees: the aggregate of the current window, how many
/// events it holds, and (tumbling windows with `prior_windows`) the windows before it, most
/// recent first, as (value, count), (0, 0) for a window without events.
#[derive(Debug, Clone, Copy)]
pub struct Aggregated<'a> {
    pub value: f64,
    pub count: usize,
    pub prior: &'a [(f64, usize)],
}

/// A field of an event kept for `prev` (rules whose filter reads the group's previous event).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Scalar {
    Text(String),
    Num(f64),
    Bool(bool),
}

/// A change of the firing state.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Event time of the change, ms.
    pub time: u64,
    /// True when firing starts, false when it stops.
    pub start: bool,
    /// The value that made it fire (the same on the stop as on its start) (the aggregate; 1 for event and state rules; for absence,
    /// the seconds of silence).
    pub value: f64,
    /// When the episode started firing (on a stop, its start's time).
    pub since: u64,
    /// How much later than `since` the start was known (0 but for a key's late backlog;
    /// see [`Machine::set_late_by`]).
    pub late_by_ms: u64,
}

/// An episode that fires: since when, with what value, and how late it was known.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Firing {
    pub since: u64,
    pub value: f64,
    pub late_by_ms: u64,
}

/// The matched events of an episode, kept to explain it (docs/explain.md): the latest ones,
/// and how many earlier ones were let go.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trail {
    pub events: VecDeque<Seen>,
    pub earlier: u32,
}

/// The state of one (rule, group); checkpoints keep it as it is.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    raw: bool,
    raw_since: u64,
    false_since: Option<u64>,
    /// Since when it fires, the value it started with, and how late that was known.
    firing: Option<Firing>,
    value: f64,
    items: VecDeque<(u64, Item)>,
    /// Absence: the last matching event, or the registration time. Deadline: when the
    /// running clock is due (one field for both keeps every machine small).
    last_seen: Option<u64>,
    /// Rules whose filter reads `prev`: the fields of the group's previous event the filter
    /// reads, as plain scalars (a CEL map per device would cost several times as much; it is
    /// built when the filter runs).
    prev: Option<Box<[Option<Scalar>]>>,
    /// What a few machines keep besides: boxed, so that every other machine pays 8 bytes for
    /// it (the rules' state per device is measured in docs/BENCHMARKS.md and over its target).
    extra: Option<Box<Extra>>,
}

/// A machine's rarely used state.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Extra {
    /// Tumbling windows kept for `prior`: (window start, value, count), most recent first.
    prior: Option<VecDeque<(u64, f64, usize)>>,
    /// Event, state and deadline rules: the matched events of the episode under way (see
    /// [`Machine::saw`]). A machine is dropped when idle, and its trail with it.
    trail: Option<Trail>,
}

impl Machine {
    /// A machine for a registered device (absence counts from `registered_at`).
    pub fn registered(registered_at: u64) -> Machine {
        Machine {
            last_seen: Some(registered_at),
            ..Machine::default()
        }
    }

    /// The episode it fires, if it fires now.
    pub fn firing(&self) -> Option<Firing> {
        self.firing
    }

    /// Records that the episode firing now was known `ms` after it started (judged from a
    /// late backlog): its stop then names the same record as its start.
    pub fn set_late_by(&mut self, ms: u64) {
        if let Some(f) = self.firing.as_mut() {
            f.late_by_ms = ms;
        }
    }

    /// Whether the condition fires now.
    pub fn is_firing(&self) -> bool {
        self.firing.is_some()
    }

    /// Whether the machine holds nothing worth keeping (it can be dropped).
    pub fn is_idle(&self) -> bool {
        !self.raw
            && self.firing.is_none()
            && self.items.is_empty()
            && self.last_seen.is_none()
            && self.prior().is_none()
            && self.prev.is_none()
    }

    /// The matched events kept for the episode under way.
    pub fn trail(&self) -> Option<&Trail> {
        self.extra.as_ref()?.trail.as_ref()
    }

    fn prior(&self) -> Option<&VecDeque<(u64, f64, usize)>> {
        self.extra.as_ref()?.prior.as_ref()
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Drops the trail, or the windows kept for `prior` (and the box once it holds nothing).
    fn drop_extra(&mut self, trail: bool) {
        if let Some(e) = self.extra.as_mut() {
            if trail {
                e.trail = None;
            } else {
                e.prior = None;
            }
            if e.trail.is_none() && e.prior.is_none() {
                self.extra = None;
            }
        }
    }

    /// Keeps a matched event `seen` of time `t` (already judged by [`Machine::event`]) for the
    /// episode under way, the latest `keep` of them: for an event rule its match, for a state
    /// rule those while its raw condition holds up to the start (the `for` period), for a
    /// deadline the event that started its clock. Once an episode has started, later events
    /// did not make it. Window rules keep none: their items are the evidence.
    pub fn saw(&mut self, rule: &Rule, seen: &Seen, keep: usize, t: u64) {
        if self.firing.is_some_and(|f| f.since < t) {
            return;
        }
        let episode = match rule.kind {
            Kind::Event => true,
            Kind::State { .. } => self.raw,
            Kind::Deadline { .. } => self.last_seen.is_some() && self.trail().is_none(),
            _ => false,
        };
        if !episode || keep == 0 {
            return;
        }
        let trail = self.extra().trail.get_or_insert_with(Trail::default);
        let mut seen = seen.clone();
        if let Some(last) = trail.events.back() {
            seen.share_body(last);
        }
        while trail.events.len() >= keep {
            trail.events.pop_front();
            trail.earlier += 1;
        }
        trail.events.push_back(seen);
    }

    /// The window's items as it holds them: (event time, what each added).
    pub fn items(&self) -> impl Iterator<Item = &(u64, Item)> {
        self.items.iter()
    }

    /// Since when the raw condition holds (a `for` period's start), if it does.
    pub fn raw_since(&self) -> Option<u64> {
        self.raw.then_some(self.raw_since)
    }

    /// An absence rule's last matching event (or registration); a deadline's due time.
    pub fn last_seen(&self) -> Option<u64> {
        self.last_seen
    }

    /// The group's previous event (rules whose filter reads `prev`).
    pub fn prev(&self) -> Option<&[Option<Scalar>]> {
        self.prev.as_deref()
    }

    /// Keeps an event's fields (those the filter reads) as the previous event's, for the
    /// next event of the group.
    pub fn set_prev(&mut self, fields: Vec<Option<Scalar>>) {
        self.prev = Some(fields.into_boxed_slice());
    }

    /// An event of the group at `t`. `matched`: the rule's filter holds; `cleared`: its clear
    /// condition holds (state rules); `item`: what the event adds to a window; `condition`
    /// evaluates a window rule's (condition, clear) on (value, count).
    pub fn event(
        &mut self,
        rule: &Rule,
        t: u64,
        matched: bool,
        cleared: bool,
        item: Item,
        condition: &mut dyn FnMut(&Aggregated<'_>) -> (bool, bool),
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        match &rule.kind {
            Kind::Event | Kind::Window { .. } if cleared && rule.ended_by.is_some() => {
                self.end_now(t, &mut out)
            }
            Kind::Event => {
                if matched {
                    self.value = carried(&item);
                    self.set_raw(t, true, rule, &mut out);
                    self.set_raw(t, false, rule, &mut out);
                }
            }
            Kind::State { clear: None } => {
                if matched {
                    self.value = carried(&item);
                }
                self.set_raw(t, matched, rule, &mut out)
            }
            Kind::State { clear: Some(_) } => {
                if !self.raw && matched {
                    self.value = carried(&item);
                    self.set_raw(t, true, rule, &mut out);
                } else if self.raw && cleared {
                    self.set_raw(t, false, rule, &mut out);
                }
            }
            Kind::Window {
                window,
                aggregate,
                prior,
                ..
            } => {
                self.evict(t, *window, aggregate, *prior);
                // For a distinct count, a repeat (a duplicate complaint id) counts from its first
                // occurrence: keeping the later copy would hold the value in the window longer.
                let repeat = matches!(aggregate, Aggregate::Distinct(_))
                    && self.items.iter().any(|(_, i)| *i == item);
                if matched && !repeat {
                    self.items.push_back((t, item));
                }
                self.window_raw(t, rule, *window, aggregate, condition, &mut out);
            }
            Kind::Absence { .. } => {
                if matched {
                    self.last_seen = Some(t);
                    self.set_raw(t, false, rule, &mut out);
                }
            }
            Kind::Deadline { working_days, .. } => {
                if cleared {
                    self.last_seen = None;
                    self.drop_extra(true);
                    self.set_raw(t, false, rule, &mut out);
                } else if matched
                    && self.last_seen.is_none()
                    && !self.raw
                    && let Item::Num(due) = item
                {
                    // A repeat of the starting event (a duplicate) never restarts the clock.
                    self.last_seen = Some(due as u64);
                    self.value = f64::from(*working_days);
                    // Already due (a clock restored at start that ran out meanwhile): it fires
                    // now; nothing may be emitted behind the time being handled.
                    if t >= due as u64 {
                        self.set_raw(t, true, rule, &mut out);
                    }
                }
            }
        }
        self.settle(t, rule, &mut out);
        out
    }

    /// A timer at `t` (one this machine asked for with [`Machine::next_timer`]).
    pub fn timer(
        &mut self,
        rule: &Rule,
        t: u64,
        condition: &mut dyn FnMut(&Aggregated<'_>) -> (bool, bool),
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        match &rule.kind {
            Kind::Window {
                window,
                aggregate,
                prior,
                ..
            } => {
                self.evict(t, *window, aggregate, *prior);
                self.window_raw(t, rule, *window, aggregate, condition, &mut out);
            }
            Kind::Absence {
                after_ms, hours, ..
            } => {
                if let Some(seen) = self.last_seen
                    && !self.raw
                {
                    let due = crate::spec::absence_due(seen, *after_ms, *hours);
                    if t >= due {
                        self.value = (t - seen) as f64 / 1000.0;
                        self.set_raw(due, true, rule, &mut out);
                    }
                }
            }
            Kind::Deadline { .. } => {
                if let Some(due) = self.last_seen
                    && !self.raw
                    && t >= due
                {
                    self.set_raw(due, true, rule, &mut out);
                }
            }
            _ => {}
        }
        self.settle(t, rule, &mut out);
        out
    }

    /// The next time this machine needs to be woken, if any.
    pub fn next_timer(&self, rule: &Rule) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        if self.raw && self.firing.is_none() && rule.for_ms > 0 {
            at(self.raw_since + rule.for_ms);
        }
        if let (false, Some(_), Some(since)) = (self.raw, self.firing, self.false_since) {
            at(since + rule.keep_firing_for_ms);
        }
        match &rule.kind {
            Kind::Window {
                window: Window::Sliding(w),
                ..
            } => {
                if let Some((t, _)) = self.items.front() {
                    at(t + w);
                }
            }
            Kind::Window {
                window: Window::Tumbling(w),
                ..
            } => {
                if let Some((t, _)) = self.items.front() {
                    at(window_start(*t, *w) + w);
                }
            }
            Kind::Absence {
                after_ms, hours, ..
            } => {
                if let (false, Some(seen)) = (self.raw, self.last_seen) {
                    at(crate::spec::absence_due(seen, *after_ms, *hours));
                }
            }
            Kind::Deadline { .. } => {
                if let (false, Some(due)) = (self.raw, self.last_seen) {
                    at(due);
                }
            }
            _ => {}
        }
        next
    }

    fn evict(&mut self, t: u64, window: Window, aggregate: &Aggregate, keep: u32) {
        match window {
            Window::Sliding(w) => {
                while self.items.front().is_some_and(|(x, _)| x + w <= t) {
                    self.items.pop_front();
                }
            }
            Window::Tumbling(w) => {
                let start = window_start(t, w);
                if keep > 0 && self.items.front().is_some_and(|(x, _)| *x < start) {
                    // Close the windows that ended: their aggregates become `prior`.
                    let prior = self
                        .extra
                        .get_or_insert_with(Box::default)
                        .prior
                        .get_or_insert_with(VecDeque::new);
                    while let Some(&(x, _)) = self.items.front() {
                        let ws = window_start(x, w);
                        if ws >= start {
                            break;
                        }
                        let mut closed = VecDeque::new();
                        while self
                            .items
                            .front()
                            .is_some_and(|(y, _)| window_start(*y, w) == ws)
                        {
                            closed.extend(self.items.pop_front());
                        }
                        prior.push_front((
                            ws,
                            aggregate_value(aggregate, &closed, w),
                            closed.len(),
                        ));
                    }
                    let oldest = start.saturating_sub(w * keep as u64);
                    prior.retain(|(ws, _, _)| *ws >= oldest);
                }
                while self.items.front().is_some_and(|(x, _)| *x < start) {
                    self.items.pop_front();
                }
            }
        }
    }

    fn window_raw(
        &mut self,
        t: u64,
        rule: &Rule,
        window: Window,
        aggregate: &Aggregate,
        condition: &mut dyn FnMut(&Aggregated<'_>) -> (bool, bool),
        out: &mut Vec<Transition>,
    ) {
        let value = aggregate_value(aggregate, &self.items, window.size_ms());
        let prior = match (window, self.prior()) {
            (Window::Tumbling(w), Some(kept)) => {
                let start = window_start(t, w);
                let keep = match &rule.kind {
                    Kind::Window { prior, .. } => *prior as u64,
                    _ => 0,
                };
                (1..=keep)
                    .map(|k| {
                        let ws = start.saturating_sub(k * w);
                        kept.iter()
                            .find(|(s, _, _)| *s == ws)
                            .map_or((0.0, 0), |&(_, v, n)| (v, n))
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let (holds, clears) = condition(&Aggregated {
            value,
            count: self.items.len(),
            prior: &prior,
        });
        let has_clear = matches!(&rule.kind, Kind::Window { clear: Some(_), .. });
        let raw = if self.raw && has_clear {
            !clears
        } else {
            holds
        };
        if raw && !self.raw {
            self.value = value;
        }
        self.set_raw(t, raw, rule, out);
    }

    /// An event matched the rule's `ended_by`: the condition ends at `t` whatever
    /// `keep_firing_for` says, and the window starts again empty.
    fn end_now(&mut self, t: u64, out: &mut Vec<Transition>) {
        self.items.clear();
        self.drop_extra(false);
        self.raw = false;
        self.false_since = None;
        if let Some(f) = self.firing.take() {
            out.push(Transition {
                time: t,
                start: false,
                value: f.value,
                since: f.since,
                late_by_ms: f.late_by_ms,
            });
        }
    }

    fn set_raw(&mut self, t: u64, raw: bool, rule: &Rule, out: &mut Vec<Transition>) {
        if raw == self.raw {
            return;
        }
        self.raw = raw;
        if raw {
            self.raw_since = t;
            self.false_since = None;
            // A new raw period is a new episode's evidence (a deadline's is its start).
            if !matches!(rule.kind, Kind::Deadline { .. }) {
                self.drop_extra(true);
            }
        } else {
            self.false_since = Some(t);
        }
        self.settle(t, rule, out);
    }

    fn settle(&mut self, t: u64, rule: &Rule, out: &mut Vec<Transition>) {
        if self.raw {
            if self.firing.is_none() && t >= self.raw_since + rule.for_ms {
                let at = self.raw_since + rule.for_ms;
                self.firing = Some(Firing {
                    since: at,
                    value: self.value,
                    late_by_ms: 0,
                });
                out.push(Transition {
                    time: at,
                    start: true,
                    value: self.value,
                    since: at,
                    late_by_ms: 0,
                });
            }
        } else if let (Some(f), Some(since)) = (self.firing, self.false_since)
            && t >= since + rule.keep_firing_for_ms
        {
            self.firing = None;
            out.push(Transition {
                time: since + rule.keep_firing_for_ms,
                start: false,
                value: f.value,
                since: f.since,
                late_by_ms: f.late_by_ms,
            });
        }
    }
}

/// The start of the tumbling window of size `w` holding `t`: windows are aligned to local
/// (Asia/Shanghai) time, so a one-day window is a calendar day.
pub fn window_start(t: u64, w: u64) -> u64 {
    let local = t + model::time::LOCAL_OFFSET_MS;
    local - local % w - model::time::LOCAL_OFFSET_MS
}

/// The value an event or state rule's event carries: its `value` expression's (as an item),
/// else 1.
fn carried(item: &Item) -> f64 {
    match item {
        Item::Num(v) => *v,
        _ => 1.0,
    }
}

fn aggregate_value(a: &Aggregate, items: &VecDeque<(u64, Item)>, window_ms: u64) -> f64 {
    let nums = || {
        items
            .iter()
            .filter_map(|(_, i)| if let Item::Num(n) = i { Some(*n) } else { None })
    };
    match a {
        Aggregate::Count => items.len() as f64,
        Aggregate::Rate => items.len() as f64 / (window_ms as f64 / 1000.0),
        Aggregate::Sum(_) => nums().sum(),
        Aggregate::Avg(_) => {
            let (s, n) = nums().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
            if n == 0 { 0.0 } else { s / n as f64 }
        }
        Aggregate::Min(_) => nums().fold(f64::INFINITY, f64::min),
        Aggregate::Max(_) => nums().fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Distinct(_) => {
            let set: HashSet<String> = items
                .iter()
                .map(|(_, i)| match i {
                    Item::Num(n) => n.to_string(),
                    Item::Text(s) => s.clone(),
                    Item::Unit => String::new(),
                })
                .collect();
            set.len() as f64
        }
        Aggregate::Last(_) => items
            .iter()
            .rev()
            .find_map(|(_, i)| if let Item::Num(n) = i { Some(*n) } else { None })
            .unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    fn rule(body: &str) -> Rule {
        let text = format!("[[rule]]\nid = \"r\"\nseverity = \"major\"\n{body}");
        load_str("t.toml", &text).unwrap().remove(0)
    }

    /// Drives a machine with (time, matched) events and timers in time order until `until`.
    fn run(
        rule: &Rule,
        mut m: Machine,
        events: &[(u64, bool, f64)],
        until: u64,
    ) -> Vec<(u64, bool)> {
        let mut cond = |a: &Aggregated<'_>| {
            let v = a.value;
            let threshold = match &rule.kind {
                Kind::Window { condition, .. } => condition
                    .source
                    .trim_start_matches("value >= ")
                    .parse::<f64>()
                    .unwrap_or(1.0),
                _ => 1.0,
            };
            (v >= threshold, v == 0.0)
        };
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let next_event = events.get(i).map(|e| e.0);
            let next_timer = m.next_timer(rule);
            // Timers go first at equal times.
            let (t, timer_first) = match (next_event, next_timer) {
                (None, None) => break,
                (Some(e), Some(tm)) => (e.min(tm), tm <= e),
                (Some(e), None) => (e, false),
                (None, Some(tm)) => (tm, true),
            };
            if t >= until {
                break;
            }
            let transitions = if timer_first {
                m.timer(rule, t, &mut cond)
            } else {
                let (et, matched, x) = events[i];
                i += 1;
                m.event(rule, et, matched, !matched, Item::Num(x), &mut cond)
            };
            out.extend(transitions.into_iter().map(|tr| (tr.time, tr.start)));
        }
        out
    }

    #[test]
    fn state_with_for_and_hysteresis() {
        let r = rule(
            "stream = \"elevator_status\"\nmode = \"state\"\nfilter = 'event.speed_mps < 0.05'\nfor = \"10s\"\nkeep_firing_for = \"10s\"\n",
        );
        // True from 0; a 3 s false blip at 30 s does not end it; false from 50 s: ends at 60 s.
        let ev = [
            (0, true, 0.0),
            (5_000, true, 0.0),
            (30_000, false, 0.0),
            (33_000, true, 0.0),
            (50_000, false, 0.0),
        ];
        assert_eq!(
            run(&r, Machine::default(), &ev, 100_000),
            vec![(10_000, true), (60_000, false)]
        );
        // Never held for 10 s: never fires.
        let short = [(0, true, 0.0), (9_000, false, 0.0)];
        assert_eq!(run(&r, Machine::default(), &short, 100_000), vec![]);
    }

    #[test]
    fn ended_by_ends_a_window_rule_at_the_event_not_keep_firing_for_later() {
        let r = rule(
            "stream = \"market_residue\"\nfilter = 'event.result == \"fail\"'\nwindow = { sliding = \"2h\" }\naggregate = \"count\"\ncondition = \"value >= 3\"\nkeep_firing_for = \"24h\"\nended_by = 'event.result == \"pass\"'\n",
        );
        let min = 60_000;
        // Three fails within 2 h: on hold from the third; a pass 130 min later ends it there.
        let ev = [
            (10 * min, true, 0.0),
            (40 * min, true, 0.0),
            (70 * min, true, 0.0),
            (200 * min, false, 0.0),
        ];
        assert_eq!(
            run(&r, Machine::default(), &ev, 48 * 60 * min),
            vec![(70 * min, true), (200 * min, false)]
        );
        // Without a pass the hold lasts keep_firing_for past the window.
        assert_eq!(
            run(&r, Machine::default(), &ev[..3], 48 * 60 * min),
            vec![(70 * min, true), ((10 + 120 + 24 * 60) * min, false)]
        );
    }

    #[test]
    fn event_rules_hold_for_keep_firing_for_after_the_last_match() {
        let r = rule(
            "stream = \"kitchen_detection\"\nfilter = 'event.kind == \"rodent\"'\nkeep_firing_for = \"5m\"\n",
        );
        let ev = [(0, true, 0.0), (60_000, true, 0.0), (100_000, false, 0.0)];
        assert_eq!(
            run(&r, Machine::default(), &ev, 10_000_000),
            vec![(0, true), (360_000, false)]
        );
    }

    #[test]
    fn sliding_count_window() {
        let r = rule(
            "stream = \"kitchen_detection\"\ngroup_by = [\"kitchen_id\"]\nwindow = { sliding = \"10m\" }\naggregate = \"count\"\ncondition = \"value >= 3\"\n",
        );
        let m = 60_000;
        let ev = [
            (0, true, 0.0),
            (2 * m, true, 0.0),
            (4 * m, false, 0.0),
            (5 * m, true, 0.0),
            (20 * m, true, 0.0),
        ];
        // Third match at 5 m: fires; the first leaves the window at 10 m: stops.
        assert_eq!(
            run(&r, Machine::default(), &ev, 60 * m),
            vec![(5 * m, true), (10 * m, false)]
        );
    }

    #[test]
    fn absence_counts_from_registration_for_a_device_never_seen() {
        let r = rule("stream = \"elevator_status\"\nabsent_for = \"180s\"\n");
        assert_eq!(
            run(&r, Machine::registered(1_000), &[], 1_000_000),
            vec![(181_000, true)]
        );
        let seen = [
            (100_000, true, 0.0),
            (200_000, true, 0.0),
            (600_000, true, 0.0),
        ];
        assert_eq!(
            run(&r, Machine::registered(0), &seen, 1_000_000),
            vec![(380_000, true), (600_000, false), (780_000, true)]
        );
    }

    #[test]
    fn state_with_clear_condition_stays_until_cleared() {
        let r = rule(
            "stream = \"elevator_status\"\nmode = \"state\"\nfilter = 'event.occupied'\nclear_condition = '!event.occupied'\n",
        );
        // `run` passes cleared = !matched.
        let ev = [(0, true, 0.0), (1_000, true, 0.0), (2_000, false, 0.0)];
        assert_eq!(
            run(&r, Machine::default(), &ev, 10_000),
            vec![(0, true), (2_000, false)]
        );
    }
}
