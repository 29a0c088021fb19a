//! One group key's machines, on the group's own timeline (docs/rules.md, "Every device on its
//! own clock").
//!
//! The rules of a group (a device, a stall, a merchant, a complaint) are judged on the
//! group's own event times, not on the global frontier: a backlog a device delivers after a
//! reconnect is judged where it belongs. Three pieces of state make that work, all per group
//! and all bounded by one copy of the group's machines:
//! - a [`Clock`]: the group's own time runs from its latest event at the frontier's pace, and
//!   joins the frontier once the group has been silent for [`SILENCE_MS`];
//! - the machines as they were at the group's latest event (`saved`), kept from the first
//!   timer that changes them until the next event: a backlog behind the clock is judged from
//!   them, so timers that ran ahead of it are undone;
//! - a catch-up ([`CatchUp`]) while a backlog is judged: the episodes published before it that
//!   the backlog has not confirmed yet. They stand until the group's clock is back where it
//!   was, so a backlog that confirms a condition does not end and restart it.
//!
//! Absence rules are judged on the frontier: they ask whether the device can be heard now,
//! and a backlog is heard when it arrives.

use super::conditions::{RuleSet, What};
use crate::conditions::Condition;
use rules::machine::{Firing, Machine, Transition};
use rules::spec::{Kind, Rule};
use serde::{Deserialize, Serialize};

/// A group whose last event arrived this long ago (on the frontier) follows the frontier: its
/// deadlines and timers are then the wall clock's, whatever its own clock said.
pub const SILENCE_MS: u64 = 60_000;

/// The group's own time: its latest event's time (`last`), moving at the frontier's pace from
/// when that event was handled (`heard`); the frontier once the group is silent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Clock {
    pub last: u64,
    pub heard: u64,
    /// The step between its two latest distinct own times: a gap several times longer than
    /// the device's usual step is an outage, one of its usual length a quiet device's cadence.
    pub step: u64,
}

impl Clock {
    /// The group's own time when the frontier is at `f`.
    pub fn at(&self, f: u64) -> u64 {
        if f < self.heard.saturating_add(SILENCE_MS) {
            self.last + f.saturating_sub(self.heard)
        } else {
            f
        }
    }

    /// The frontier time at which the group's own time reaches `due`.
    pub fn when(&self, due: u64) -> u64 {
        let lag = self.heard - self.last;
        let f = if due < self.last.saturating_add(SILENCE_MS) {
            due + lag
        } else {
            due.max(self.heard.saturating_add(SILENCE_MS))
        };
        // A timer woken before its group's time has reached it would be put back at the
        // same time for ever; once silent, the group's time is the frontier's.
        if self.at(f) >= due {
            f
        } else {
            due.max(self.heard.saturating_add(SILENCE_MS))
        }
    }
}

/// Episodes published before a backlog was judged that the judged backlog has not (yet)
/// confirmed, and the own time at which the group's clock is back where it was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatchUp {
    pub until: u64,
    pub stale: Vec<(u64, Firing)>,
}

/// How long after a gap in a group's own times it keeps what it takes to put a late part of
/// the gap in order (docs/rule-engine.md §7, "Reordering after a gap").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReorderLimits {
    /// An event on time that jumps more than this past the group's latest event opens a
    /// reorder (0: every event, on time or not, a new group's first too).
    pub gap_ms: u64,
    /// It is dropped this long after it opened (frontier time; 0: never opened).
    pub keep_ms: u64,
    /// ... or once it holds more events than this.
    pub events: usize,
}

impl Default for ReorderLimits {
    fn default() -> Self {
        ReorderLimits {
            gap_ms: 5_000,
            keep_ms: 5_000,
            events: 120,
        }
    }
}

/// The own-timed part of one event's batch: its own time and what it means for each rule.
pub type Held = (u64, Vec<Kept>);

