//! Timely operators of the citywatch dataflow, one per file.
//!
//! | file | what it owns |
//! |---|---|
//! | `liveness.rs` | per-key online/offline state from "seen" observations and a timeout |
//! | `tumbling.rs` | per-key tumbling windows in event-time order, with a carry across windows |
//! | `conditions.rs` | rule evaluation: observations per event, then per-group machines in event-time order |
//! | `snapshot.rs` | the sink that folds counter updates into one consistent snapshot per closed time |

pub mod conditions;
pub mod liveness;
pub mod snapshot;
pub mod tumbling;

pub use liveness::Liveness;
pub use snapshot::{PublishConditions, PublishSnapshots};
pub use tumbling::Tumbling;
