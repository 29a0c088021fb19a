//! The snapshot sink: folds counter updates into totals and publishes one consistent
//! [`Snapshot`] each time the frontier closes a time.
//!
//! All updates travel to worker 0, which holds them until the input frontier has passed
//! their time: only then are they final (no more updates for that time can arrive), so every
//! published snapshot is exact for every event time before its `as_of`. State: the totals
//! (one integer per live counter key) and the updates still ahead of the frontier, which
//! include the scheduled retractions of windowed counters; both are bounded by retention.

use crate::checkpoint::Part;
use crate::conditions::{Active, Cause, Condition, ConditionsSnapshot, Joined};
use crate::counters::{Counter, Snapshot};
use crate::operators::conditions::Judged;
use differential_dataflow::VecCollection;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// Receives each published snapshot.
pub type SnapshotFn = Arc<dyn Fn(Snapshot) + Send + Sync>;

/// Extension trait that publishes a counter collection as snapshots.
pub trait PublishSnapshots {
    /// Sends every closed-time snapshot of the counters to `publish`. All updates travel to
    /// worker 0; only there (`is_worker_zero`) is anything published, as the other workers'
    /// instances of the sink see the same frontier but none of the data.
    /// With a checkpoint `part` (worker 0's), the counters fed by the messages themselves are
    /// given at each checkpoint and restored at start; the others are derived again from
    /// restored or reloaded state (liveness, registries, the complaint log).
    fn publish_snapshots(self, publish: SnapshotFn, is_worker_zero: bool, part: Option<Part>);
}

/// The counters a checkpoint keeps: those only the messages themselves feed. The rest are
/// derived from operator state that is restored (liveness) or reloaded (registries,
/// complaints), and would count twice if kept as well.
fn kept_in_checkpoints(c: &Counter) -> bool {
    matches!(
        c,
        Counter::Messages { .. }
            | Counter::Late { .. }
            | Counter::Untimed { .. }
            | Counter::MarketTurnoverFen { .. }
            | Counter::MarketSales { .. }
            | Counter::ResidueTests { .. }
    )
}

/// What a checkpoint keeps of the counters: totals, and updates scheduled ahead.
type SavedCounters = (Vec<(Counter, i64)>, Vec<(u64, Vec<(Counter, isize)>)>);

/// The counters' part of a checkpoint at the frontier the snapshot is `as_of`: the totals,
/// and the retractions that messages entered before it scheduled for later.
///
/// `pending` also holds the updates of messages entered at the checkpoint's time or later
/// (a device whose clock runs ahead, a late message entered at the frontier); the restart
/// replays those messages, so their updates must not be kept too. They are told apart by
/// time: a message's own update lies at its entry time, its retraction at the time its key
/// fixes ([`Counter::retracted_at`]). Summed over all pending times, a later message's update
/// and its retraction cancel, so what remains of a key is exactly the retraction scheduled by
/// the messages before the checkpoint.
fn saved(snapshot: &Snapshot, pending: &BTreeMap<u64, HashMap<Counter, isize>>) -> SavedCounters {
    let values = snapshot
        .values
        .iter()
        .filter(|(c, _)| kept_in_checkpoints(c))
        .map(|(c, v)| (c.clone(), *v))
        .collect();
    let mut scheduled: HashMap<&Counter, isize> = HashMap::new();
    for (c, d) in pending.values().flatten() {
        if kept_in_checkpoints(c) && c.retracted_at().is_some() {
            *scheduled.entry(c).or_default() += d;
        }
    }
    let mut ahead: BTreeMap<u64, Vec<(Counter, isize)>> = BTreeMap::new();
    for (c, d) in scheduled.into_iter().filter(|(_, d)| *d != 0) {
        let at = c.retracted_at().expect("filtered above");
        ahead
            .entry(at.max(snapshot.as_of))
            .or_default()
            .push((c.clone(), d));
    }
    (values, ahead.into_iter().collect())
}