/// What an event meant for one rule, as a reorder keeps it: most are a plain event (matched
/// or not, cleared or not, carrying a number or nothing) in 24 bytes rather than the 72 of
/// `(rule, What)`; the rest are boxed. Reorders hold every observation of a device's frames
/// for seconds after each gap, so their size is most of a reorder's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Kept {
    /// `num`: the carried number's bits, or [`NOTHING`] for none.
    Plain {
        rule: u64,
        matched: bool,
        cleared: bool,
        num: u64,
    },
    Other(Box<(u64, What)>),
}

/// A plain observation that carries no number.
const NOTHING: u64 = u64::MAX;

impl Kept {
    /// Rule `rule`'s observation `what`, kept.
    pub fn of(rule: u64, what: What) -> Kept {
        use rules::machine::Item;
        let plain = |matched, cleared, num| Kept::Plain {
            rule,
            matched,
            cleared,
            num,
        };
        match what {
            What::Event {
                matched,
                cleared,
                item: Item::Unit,
                seen: None,
            } => plain(matched, cleared, NOTHING),
            What::Event {
                matched,
                cleared,
                item: Item::Num(n),
                seen: None,
            } if n.to_bits() != NOTHING => plain(matched, cleared, n.to_bits()),
            what => Kept::Other(Box::new((rule, what))),
        }
    }

    /// The rule it is about.
    pub fn rule(&self) -> u64 {
        match self {
            Kept::Plain { rule, .. } => *rule,
            Kept::Other(o) => o.0,
        }
    }

    /// The observation again.
    pub fn observation(&self) -> (u64, What) {
        use rules::machine::Item;
        match self {
            Kept::Plain {
                rule,
                matched,
                cleared,
                num,
            } => {
                let item = if *num == NOTHING {
                    Item::Unit
                } else {
                    Item::Num(f64::from_bits(*num))
                };
                let what = What::Event {
                    matched: *matched,
                    cleared: *cleared,
                    item,
                    seen: None,
                };
                (*rule, what)
            }
            Kept::Other(o) => (**o).clone(),
        }
    }
}

/// What a group keeps after a gap so that an event arriving after later ones is judged in
/// its own-time order: the machines before the gap and every event judged since.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reorder {
    /// The own-timed machines as at the latest event before the gap, and its own time.
    pub base: Vec<(u64, Machine)>,
    pub base_last: u64,
    /// The own-timed parts of the events judged since, in own-time order.
    pub events: Vec<Held>,
    /// Episodes published and stopped since it opened, with the stop's time: a replay that
    /// finds one again does not publish it twice.
    pub ended: Vec<(u64, Firing, u64)>,
    /// Frontier time at which it is dropped.
    pub until: u64,
}

/// The machines of one group key, one per rule, and the group's timeline.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub machines: Vec<(u64, Machine)>,
    pub clock: Clock,
    /// The own-timed machines as they were at the latest event, once a timer changed them.
    pub saved: Option<Vec<(u64, Machine)>>,
    pub catch_up: Option<Box<CatchUp>>,
    pub reorder: Option<Box<Reorder>>,
    /// When the group's machines next need a timer (frontier time).
    #[serde(skip)]
    pub scheduled: Option<u64>,
    /// The earliest entry of the group in the timer heap. A later `scheduled` waits behind it
    /// and is queued when it pops, so a group has one or two entries in the heap however often
    /// its time moves (an absence timer moves with every frame).
    #[serde(skip)]
    pub queued: Option<u64>,
}

/// Whether `rule` is judged on the frontier rather than on its group's own time.
pub fn on_frontier(rule: &Rule) -> bool {
    matches!(rule.kind, Kind::Absence { .. })
}

/// Whether the rule of key `k` is in force and judged on its group's own time.
pub fn own_timed(set: &RuleSet, k: u64) -> bool {
    set.get(k).is_some_and(|r| !on_frontier(r))
}

