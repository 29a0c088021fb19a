//! Kitchen cameras: registered and online per venue type; and each kitchen's detections per
//! kind and minute for the time series.

use super::{Counters, Events, PartOf, Registry};
use crate::counters::Counter;
use crate::operators::{Liveness, Tumbling};
use crate::series::{MINUTE_MS, Series};
use model::{Event, Id};
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::Map;

/// Registered and online cameras per venue type: `cameras` is (kitchen, camera), `kitchens`
/// (kitchen, venue type).
pub(crate) fn counters<'s>(
    events: Events<'s>,
    cameras: Registry<'s>,
    kitchens: Registry<'s>,
    offline_after_ms: u64,
    part: PartOf<'_>,
) -> [Counters<'s>; 2] {
    let online = events
        .flat_map(|(event, t)| match event {
            Event::Heartbeat {
                kitchen_id,
                camera_id,
                heartbeat,
            } => Some(((kitchen_id, camera_id), t, heartbeat.online)),
            Event::Detection {
                kitchen_id,
                camera_id,
                ..
            } => Some(((kitchen_id, camera_id), t, true)),
            _ => None,
        })
        .liveness(offline_after_ms, part("liveness/cameras"));
    let venue = cameras.join_map(kitchens, |kitchen, camera, venue| {
        ((kitchen.clone(), camera.clone()), venue.clone())
    });
    let registered = venue
        .clone()
        .map(|(_, venue_type)| Counter::CamerasRegistered { venue_type });
    let online =
        online
            .map(|key| (key, ()))
            .join_map(venue, |_, (), venue| Counter::CamerasOnline {
                venue_type: venue.clone(),
            });
    [registered, online]
}

/// Each kitchen's detections per kind and minute.
pub(crate) fn series<'s>(events: Events<'s>, part: PartOf<'_>) -> StreamVec<'s, u64, Series> {
    events
        .flat_map(|(event, t)| match event {
            Event::Detection {
                kitchen_id,
                detection,
                ..
            } => Some((
                (kitchen_id, Id::from(detection.kind.as_str())),
                t,
                detection.confidence,
            )),
            _ => None,
        })
        .tumbling(MINUTE_MS, part("series/kitchen_detections"))
        .map(
            |((kitchen_id, kind), start_ms, window)| Series::KitchenDetections {
                kitchen_id,
                kind,
                start_ms,
                window,
            },
        )
}
