//! The counters and time series of each domain, built from its part of the event stream by
//! [`crate::build::build`]: one module per domain, each reading only its own events and
//! registries (the rules, common to all, are built there).

pub(crate) mod cameras;
pub(crate) mod complaints;
pub(crate) mod elevators;
pub(crate) mod incidents;
pub(crate) mod markets;

use crate::checkpoint::Part;
use crate::counters::Counter;
use differential_dataflow::VecCollection;
use model::{Event, Id};
use timely::dataflow::StreamVec;

/// One domain's events, each at its dataflow time.
pub(crate) type Events<'s> = StreamVec<'s, u64, (Event, u64)>;
/// Counter updates.
pub(crate) type Counters<'s> = VecCollection<'s, u64, Counter, isize>;
/// A registry as pairs: (device or merchant, its district, venue type or office).
pub(crate) type Registry<'s> = VecCollection<'s, u64, (Id, Id), isize>;
/// An operator's share of the checkpoints, by its name.
pub(crate) type PartOf<'a> = &'a dyn Fn(&'static str) -> Option<Part>;
