//! The state of the [`super::Conditions`] operator and its steps: the rule set in force and
//! the versions still ahead, the batches ahead of the frontier, the groups' machines and their
//! timers. Everything before the frontier is handled in time order; at one time a new version
//! comes first, then the timers, then the batches.

use super::{Batch, Cx, Judged, RuleSet, RuleSetVersion, What, judge_batch, run_timers};
use crate::conditions::{Cause, Condition};
use crate::operators::group::{self, Group, ReorderLimits};
use crate::operators::stash::Stash;
use crate::operators::timers::Timers;
use crate::stats::Stats;
use rules::expr::Evaluator;
use rules::spec::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// What a checkpoint keeps of the rules' state: the source of every rule in force (a rule
/// changed between stop and start starts afresh, as a change at run time does) and every
/// group's machines and timeline.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct SavedMachines {
    rules: Vec<(u64, rules::RuleSource)>,
    groups: Vec<(String, Group)>,
}

/// [`SavedMachines`] as the operator holds it, serialized alike without copying a group: a
/// checkpoint of a city's machines encodes them where they are rather than doubling them
/// first.
#[derive(Serialize)]
pub(super) struct SavedView<'a> {
    rules: Vec<(u64, &'a rules::RuleSource)>,
    groups: Vec<(&'a str, &'a Group)>,
}

/// One allocation per group key, shared by the map and the timer heap.
type Groups = foldhash::HashMap<Rc<str>, Group>;

/// The operator's state on one worker.
pub(super) struct Machines {
    pending: BTreeMap<u64, RuleSetVersion>,
    stash: Stash<Batch>,
    current: Arc<RuleSet>,
    groups: Groups,
    /// Lazy: an entry counts only while it is its group's `scheduled` time.
    timers: Timers<Rc<str>>,
    /// Installed once everything before its time is handled (the rule set in force then is
    /// known).
    restored: Option<(u64, SavedMachines)>,
    out: Vec<(Condition, u64, isize)>,
    /// What made the starts in `out` fire.
    causes: Vec<(Cause, u64)>,
    evaluator: Evaluator,
    limits: ReorderLimits,
    /// How many matched events (or window items) an explanation keeps.
    keep: usize,
    /// The inputs have closed (a replay's end): what starts now is never published, so no
    /// cause is made for it.
    closing: bool,
    stats: Arc<Stats>,
}

/// What comes next at one time.
enum Next {
    Version,
    Timer,
    Batches,
}

impl Machines {
    pub(super) fn new(
        restored: Option<(u64, SavedMachines)>,
        (limits, keep): (ReorderLimits, usize),
        stats: Arc<Stats>,
    ) -> Machines {
        Machines {
            pending: BTreeMap::new(),
            stash: Stash::default(),
            current: Arc::new(RuleSet::default()),
            groups: Groups::default(),
            timers: Timers::default(),
            restored,
            out: Vec::new(),
            causes: Vec::new(),
            evaluator: Evaluator::default(),
            limits,
            keep,
            closing: false,
            stats,
        }
    }

    pub(super) fn version(&mut self, v: RuleSetVersion) {
        self.pending.insert(v.activation, v);
    }

    pub(super) fn batches(&mut self, batches: Vec<Batch>) {
        self.stash.hold(batches, |b| b.time);
    }

    /// Handles everything before the frontier `f`, in time order.
    pub(super) fn advance(&mut self, f: u64) {
        self.closing = f == u64::MAX;
        while let Some((t, next)) = self.next_before(f) {
            if let Some((at, saved)) = self.restored.take_if(|(at, _)| t >= *at) {
                self.install(saved, at);
                continue;
            }
            match next {
                Next::Version => self.take_version(t),
                Next::Timer => self.fire_timer(),
                Next::Batches => self.judge_batches(),
            }
        }
        if let Some((at, saved)) = self.restored.take_if(|(at, _)| f >= *at) {
            self.install(saved, at);
        }
    }

    fn next_before(&self, f: u64) -> Option<(u64, Next)> {
        let first = |t: Option<u64>, n: Next| t.filter(|t| *t < f).map(|t| (t, n));
        [
            first(self.pending.keys().next().copied(), Next::Version),
            first(self.timers.next(), Next::Timer),
            first(self.stash.first_time(), Next::Batches),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(t, _)| *t)
    }

    pub(super) fn has_output(&self) -> bool {
        !self.out.is_empty() || !self.causes.is_empty()
    }

