//! What made a condition start firing, read off its machine right after the start is
//! published (docs/explain.md): the matched events it kept, a window's items, the time it was
//! last heard or fell due.

use super::RuleSet;
use crate::conditions::{Cause, Condition};
use crate::operators::group::Group;
use rules::machine::Machine;
use rules::spec::{Kind, Rule};

/// The cause of every start among `changes` (a group's, just published), at its time.
pub(super) fn of_starts(
    group: &Group,
    changes: &[(Condition, u64, isize)],
    set: &RuleSet,
    keep: usize,
) -> Vec<(Cause, u64)> {
    changes
        .iter()
        .filter(|(_, _, d)| *d > 0)
        .filter_map(|(c, t, _)| {
            let k = rules::rule_key(&c.rule);
            let (_, m) = group.machines.iter().find(|(x, _)| *x == k)?;
            // The machine that fires this very episode (a start put back after a backlog
            // stands for an episode whose machine has moved on).
            m.firing().filter(|f| f.since == c.since)?;
            Some((of(set.get(k)?, c, m, keep), *t))
        })
        .collect()
}

/// The cause of `c`, started by `m`.
fn of(rule: &Rule, c: &Condition, m: &Machine, keep: usize) -> Cause {
    let (mut events, mut earlier) = (Vec::new(), 0);
    if let Some(trail) = m.trail() {
        events = trail.events.iter().cloned().collect();
        earlier = trail.earlier;
    }
    // A window's latest items, the earlier ones counted.
    let cut = m.items().count().saturating_sub(keep);
    earlier += cut as u32;
    let timed = matches!(rule.kind, Kind::Absence { .. } | Kind::Deadline { .. });
    Cause {
        rule: c.rule.clone(),
        group: c.group.clone(),
        since: c.since,
        value: c.value_milli as f64 / 1000.0,
        raw_since: if timed { None } else { m.raw_since() },
        events,
        items: m.items().skip(cut).cloned().collect(),
        earlier,
        last_seen: m.last_seen(),
    }
}
