//! Active alert conditions: the output of the rules.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One active condition, as a differential record: `+1` at the time it starts firing, `-1`
/// when it stops. Its identity is (rule, group); the value is the one that made it fire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Condition {
    pub rule: String,
    /// The group key: the `group_by` values joined with `/` (the device for absence rules).
    pub group: String,
    /// The triggering value × 1000 (records must be `Ord`: no floats).
    pub value_milli: i64,
    /// When the episode started firing, on its group's own timeline (event time, ms). It
    /// equals the record's differential time unless the episode was found in a late backlog.
    pub since: u64,
    /// How much later than `since` the episode was known (0 when on time).
    pub late_by_ms: u64,
}

/// A condition firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    pub rule: String,
    pub group: String,
    pub value: f64,
    /// When it started firing (event time, ms).
    pub since: u64,
    /// How much later than `since` it was known: found in a key's late backlog (0: on time).
    #[serde(default)]
    pub late_by_ms: u64,
}

/// What made a condition start firing, as the rules' operator saw it when it started
/// (docs/explain.md): exact, and bounded by the `explain_events` setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub rule: String,
    pub group: String,
    /// The episode's start (as its condition's `since`).
    pub since: u64,
    /// The value it fired with (a window's aggregate).
    pub value: f64,
    /// Since when its raw condition held: the `for` period's start (none for an absence or
    /// a deadline, fired by a silence or a due time).
    pub raw_since: Option<u64>,
    /// The matched events of the episode, oldest first: an event rule's match, a state rule's
    /// over its `for` period, the event that started a deadline's clock.
    pub events: Vec<model::seen::Seen>,
    /// Window rules: the window's items when it fired (event time, what each added), oldest
    /// first.
    pub items: Vec<(u64, rules::machine::Item)>,
    /// How many earlier events (or items) of the episode were not kept.
    pub earlier: u32,
    /// An absence rule's last matching event (or registration), a deadline's due time.
    pub last_seen: Option<u64>,
}

/// An alert and a complaint that an incident rule joins (docs/explain.md §3): found by the
/// dataflow, at the later of their two times.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Joined {
    /// The incident rule, and its severity.
    pub incident: String,
    pub severity: rules::Severity,
    /// What both are about: `elevator/E0042`, `kitchen/K001`, `merchant/M001`.
    pub subject: String,
    /// The alert's rule, group and episode start.
    pub rule: String,
    pub group: String,
    pub since: u64,
    pub complaint_id: String,
    /// When the complaint was received (its `ts`).
    pub complaint_ms: u64,
    /// A place join: how far the complaint's point lies from the device (metres).
    pub distance_m: Option<u32>,
    /// The incident rule's time bound.
    pub within_ms: u64,
}

/// Every active condition, complete for event times before `as_of`.
#[derive(Debug, Clone, Default)]
pub struct ConditionsSnapshot {
    pub as_of: u64,
    pub active: BTreeMap<(String, String), Active>,
    /// What changed since the previous snapshot, in time order: the condition, whether it
    /// started (else stopped), and when.
    pub changes: Vec<(Active, bool, u64)>,
    /// The rule sets in force over these changes, oldest first, each from its activation
    /// time: a change at `t` was computed under the last one activated at or before `t`
    /// (empty where the dataflow does not say, as in offline runs).
    pub rules: Vec<(u64, Arc<Vec<rules::Rule>>)>,
    /// What made each of `changes`' starts fire, where the operator kept it.
    pub causes: Vec<Cause>,
    /// Alerts and complaints joined since the previous snapshot, with the time each was
    /// found (after the changes: a joined alert's start is in this snapshot or an earlier one).
    pub joined: Vec<(Joined, u64)>,
}

impl ConditionsSnapshot {
    /// The rule set a change at `t` was computed under, if the snapshot says.
    pub fn rules_at(&self, t: u64) -> Option<&[rules::Rule]> {
        self.rules
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .or(self.rules.first())
            .map(|(_, r)| r.as_slice())
    }

    /// What made `a` start firing, if the snapshot carries it.
    pub fn cause_of(&self, a: &Active) -> Option<&Cause> {
        self.causes
            .iter()
            .find(|c| c.rule == a.rule && c.group == a.group && c.since == a.since)
    }

    /// The newest rule set of the snapshot, if it says.
    pub fn latest_rules(&self) -> Option<&[rules::Rule]> {
        self.rules.last().map(|(_, r)| r.as_slice())
    }
}

/// The rule sets the dataflow put in force, by activation time, kept only as long as a
/// snapshot can still have changes computed under them (worker 0 keeps it).
#[derive(Default)]
pub struct RuleVersions(std::sync::Mutex<Vec<(u64, Arc<Vec<rules::Rule>>)>>);

impl RuleVersions {
    /// `rules` in force from `activation` on.
    pub fn activate(&self, activation: u64, rules: Arc<Vec<rules::Rule>>) {
        self.lock().push((activation, rules));
    }

    /// The versions a snapshot closed at `as_of` may need, and forgets those no later one
    /// will (its changes are all at `as_of` or later).
    pub fn for_snapshot(&self, as_of: u64) -> Vec<(u64, Arc<Vec<rules::Rule>>)> {
        let mut v = self.lock();
        let out = v.clone();
        let still = v.iter().rposition(|(from, _)| *from <= as_of).unwrap_or(0);
        v.drain(..still);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Arc<Vec<rules::Rule>>)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Receives each conditions snapshot.
pub type ConditionsFn = Arc<dyn Fn(ConditionsSnapshot) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    fn set(id: &str) -> Arc<Vec<rules::Rule>> {
        let text = format!(
            "[[rule]]\nid = \"{id}\"\nseverity = \"minor\"\nstream = \"elevator_event\"\nfilter = 'true'\ngroup_by = [\"elevator_id\"]\n"
        );
        Arc::new(rules::load_str("r.toml", &text).unwrap())
    }

    fn ids(s: &ConditionsSnapshot, t: u64) -> String {
        s.rules_at(t).unwrap()[0].id.clone()
    }

    #[test]
    fn a_snapshot_names_the_rule_set_each_change_was_computed_under() {
        let v = RuleVersions::default();
        v.activate(0, set("a"));
        v.activate(1_000, set("b"));
        let first = ConditionsSnapshot {
            as_of: 1_500,
            rules: v.for_snapshot(1_500),
            ..ConditionsSnapshot::default()
        };
        assert_eq!(
            (ids(&first, 999), ids(&first, 1_000)),
            ("a".into(), "b".into())
        );
        v.activate(2_000, set("c"));
        // No later change is before 1 500: the set of 0 is no longer needed.
        let second = ConditionsSnapshot {
            as_of: 2_500,
            rules: v.for_snapshot(2_500),
            ..ConditionsSnapshot::default()
        };
        assert_eq!(second.rules.len(), 2);
        assert_eq!(
            (ids(&second, 1_600), ids(&second, 2_100)),
            ("b".into(), "c".into())
        );
        assert_eq!(second.latest_rules().unwrap()[0].id, "c");
        assert!(ConditionsSnapshot::default().rules_at(5).is_none());
    }
}