    /// The conditions' changes so far, and what made their starts fire.
    pub(super) fn output(&mut self) -> impl Iterator<Item = (Judged, u64)> + '_ {
        let changes = self
            .out
            .drain(..)
            .map(|(c, t, d)| (Judged::Change(c, d), t));
        let causes = self
            .causes
            .drain(..)
            .map(|(e, t)| (Judged::Cause(Box::new(e)), t));
        changes.chain(causes)
    }

    /// The earliest time the operator still owes output for.
    pub(super) fn owed(&self) -> Option<u64> {
        [
            self.stash.first_time(),
            self.timers.next(),
            self.pending.keys().next().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn saved(&self) -> SavedView<'_> {
        let set = &self.current;
        SavedView {
            rules: set
                .keys
                .iter()
                .zip(&set.rules)
                .map(|(k, r)| (*k, &r.source))
                .collect(),
            groups: self.groups.iter().map(|(k, g)| (&**k, g)).collect(),
        }
    }

    fn take_version(&mut self, t: u64) {
        let Some((_, v)) = self.pending.pop_first() else {
            return;
        };
        let next = Arc::new(RuleSet::compile(&v));
        retire_changed(&self.current, &next, t, &mut self.groups, &mut self.out);
        self.current = next;
    }

    fn fire_timer(&mut self) {
        let Some((t, key)) = self.timers.pop() else {
            return;
        };
        let Some(group) = self.groups.get_mut(&key) else {
            return;
        };
        if group.queued == Some(t) {
            group.queued = None;
        }
        match group.scheduled {
            Some(s) if s == t => {}
            // Its time moved on: wait in the heap for that instead.
            Some(s) if s > t => {
                if group.queued.is_none_or(|q| s < q) {
                    group.queued = Some(s);
                    self.timers.push(s, key);
                }
                return;
            }
            _ => return,
        }
        let mark = self.out.len();
        run_timers(
            group,
            &key,
            t,
            &self.current,
            &self.evaluator,
            &mut self.out,
        );
        let set = &self.current;
        let starts = &self.out[mark..];
        if !self.closing {
            self.causes
                .extend(super::cause::of_starts(group, starts, set, self.keep));
        }
        if !schedule(set, group, key.clone(), &mut self.timers, t) {
            self.groups.remove(&key);
        }
    }

    fn judge_batches(&mut self) {
        let Some((t, batches)) = self.stash.pop_before(u64::MAX) else {
            return;
        };
        for b in batches {
            let Some(key) = self.group_for(&b) else {
                continue;
            };
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            let cx = Cx {
                set: &self.current,
                ev: &self.evaluator,
                limits: self.limits,
                stats: &self.stats,
                keep: self.keep,
            };
            let mark = self.out.len();
            judge_batch(group, &key, b, t, &cx, &mut self.out);
            let starts = &self.out[mark..];
            if !self.closing {
                self.causes
                    .extend(super::cause::of_starts(group, starts, cx.set, self.keep));
            }
            if !schedule(cx.set, group, key.clone(), &mut self.timers, t) {
                self.groups.remove(&key);
            }
        }
    }

    /// The batch's group, made if the batch changes anything: most frames of an idle device
    /// change nothing, and no group is made (and dropped again) for them.
    fn group_for(&mut self, b: &Batch) -> Option<Rc<str>> {
        if let Some((k, _)) = self.groups.get_key_value(b.group.as_str()) {
            return Some(k.clone());
        }
        if b.changes_nothing_new(&self.current) {
            return None;
        }
        let k: Rc<str> = Rc::from(b.group.as_str());
        self.groups.insert(k.clone(), Group::default());
        Some(k)
    }

    /// Puts restored machines in place at `at`, under the rule set in force then: the
    /// machines of rules that are unchanged, their timers queued, and their published episodes
    /// (firing, or standing through a catch-up) active again from `at` with their own start
    /// (the alert journal knows them as the same episodes).
    fn install(&mut self, saved: SavedMachines, at: u64) {
        let set = &self.current;
        let unchanged: Vec<u64> = saved
            .rules
            .iter()
            .filter(|(k, src)| set.get(*k).is_some_and(|r| &r.source == src))
            .map(|(k, _)| *k)
            .collect();
        for (key, mut g) in saved.groups {
            keep_rules(&mut g, |k| unchanged.contains(&k));
            if g.machines.is_empty() && g.holds_nothing_else() {
                continue;
            }
            for (k, f) in g.published() {
                if let Some(r) = set.get(k) {
                    self.out.push((group::condition(r, &key, &f), at, 1));
                }
            }
            let key: Rc<str> = Rc::from(key);
            self.groups.insert(key.clone(), g);
            reschedule(set, &mut self.groups, key, &mut self.timers, at);
        }
    }
}