impl Group {
    /// Before an event of own time `own` handled at frontier time `t`: if the event is behind
    /// the group's clock and timers changed the machines since the latest event, the machines
    /// go back to that event and the episodes published since stay until the clock is back.
    /// Returns the own time the event is judged at (never before the group's latest event),
    /// and whether timers may be due before it that have not run (the group's clock was
    /// behind the event, or the machines went back).
    pub fn place(&mut self, own: u64, t: u64, set: &RuleSet) -> (u64, bool) {
        let at = own.max(self.clock.last);
        let now = self.clock.at(t);
        if at < now
            && let Some(saved) = self.saved.take()
        {
            self.rewind(saved, now, set);
            return (at, true);
        }
        (at, at > now)
    }

    /// Notes an event judged at own time `at`, handled at frontier time `t`.
    pub fn heard(&mut self, at: u64, t: u64) {
        let step = if at > self.clock.last && self.clock.last > 0 {
            at - self.clock.last
        } else {
            self.clock.step
        };
        self.clock = Clock {
            last: at,
            heard: t,
            step,
        };
        self.saved = None;
    }

    fn rewind(&mut self, saved: Vec<(u64, Machine)>, now: u64, set: &RuleSet) {
        let own = |k: &u64| own_timed(set, *k);
        let mut published: Vec<(u64, Firing)> = self
            .machines
            .iter()
            .filter(|(k, _)| own(k))
            .filter_map(|(k, m)| m.firing().map(|f| (*k, f)))
            .collect();
        let catch_up = self.catch_up.get_or_insert_with(Box::default);
        published.append(&mut catch_up.stale);
        // A rule whose episode a timer stopped since the latest event keeps its machine: put
        // back, it would stop that episode a second time.
        let stopped = |k: &u64, m: &Machine| {
            m.firing()
                .is_some_and(|f| !published.iter().any(|(x, p)| x == k && same(p, &f)))
        };
        let (stopped, saved): (Vec<_>, Vec<_>) =
            saved.into_iter().partition(|(k, m)| stopped(k, m));
        self.machines
            .retain(|(k, _)| !own(k) || stopped.iter().any(|(x, _)| x == k));
        self.machines
            .extend(saved.into_iter().filter(|(k, _)| set.get(*k).is_some()));
        catch_up.stale = published
            .into_iter()
            .filter(|(k, f)| {
                !self
                    .machines
                    .iter()
                    .any(|(k2, m)| k2 == k && m.firing() == Some(*f))
            })
            .collect();
        catch_up.until = catch_up.until.max(now);
    }

    /// Before a timer changes an own-timed machine: the machines at the latest event are kept.
    pub fn save(&mut self, set: &RuleSet) {
        if self.saved.is_none() {
            self.saved = Some(
                self.machines
                    .iter()
                    .filter(|(k, _)| own_timed(set, *k))
                    .cloned()
                    .collect(),
            );
        }
    }

    /// Stops the published episodes the judged backlog has ruled out: those the group's
    /// machines, left without further events until the clock is back where it was
    /// (`project`), would not fire. Once the clock is back, every one not confirmed stops.
    pub fn settle_catch_up(
        &mut self,
        t: u64,
        set: &RuleSet,
        key: &str,
        out: &mut Vec<(Condition, u64, isize)>,
        project: impl Fn(&Rule, u64, &Machine, u64) -> Option<Firing>,
    ) {
        let Group {
            machines,
            clock,
            catch_up,
            ..
        } = self;
        let Some(c) = catch_up.as_mut() else {
            return;
        };
        let back = clock.at(t) >= c.until;
        let until = c.until;
        c.stale.retain(|(k, f)| {
            let Some(r) = set.get(*k) else {
                return false;
            };
            let projected = machines
                .iter()
                .find(|(x, _)| x == k)
                .and_then(|(_, m)| project(r, *k, m, until));
            let holds =
                !back && projected.is_some_and(|p| p.since == f.since && p.value == f.value);
            // Ruled out, not ended: one started at `t` by an earlier part of the same backlog
            // cancels out (it never was).
            if !holds {
                out.push((condition(r, key, f), t, -1));
            }
            holds
        });
        if back || c.stale.is_empty() {
            *catch_up = None;
        }
    }

