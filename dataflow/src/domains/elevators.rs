//! Elevators: online per district, online but unregistered, registered per district; and the
//! 10-s windows of each elevator's frames for the time series.

use super::{Counters, Events, PartOf, Registry};
use crate::counters::Counter;
use crate::operators::{Liveness, Tumbling};
use crate::series::{ELEVATOR_WINDOW_MS, FrameSummary, Series};
use model::{Event, Id};
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::Map;

/// Each frame's elevator and summary, at its time.
pub(crate) type Frames<'s> = StreamVec<'s, u64, (Id, u64, FrameSummary)>;

/// The frames of the elevators' status events.
pub(crate) fn frames<'s>(events: Events<'s>) -> Frames<'s> {
    events.flat_map(|(event, t)| match event {
        Event::ElevatorStatus { elevator_id, frame } => {
            Some((elevator_id, t, FrameSummary::of(&frame)))
        }
        _ => None,
    })
}

/// Online per district, online but unregistered, and registered per district.
pub(crate) fn counters<'s>(
    frames: Frames<'s>,
    registry: Registry<'s>,
    offline_after_ms: u64,
    part: PartOf<'_>,
) -> [Counters<'s>; 3] {
    let online = frames
        .map(|(id, t, _)| (id, t, true))
        .liveness(offline_after_ms, part("liveness/elevators"));
    let registered_ids = registry.clone().map(|(id, _)| id).distinct();
    let online_per_district =
        online
            .clone()
            .map(|id| (id, ()))
            .join_map(registry.clone(), |_, (), district| {
                Counter::ElevatorsOnline {
                    district: district.clone(),
                }
            });
    let unregistered = online
        .map(|id| (id, ()))
        .antijoin(registered_ids)
        .map(|_| Counter::ElevatorsUnregisteredOnline);
    let registered = registry.map(|(_, district)| Counter::ElevatorsRegistered { district });
    [registered, online_per_district, unregistered]
}

/// Each elevator's 10-s windows.
pub(crate) fn series<'s>(frames: Frames<'s>, part: PartOf<'_>) -> StreamVec<'s, u64, Series> {
    frames
        .tumbling(ELEVATOR_WINDOW_MS, part("series/elevators"))
        .map(|(elevator_id, start_ms, window)| Series::Elevator {
            elevator_id,
            start_ms,
            window,
        })
}
