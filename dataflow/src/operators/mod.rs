//! Timely operators of the citywatch dataflow, one per file.
//!
//! | file | what it owns |
//! |---|---|
//! | `liveness.rs` | per-key online/offline state from "seen" observations and a timeout |
//! | `tumbling.rs` | per-key tumbling windows in event-time order, with a carry across windows |
//! | `conditions.rs` | rule evaluation: observations per event, then per-group machines in event-time order |
//! | `conditions/batch.rs` | the records between the two steps: one batch per event and group, plain observations as bits |
//! | `conditions/machines.rs` | the conditions operator's state and steps: versions, stash, groups, timers |
//! | `group.rs` | one group's machines on its own timeline: clock, copy before timers, catch-up, reorder |
//! | `reorder.rs` | a group's events put in own-time order after a gap: replay and reconcile |
//! | `judge.rs` | one event judged by its rules' expressions: compiled, or by the interpreter |
//! | `ref_values.rs` | `ref` of each device: typed rows, a CEL map only for the interpreter |
//! | `stash.rs` | records held by time until the frontier passes them, containers kept as they came |
//! | `snapshot.rs` | the sink that folds counter updates into one consistent snapshot per closed time |
//! | `timers.rs` | timers due at frontier times, a list of keys per time |
//! | `versioned.rs` | records held until the rules and reference data of their time are known |

pub mod conditions;
pub(crate) mod group;
pub(crate) mod judge;
pub mod liveness;
pub mod ref_values;
pub(crate) mod reorder;
pub mod snapshot;
pub(crate) mod stash;
pub(crate) mod timers;
pub mod tumbling;
pub mod versioned;

pub use group::ReorderLimits;
pub use liveness::Liveness;
pub use snapshot::{PublishConditions, PublishSnapshots};
pub use tumbling::Tumbling;

use timely::dataflow::operators::{Capability, InputCapability};

/// The one capability an event-time operator holds: at the least time for which it still
/// owes output (its stash, its timers).
#[derive(Default)]
pub(crate) struct Held(Option<Capability<u64>>);

impl Held {
    /// Holding `cap` (a restored operator owes output at the checkpoint's time).
    pub(crate) fn at(cap: Capability<u64>) -> Held {
        Held(Some(cap))
    }

    /// Holds on to an incoming message's time if it is earlier than the one held.
    pub(crate) fn keep(&mut self, incap: &InputCapability<u64>) {
        if let Some(least) = incap.least()
            && self.0.as_ref().is_none_or(|c| c.time() > least)
        {
            self.0 = incap.retain_least(0);
        }
    }

    /// The capability to send under (every pending time is at or after it).
    pub(crate) fn get(&self) -> Option<&Capability<u64>> {
        self.0.as_ref()
    }

    /// Holds only until `next`, the earliest time still owed; nothing when none is.
    pub(crate) fn release_to(&mut self, next: Option<u64>) {
        match (self.0.as_mut(), next) {
            (Some(c), Some(t)) => {
                let t = t.max(*c.time());
                c.downgrade(&t);
            }
            _ => self.0 = None,
        }
    }
}