    /// When the catch-up ends (frontier time), if one runs.
    pub fn catch_up_due(&self) -> Option<u64> {
        self.catch_up.as_ref().map(|c| self.clock.when(c.until))
    }

    /// Every episode the group has published and not stopped: its machines' firing ones and
    /// those standing through a catch-up, by rule key.
    pub fn published(&self) -> impl Iterator<Item = (u64, Firing)> + '_ {
        let firing = self
            .machines
            .iter()
            .filter_map(|(k, m)| m.firing().map(|f| (*k, f)));
        let stale = self.catch_up.iter().flat_map(|c| c.stale.iter().copied());
        firing.chain(stale)
    }

    /// Whether the group holds nothing beyond its machines (it can go once they are idle).
    pub fn holds_nothing_else(&self) -> bool {
        self.catch_up.is_none() && self.reorder.is_none()
    }

    /// Drops a reorder whose time is up (frontier time `t`).
    pub fn expire_reorder(&mut self, t: u64) {
        if self.reorder.as_ref().is_some_and(|r| t >= r.until) {
            self.reorder = None;
        }
    }

    /// Before an event of own time `own` judged at frontier time `t`: opens a reorder if the
    /// event is on time and jumps past the group's latest event by more than the gap and
    /// twice the group's usual step (live messages after an outage, whose backlog may follow;
    /// not a quiet device's next heartbeat), or keeps an open one for longer (so does an
    /// event put in order: a backlog still arriving). A backlog delivered oldest first opens
    /// none: its events are late. With gap 0 every event opens one, a new group's first too
    /// (else at start-up every device's would). Returns whether the event is behind the
    /// group's clock and a reorder holds what it takes to put it in order.
    pub fn open_reorder(&mut self, own: u64, t: u64, set: &RuleSet, limits: ReorderLimits) -> bool {
        self.expire_reorder(t);
        let every = limits.gap_ms == 0;
        // A usual step is known once the group has two events.
        let live = own == t && self.clock.step > 0;
        let jump = own.saturating_sub(self.clock.last);
        let gap = every || (live && jump > limits.gap_ms && jump > 2 * self.clock.step);
        if let Some(r) = self.reorder.as_mut() {
            // Behind the group's clock (its latest event, or timers since): put in order.
            let behind = own < self.clock.at(t);
            // A gap, or a backlog still arriving, keeps it open.
            if gap || behind {
                r.until = r.until.max(t.saturating_add(limits.keep_ms));
            }
            return behind;
        }
        if limits.keep_ms == 0 || !gap {
            return false;
        }
        let base = self.saved.clone().unwrap_or_else(|| {
            self.machines
                .iter()
                .filter(|(k, _)| own_timed(set, *k))
                .cloned()
                .collect()
        });
        self.reorder = Some(Box::new(Reorder {
            base,
            base_last: self.clock.last,
            events: Vec::new(),
            ended: Vec::new(),
            until: t.saturating_add(limits.keep_ms),
        }));
        false
    }

    /// Keeps an event's own-timed part for a later reorder, in own-time order (one older than
    /// the gap at the gap's start).
    pub fn hold(&mut self, held: (u64, Vec<(u64, What)>)) {
        let Some(r) = self.reorder.as_mut() else {
            return;
        };
        let own = held.0.max(r.base_last);
        let at = r.events.partition_point(|(o, _)| *o <= own);
        let kept = held.1.into_iter().map(|(k, w)| Kept::of(k, w)).collect();
        r.events.insert(at, (own, kept));
    }

    /// Notes the stops of own-timed episodes in `out` (published since `from`) as ended.
    pub fn note_ended(&mut self, out: &[(Condition, u64, isize)], set: &RuleSet) {
        let Some(r) = self.reorder.as_mut() else {
            return;
        };
        for (c, at, _) in out.iter().filter(|(_, _, d)| *d < 0) {
            let k = rules::rule_key(&c.rule);
            if own_timed(set, k) {
                let f = Firing {
                    since: c.since,
                    value: c.value_milli as f64 / 1000.0,
                    late_by_ms: c.late_by_ms,
                };
                r.ended.push((k, f, *at));
            }
        }
    }

    /// When the reorder is dropped (frontier time), if one is held.
    pub fn reorder_due(&self) -> Option<u64> {
        self.reorder.as_ref().map(|r| r.until)
    }
}

