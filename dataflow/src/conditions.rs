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

/// Every active condition, complete for event times before `as_of`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConditionsSnapshot {
    pub as_of: u64,
    pub active: BTreeMap<(String, String), Active>,
    /// What changed since the previous snapshot, in time order: the condition, whether it
    /// started (else stopped), and when.
    pub changes: Vec<(Active, bool, u64)>,
}

/// Receives each conditions snapshot.
pub type ConditionsFn = Arc<dyn Fn(ConditionsSnapshot) + Send + Sync>;