/// Keeps only the state of the rules `keep` admits.
fn keep_rules(g: &mut Group, keep: impl Fn(u64) -> bool) {
    g.machines.retain(|(k, _)| keep(*k));
    if let Some(saved) = g.saved.as_mut() {
        saved.retain(|(k, _)| keep(*k));
    }
    if let Some(c) = g.catch_up.as_mut() {
        c.stale.retain(|(k, _)| keep(*k));
    }
    if let Some(r) = g.reorder.as_mut() {
        r.base.retain(|(k, _)| keep(*k));
        r.ended.retain(|(k, _, _)| keep(*k));
        for (_, items) in r.events.iter_mut() {
            items.retain(|i| keep(i.rule()));
        }
    }
}

/// A new rule-set version at `t`: conditions of rules that changed or went away stop at `t`
/// and their state is dropped; the others carry on untouched.
fn retire_changed(
    old: &RuleSet,
    new: &RuleSet,
    t: u64,
    groups: &mut Groups,
    out: &mut Vec<(Condition, u64, isize)>,
) {
    let changed: Vec<u64> = old
        .keys
        .iter()
        .zip(&old.rules)
        .filter(|(k, r)| new.get(**k).is_none_or(|n| n.source != r.source))
        .map(|(k, _)| *k)
        .collect();
    if changed.is_empty() {
        return;
    }
    for (group, g) in groups.iter_mut() {
        for (k, f) in g.published() {
            if let (true, Some(r)) = (changed.contains(&k), old.get(k)) {
                out.push((group::condition(r, group, &f), group::stop_time(&f, t), -1));
            }
        }
        keep_rules(g, |k| !changed.contains(&k));
        if g.catch_up.as_ref().is_some_and(|c| c.stale.is_empty()) {
            g.catch_up = None;
        }
    }
    groups.retain(|_, g| !(g.machines.is_empty() && g.holds_nothing_else()));
}

/// Whether `what` leaves a new machine of `rule` as it was: an event that does not match a
/// state rule (its raw condition is false already, and it carries nothing). Window rules are
/// not skipped: their condition is judged even on an empty window.
pub(super) fn changes_nothing_new(rule: &rules::spec::Rule, what: &What) -> bool {
    matches!(
        (&rule.kind, what),
        (Kind::State { .. }, What::Event { matched: false, .. })
    )
}

/// Drops the group's idle machines (and the group when none is left), and queues its next
/// timer if it changed.
fn reschedule(
    set: &RuleSet,
    groups: &mut Groups,
    key: Rc<str>,
    timers: &mut Timers<Rc<str>>,
    now: u64,
) {
    let Some(group) = groups.get_mut(&key) else {
        return;
    };
    if !schedule(set, group, key.clone(), timers, now) {
        groups.remove(&key);
    }
}

/// [`reschedule`] for a group at hand: false when it is left holding nothing (for the caller
/// to drop) rather than looking it up again.
fn schedule(
    set: &RuleSet,
    group: &mut Group,
    key: Rc<str>,
    timers: &mut Timers<Rc<str>>,
    now: u64,
) -> bool {
    group.machines.retain(|(rule, m)| {
        set.get(*rule)
            .is_some_and(|r| !(m.is_idle() && m.next_timer(r).is_none()))
    });
    if group.machines.is_empty() && group.holds_nothing_else() {
        return false;
    }
    // Own-timed machines wake when the group's own time reaches their timer.
    let clock = group.clock;
    let next = group
        .machines
        .iter()
        .filter_map(|(rule, m)| {
            let r = set.get(*rule)?;
            let due = m.next_timer(r)?;
            Some(if group::on_frontier(r) {
                due
            } else {
                clock.when(due)
            })
        })
        .chain(group.catch_up_due())
        .chain(group.reorder_due())
        .min()
        .map(|t| t.max(now));
    group.scheduled = next;
    if let Some(t) = next
        && group.queued.is_none_or(|q| t < q)
    {
        group.queued = Some(t);
        timers.push(t, key);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_written_from_the_view_reads_back_as_the_saved_machines() {
        let rules = rules::load_str(
            "t.toml",
            "[[rule]]\nid = \"r\"\nseverity = \"minor\"\nstream = \"elevator_status\"\ngroup_by = [\"elevator_id\"]\n",
        )
        .unwrap();
        let source = rules[0].source.clone();
        let mut group = Group::default();
        group.machines.push((7, rules::machine::Machine::default()));
        group.clock.last = 42;
        let view = SavedView {
            rules: vec![(7, &source)],
            groups: vec![("E1", &group)],
        };
        let back: SavedMachines =
            crate::checkpoint::decode(&crate::checkpoint::encode(&view)).unwrap();
        assert_eq!(back.rules, vec![(7, source.clone())]);
        assert_eq!(back.groups, vec![("E1".to_owned(), group)]);
    }
}