impl PublishSnapshots for VecCollection<'_, u64, Counter, isize> {
    fn publish_snapshots(self, publish: SnapshotFn, is_worker_zero: bool, part: Option<Part>) {
        // Consolidated per time: the scheduled retractions of a window (one per batch that
        // touched it) collapse into one entry per counter key.
        let mut pending: BTreeMap<u64, HashMap<Counter, isize>> = BTreeMap::new();
        let mut snapshot = Snapshot::default();
        if let Some((at, (values, ahead))) =
            part.as_ref().and_then(|p| p.restored::<SavedCounters>())
        {
            snapshot.as_of = at;
            snapshot.values = values.into_iter().collect();
            pending = ahead
                .into_iter()
                .map(|(t, m)| (t, m.into_iter().collect()))
                .collect();
        }
        self.inner.sink(
            Exchange::new(|_: &(Counter, u64, isize)| 0),
            "PublishSnapshots",
            move |(input, frontier)| {
                input.for_each(|_cap, data| {
                    for (c, t, d) in data.drain(..) {
                        *pending.entry(t).or_default().entry(c).or_default() += d;
                    }
                });
                let f = frontier.frontier().first().copied().unwrap_or(u64::MAX);
                // A closed input (shutdown) would apply every scheduled retraction at once:
                // the last snapshot stays the last real one.
                if !is_worker_zero || f == u64::MAX || f <= snapshot.as_of {
                    return;
                }
                apply_closed(&mut pending, &mut snapshot, f);
                publish(snapshot.clone());
                if let Some(p) = part.as_ref().filter(|p| p.due(f)) {
                    p.give(f, &saved(&snapshot, &pending));
                }
            },
        );
    }
}

/// Folds the updates before `f` into the totals; the snapshot is then as of `f`.
fn apply_closed(
    pending: &mut BTreeMap<u64, HashMap<Counter, isize>>,
    snapshot: &mut Snapshot,
    f: u64,
) {
    while let Some(entry) = pending.first_entry() {
        if *entry.key() >= f {
            break;
        }
        for (c, d) in entry.remove() {
            // Zero entries carry no information; dropping them keeps the map
            // bounded by the live keys.
            match snapshot.values.entry(c) {
                Entry::Occupied(mut e) => {
                    *e.get_mut() += d as i64;
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
                Entry::Vacant(e) if d != 0 => {
                    e.insert(d as i64);
                }
                Entry::Vacant(_) => {}
            }
        }
    }
    snapshot.as_of = f;
}

/// Extension trait that publishes the active-condition collection as snapshots.
pub trait PublishConditions<'scope> {
    /// Sends every closed-time set of active conditions to `publish` (from worker 0), each
    /// start with what made it fire (`causes`, at the start's time), and the alerts and
    /// complaints incident rules join (`joined`, at the time each pair was found).
    fn publish_conditions(
        self,
        causes: StreamVec<'scope, u64, (Cause, u64)>,
        joined: Option<StreamVec<'scope, u64, (Joined, u64)>>,
        publish: crate::conditions::ConditionsFn,
        is_worker_zero: bool,
    );
}

impl<'scope> PublishConditions<'scope> for VecCollection<'scope, u64, Condition, isize> {
    fn publish_conditions(
        self,
        causes: StreamVec<'scope, u64, (Cause, u64)>,
        joined: Option<StreamVec<'scope, u64, (Joined, u64)>>,
        publish: crate::conditions::ConditionsFn,
        is_worker_zero: bool,
    ) {
        use timely::dataflow::operators::Concat;
        use timely::dataflow::operators::vec::Map;
        // The operator's two outputs meet again on their way to worker 0.
        let mut pending: BTreeMap<u64, Vec<Judged>> = BTreeMap::new();
        let mut snapshot = ConditionsSnapshot::default();
        let mut causes = causes.map(|(e, t)| (Judged::Cause(Box::new(e)), t));
        if let Some(joined) = joined {
            causes = causes.concat(joined.map(|(j, t)| (Judged::Joined(Box::new(j)), t)));
        }
        self.inner
            .map(|(c, t, d)| (Judged::Change(c, d), t))
            .concat(causes)
            .sink(
                Exchange::new(|_: &(Judged, u64)| 0),
                "PublishConditions",
                move |(input, frontier)| {
                    input.for_each(|_cap, data| {
                        for (r, t) in data.drain(..) {
                            pending.entry(t).or_default().push(r);
                        }
                    });
                    let f = frontier.frontier().first().copied().unwrap_or(u64::MAX);
                    if !is_worker_zero || f == u64::MAX || f <= snapshot.as_of {
                        return;
                    }
                    while let Some(entry) = pending.first_entry() {
                        if *entry.key() >= f {
                            break;
                        }
                        let t = *entry.key();
                        close_time(&mut snapshot, t, entry.remove());
                    }
                    snapshot.as_of = f;
                    publish(snapshot.clone());
                    snapshot.changes.clear();
                    snapshot.causes.clear();
                    snapshot.joined.clear();
                },
            );
    }
}

