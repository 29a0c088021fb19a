//! Putting a group's events in order after a gap (docs/rule-engine.md §7, "Reordering after
//! a gap"; docs/rules.md, "Every device on its own clock").
//!
//! A terminal whose link comes back may send its live frames first and its backlog seconds
//! later. After a gap in its own times a group keeps its machines as they were before the gap
//! and every event judged since ([`super::group::Reorder`]); an event older than the group's
//! latest is put among them, the machines go back and judge them all again in own-time order,
//! and the outcome is reconciled with what was published, so no episode is published twice
//! and none that the new order rules out stays.

use super::conditions::{
    Batch, Cx, judge_batch, judge_event, machine, run_timers, timers_until, window_condition,
};
use super::group::{self, CatchUp, Clock, Group, Held, on_frontier, own_timed, same};
use crate::conditions::Condition;
use rules::machine::{Firing, Transition};

type Out = Vec<(Condition, u64, isize)>;

/// Judges batch `b`, older than the group's latest event, in its own-time order among the
/// events held since the gap (frontier time `t`).
pub(crate) fn rebuild(group: &mut Group, key: &str, b: Batch, t: u64, cx: &Cx<'_>, out: &mut Out) {
    let set = cx.set;
    let (own_items, others): (Vec<_>, Vec<_>) = b
        .listed(set)
        .into_iter()
        .partition(|(k, _)| own_timed(set, *k));
    if !others.is_empty() {
        // Absence rules hear the device now, whatever its event's time.
        let now = Batch {
            group: model::id::Id::default(),
            plain: Default::default(),
            items: others,
            ..b
        };
        judge_batch(group, key, now, t, cx, out);
    }
    group.hold((b.own, own_items));
    cx.stats.record_reordered();
    let Some(mut reorder) = group.reorder.take() else {
        return;
    };
    let mark = out.len();
    let published: Vec<(u64, Firing)> = group
        .published()
        .filter(|(k, _)| own_timed(set, *k))
        .collect();
    let clock = group.clock;
    group.machines.retain(|(k, _)| !own_timed(set, *k));
    let base = reorder.base.iter().filter(|(k, _)| set.get(*k).is_some());
    group.machines.extend(base.cloned());
    group.clock = Clock {
        last: reorder.base_last,
        heard: t,
        step: clock.step,
    };
    group.saved = None;
    group.catch_up = None;
    let mut closed = replay(group, &reorder.events, cx);
    // Own time does not go back: the clock is where it was, and the timers it has passed
    // since the latest event run (the machines at that event kept first, as a timer does),
    // so the replayed state is compared with what was published at the same own time.
    group.clock = clock;
    let own_now = clock.at(t);
    let due = |g: &Group| {
        g.machines.iter().any(|(k, m)| {
            set.get(*k)
                .filter(|r| !on_frontier(r))
                .and_then(|r| m.next_timer(r))
                .is_some_and(|d| d <= own_now)
        })
    };
    if due(group) {
        group.save(set);
        closed.extend(own_timers(group, own_now, cx));
    }
    reconcile(
        group,
        key,
        published,
        closed,
        &mut reorder.ended,
        t,
        cx,
        out,
    );
    group.reorder = Some(reorder);
    run_timers(group, key, t, set, cx.ev, out);
    group.note_ended(&out[mark..], set);
    name_saved_records(group);
}

/// The copy of the machines at the latest event, taken before the replay's records were
/// known, names the records that were published: a later going back stops those.
fn name_saved_records(group: &mut Group) {
    let Group {
        machines,
        saved: Some(saved),
        reorder: Some(reorder),
        ..
    } = group
    else {
        return;
    };
    for (k, m) in saved.iter_mut() {
        let Some(f) = m.firing() else { continue };
        let now = machines
            .iter()
            .filter(|(x, _)| x == k)
            .filter_map(|(_, c)| c.firing())
            .find(|c| same(c, &f));
        let ended = || {
            let mut ended = reorder.ended.iter().rev();
            ended
                .find(|(x, e, _)| x == k && same(e, &f))
                .map(|(_, e, _)| *e)
        };
        if let Some(record) = now.or_else(ended) {
            m.set_late_by(record.late_by_ms);
        }
    }
}

/// Keeps a reorder within its bound of events: once full, its older half is judged into its
/// base (what it publishes was published when they arrived), so a steady out-of-order device
/// keeps a sliding window of its latest events at the cost of judging each twice.
pub(crate) fn trim(group: &mut Group, t: u64, cx: &Cx<'_>) {
    let Some(r) = group.reorder.as_mut() else {
        return;
    };
    if r.events.len() < cx.limits.events {
        return;
    }
    if cx.limits.events < 2 {
        group.reorder = None;
        return;
    }
    let older: Vec<Held> = r.events.drain(..r.events.len() / 2).collect();
    let mut scratch = Group {
        machines: std::mem::take(&mut r.base),
        clock: Clock {
            last: r.base_last,
            heard: t,
            step: 0,
        },
        ..Group::default()
    };
    let _ = replay(&mut scratch, &older, cx);
    r.base = scratch.machines;
    r.base_last = scratch.clock.last;
    let excess = r.ended.len().saturating_sub(cx.limits.events);
    r.ended.drain(..excess);
}