/// Whether two firings are the same episode: the same start and the same published value.
pub fn same(a: &Firing, b: &Firing) -> bool {
    a.since == b.since && milli(a.value) == milli(b.value)
}

fn milli(v: f64) -> i64 {
    (v * 1000.0).round() as i64
}

/// When the stop of episode `f` is published, at frontier time `t`: one millisecond later if
/// it was found late and its start was published at `t` too (an episode that began and ended
/// inside a backlog), so the two updates of the same record do not cancel out. An on-time
/// episode that starts and stops at one instant never was.
pub fn stop_time(f: &Firing, t: u64) -> u64 {
    if f.late_by_ms > 0 && f.since + f.late_by_ms == t {
        t + 1
    } else {
        t
    }
}

/// The published record of an episode of `rule` for `group`.
pub fn condition(rule: &Rule, group: &str, f: &Firing) -> Condition {
    Condition {
        rule: rule.id.clone(),
        group: group.to_owned(),
        value_milli: milli(f.value),
        since: f.since,
        late_by_ms: f.late_by_ms,
    }
}

/// Publishes a machine's transitions at frontier time `t`. A start found behind `t` (from a
/// backlog) is marked late by the difference, and the machine keeps the mark so its stop names
/// the same record. During a catch-up, a start the published episodes already show is not
/// published again, and one that replaces an episode of the same rule stops that one.
pub fn publish(
    rule: (&Rule, u64),
    group: &str,
    m: &mut Machine,
    catch_up: &mut Option<Box<CatchUp>>,
    transitions: Vec<Transition>,
    t: u64,
    out: &mut Vec<(Condition, u64, isize)>,
) {
    let (r, k) = rule;
    let mut started: Option<Firing> = None;
    for tr in transitions {
        let mut f = Firing {
            since: tr.since,
            value: tr.value,
            late_by_ms: tr.late_by_ms,
        };
        if tr.start {
            f.late_by_ms = t.saturating_sub(tr.since);
            if let Some(c) = catch_up.as_mut() {
                let same = c
                    .stale
                    .iter()
                    .position(|(x, s)| *x == k && s.since == f.since && s.value == f.value);
                if let Some(i) = same {
                    started = Some(c.stale.remove(i).1);
                    continue;
                }
                c.stale.retain(|(x, s)| {
                    let replaced = *x == k;
                    if replaced {
                        out.push((condition(r, group, s), t, -1));
                    }
                    !replaced
                });
            }
            started = Some(f);
            out.push((condition(r, group, &f), t, 1));
        } else {
            if let Some(s) = started.filter(|s| s.since == f.since) {
                f = s;
            }
            out.push((condition(r, group, &f), stop_time(&f, t), -1));
        }
    }
    if let (Some(s), Some(now)) = (started, m.firing())
        && now.since == s.since
    {
        m.set_late_by(s.late_by_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_opens_a_reorder_that_lasts_from_the_latest_gap() {
        let set = RuleSet::default();
        let limits = ReorderLimits::default();
        let mut g = Group::default();
        // A new group's first event, then events a second apart: no gap.
        for s in [1, 2, 3] {
            assert!(!g.open_reorder(s * 1000, s * 1000, &set, limits));
            g.heard(s * 1000, s * 1000);
        }
        assert!(g.reorder.is_none());
        // 50 s of silence, then a live event: the gap opens a reorder for 5 s.
        assert!(!g.open_reorder(53_000, 53_000, &set, limits));
        g.heard(53_000, 53_000);
        assert_eq!(g.reorder_due(), Some(58_000));
        // The backlog is behind the clock: put in order, and it keeps the reorder longer.
        assert!(g.open_reorder(20_000, 55_000, &set, limits));
        assert_eq!(g.reorder_due(), Some(60_000));
        // Live again a second apart: no gap; its time up, it goes.
        for s in [56, 57] {
            assert!(!g.open_reorder(s * 1000, s * 1000, &set, limits));
            g.heard(s * 1000, s * 1000);
        }
        assert_eq!(g.reorder_due(), Some(60_000));
        g.expire_reorder(60_000);
        assert!(g.reorder.is_none() && g.holds_nothing_else());
        // The next outage opens another.
        assert!(!g.open_reorder(90_000, 90_000, &set, limits));
        assert_eq!(g.reorder_due(), Some(95_000));
    }

    #[test]
    fn a_quiet_devices_usual_heartbeat_opens_no_reorder() {
        let (set, limits) = (RuleSet::default(), ReorderLimits::default());
        let mut g = Group::default();
        for s in [0, 60, 120, 180] {
            assert!(!g.open_reorder(1 + s * 1000, 1 + s * 1000, &set, limits));
            g.heard(1 + s * 1000, 1 + s * 1000);
        }
        assert!(g.reorder.is_none());
        // A backlog event (late) that jumps opens none either: it is delivered in order.
        assert!(!g.open_reorder(400_000, 500_000, &set, limits));
        assert!(g.reorder.is_none());
    }

    #[test]
    fn held_events_stay_in_own_time_order_and_none_before_the_gap() {
        let set = RuleSet::default();
        let mut g = Group::default();
        g.heard(4_000, 4_000);
        g.heard(5_000, 5_000);
        g.open_reorder(60_000, 60_000, &set, ReorderLimits::default());
        for own in [60_000, 30_000, 1_000, 45_000] {
            g.hold((own, Vec::new()));
        }
        let held: Vec<u64> = g
            .reorder
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.0))
            .collect();
        assert_eq!(held, vec![5_000, 30_000, 45_000, 60_000]);
    }

    #[test]
    fn a_kept_observation_is_the_observation_in_24_bytes() {
        use rules::machine::Item;
        assert_eq!(std::mem::size_of::<Kept>(), 24);
        let event = |item| What::Event {
            matched: true,
            cleared: false,
            item,
            seen: None,
        };
        for what in [
            event(Item::Unit),
            event(Item::Num(2.31)),
            event(Item::Num(f64::from_bits(u64::MAX))),
            event(Item::Text("cabbage".into())),
            What::Deferred {
                fields: vec![None],
                item: Item::Num(1.0),
            },
        ] {
            let kept = Kept::of(7, what.clone());
            assert_eq!(kept.rule(), 7);
            let (rule, again) = kept.observation();
            assert_eq!(rule, 7);
            // NaN is not equal to itself: compare its bits.
            assert_eq!(format!("{again:?}"), format!("{what:?}"));
        }
    }

    #[test]
    fn an_on_time_clock_is_the_frontier() {
        let c = Clock {
            last: 5_000,
            heard: 5_000,
            step: 0,
        };
        assert_eq!(c.at(9_000), 9_000);
        assert_eq!(c.when(9_000), 9_000);
    }

    #[test]
    fn a_lagging_clock_runs_behind_until_the_group_is_silent() {
        // Its latest event was 300 s old when it arrived.
        let c = Clock {
            last: 100_000,
            heard: 400_000,
            step: 0,
        };
        assert_eq!(c.at(410_000), 110_000);
        assert_eq!(c.when(130_000), 430_000);
        // Silent for a minute: the frontier's time.
        assert_eq!(c.at(460_000), 460_000);
        assert_eq!(c.when(200_000), 460_000);
        assert_eq!(c.when(500_000), 500_000);
        for f in [400_000, 430_000, 459_999, 460_000, 470_000] {
            assert!(c.at(c.when(c.at(f))) >= c.at(f), "at {f}");
        }
    }
}