/// Folds the records of time `t` into `snapshot`: its changes, and the causes of each
/// start that stands (a start cancelled at the same time has none).
fn close_time(snapshot: &mut ConditionsSnapshot, t: u64, records: Vec<Judged>) {
    let mut updates = Vec::new();
    let mut causes = Vec::new();
    for r in records {
        match r {
            Judged::Change(c, d) => updates.push((c, d)),
            Judged::Cause(e) => causes.push(*e),
            Judged::Joined(j) => snapshot.joined.push((*j, t)),
        }
    }
    // An on-time episode that starts and stops at one instant never was.
    differential_dataflow::consolidation::consolidate(&mut updates);
    // In the order of the episodes' starts: a condition that ends and starts again at one
    // instant stays, with its new start; an episode that began and ended inside a late
    // backlog (start and stop at one time) is told as both.
    updates.sort_by_key(|(c, d)| (c.since, -*d));
    for (c, d) in updates {
        let key = (c.rule.clone(), c.group.clone());
        if d > 0 {
            let active = Active {
                rule: c.rule,
                group: c.group,
                value: c.value_milli as f64 / 1000.0,
                since: c.since,
                late_by_ms: c.late_by_ms,
            };
            let why = causes.iter().position(|e| {
                (&e.rule, &e.group, e.since) == (&active.rule, &active.group, active.since)
            });
            if let Some(i) = why {
                snapshot.causes.push(causes.swap_remove(i));
            }
            snapshot.changes.push((active.clone(), true, t));
            snapshot.active.insert(key, active);
        } else if let Some(active) = snapshot.active.remove(&key) {
            snapshot.changes.push((active, false, t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::MINUTE_RETENTION_MS;
    use model::Stream;

    #[test]
    fn a_checkpoint_keeps_only_the_retractions_of_messages_before_it() {
        let minute = 60_000;
        let key = Counter::Messages {
            stream: Stream::ElevatorStatus,
            minute,
        };
        let late = Counter::Late {
            stream: Stream::ElevatorStatus,
        };
        let (at, r) = (minute + 30_000, minute + MINUTE_RETENTION_MS);
        let mut snapshot = Snapshot {
            as_of: at,
            ..Snapshot::default()
        };
        // Two messages before the checkpoint: counted, their retraction scheduled at `r`.
        snapshot.values.insert(key.clone(), 2);
        let mut pending: BTreeMap<u64, HashMap<Counter, isize>> = BTreeMap::new();
        // Three after it (one late, entered at the checkpoint's time): their updates and
        // their retractions, which the replay will bring again.
        pending.entry(at).or_default().insert(key.clone(), 2);
        pending.entry(at).or_default().insert(late.clone(), 1);
        pending.entry(at + 900).or_default().insert(key.clone(), 1);
        pending.entry(r).or_default().insert(key.clone(), -5);
        let (values, ahead) = saved(&snapshot, &pending);
        assert_eq!(values, vec![(key.clone(), 2)]);
        assert_eq!(ahead, vec![(r, vec![(key, -2)])]);
    }
}