/// Judges the held events again from the machines before the gap, each at its own time after
/// the timers before it. Returns the episodes that stopped on the way (rule key, episode).
fn replay(group: &mut Group, events: &[Held], cx: &Cx<'_>) -> Vec<(u64, Firing)> {
    let (set, ev) = (cx.set, cx.ev);
    let mut closed = Vec::new();
    for (own, items) in events {
        let at = (*own).max(group.clock.last);
        closed.extend(own_timers(group, at, cx));
        for kept in items {
            let (rule, what) = kept.observation();
            let Some(r) = set.get(rule) else { continue };
            let Some(m) = machine(&mut group.machines, r, rule, &what) else {
                continue;
            };
            let transitions = judge_event(m, r, (set.programs(rule), cx.keep), ev, at, what);
            closed.extend(stops(rule, transitions));
        }
        group.clock.last = at;
    }
    closed
}

/// Runs the own-timed machines' timers due by own time `at`. Returns the episodes stopped.
fn own_timers(group: &mut Group, at: u64, cx: &Cx<'_>) -> Vec<(u64, Firing)> {
    let mut closed = Vec::new();
    for (k, m) in group.machines.iter_mut() {
        if let Some(r) = cx.set.get(*k).filter(|r| !on_frontier(r)) {
            let mut cond = window_condition(cx.ev, r, cx.set.programs(*k));
            closed.extend(stops(*k, timers_until(m, r, at, &mut cond)));
        }
    }
    closed
}

/// The episodes that `transitions` of rule `k` stop.
fn stops(k: u64, transitions: Vec<Transition>) -> impl Iterator<Item = (u64, Firing)> {
    transitions
        .into_iter()
        .filter(|tr| !tr.start)
        .map(move |tr| {
            let f = Firing {
                since: tr.since,
                value: tr.value,
                late_by_ms: tr.late_by_ms,
            };
            (k, f)
        })
}

/// Publishes what the replay changed against what was published before it (`published`):
/// an episode it closed stops if published, is left alone if it had ended already, and is
/// published as a late start and stop otherwise; one firing at the end keeps its record if
/// published, else starts (late). The published ones the replay shows neither way stand as a
/// catch-up until the timers up to the group's clock have run.
#[allow(clippy::too_many_arguments)]
fn reconcile(
    group: &mut Group,
    key: &str,
    mut published: Vec<(u64, Firing)>,
    closed: Vec<(u64, Firing)>,
    ended: &mut Vec<(u64, Firing, u64)>,
    t: u64,
    cx: &Cx<'_>,
    out: &mut Out,
) {
    let take = |list: &mut Vec<(u64, Firing)>, k: u64, f: &Firing| {
        let i = list.iter().position(|(x, p)| *x == k && same(p, f))?;
        Some(list.remove(i).1)
    };
    for (k, f) in closed {
        let Some(r) = cx.set.get(k) else { continue };
        if ended.iter().any(|(x, e, _)| *x == k && same(e, &f)) {
            continue;
        }
        match take(&mut published, k, &f) {
            Some(p) => out.push((group::condition(r, key, &p), group::stop_time(&p, t), -1)),
            None => {
                let late = Firing {
                    late_by_ms: t.saturating_sub(f.since),
                    ..f
                };
                out.push((group::condition(r, key, &late), t, 1));
                out.push((
                    group::condition(r, key, &late),
                    group::stop_time(&late, t),
                    -1,
                ));
            }
        }
    }
    for (k, m) in group.machines.iter_mut() {
        let Some(r) = cx.set.get(*k).filter(|r| !on_frontier(r)) else {
            continue;
        };
        let Some(f) = m.firing() else { continue };
        // Stopped by an earlier part of the same backlog: the stop is taken back.
        let stopped_now = ended
            .iter()
            .position(|(x, e, at)| *x == *k && same(e, &f) && *at >= t);
        match take(&mut published, *k, &f) {
            Some(p) => m.set_late_by(p.late_by_ms),
            None if stopped_now.is_some() => {
                let (_, e, at) = ended.remove(stopped_now.unwrap_or_default());
                m.set_late_by(e.late_by_ms);
                out.push((group::condition(r, key, &e), at, 1));
            }
            None => {
                m.set_late_by(t.saturating_sub(f.since));
                if let Some(f) = m.firing() {
                    out.push((group::condition(r, key, &f), t, 1));
                }
            }
        }
    }
    if !published.is_empty() {
        group.catch_up = Some(Box::new(CatchUp {
            until: group.clock.at(t),
            stale: published,
        }));
    }
}
