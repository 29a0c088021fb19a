//! Complaints (12315): the first occurrence of each id counts, repeats are duplicates; each is
//! routed to an office (the jurisdiction its place lies in, else its merchant's registered
//! office, else `unrouted`) and carries when its decision is due; received per office per day,
//! decided on time or late, still open.

use super::{Counters, Events, Registry};
use crate::counters::Counter;
use crate::operators::conditions::RuleSetVersion;
use differential_dataflow::AsCollection;
use model::time::{DAY_MS, local_day};
use model::{Event, Id};
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::Map;

/// How long a complaint id (and its decision) is remembered: for duplicate detection, open
/// complaints and the on-time rate.
pub const COMPLAINT_ID_RETENTION_MS: u64 = 90 * DAY_MS;

/// A complaint is accepted or rejected within 7 working days of receipt (SAMR measures, art. 14).
pub const COMPLAINT_DECISION_WORKING_DAYS: u32 = 7;
/// A report is decided within 15 working days of receipt.
pub const REPORT_DECISION_WORKING_DAYS: u32 = 15;

/// The office of a complaint that lies in no jurisdiction and names no registered merchant.
pub const UNROUTED_OFFICE: &str = "unrouted";

/// What routing a complaint reads from the reference data.
struct Routing {
    calendar: model::time::WorkCalendar,
    places: crate::reference::Jurisdictions,
}

impl Routing {
    fn of(r: &crate::reference::Reference) -> Routing {
        Routing {
            calendar: r.calendar(),
            places: r.jurisdictions(),
        }
    }
}

/// (day, merchant, decision due, office of its place or empty) per complaint id.
type Received<'s> = differential_dataflow::VecCollection<'s, u64, (Id, (u64, Id, u64, Id)), isize>;

/// The complaints' counters: received, duplicates, decided, open.
pub(crate) fn counters<'s>(
    complaints: Events<'s>,
    statuses: Events<'s>,
    versions: StreamVec<'s, u64, RuleSetVersion>,
    merchants: Registry<'s>,
    reference: &Arc<crate::reference::Reference>,
) -> [Counters<'s>; 4] {
    let ids = routed(complaints, versions, reference);
    let first = ids
        .clone()
        .reduce(|_id, input, output| output.push((input[0].0.clone(), 1)));
    let office_of = offices(first.clone(), merchants);
    let received = first
        .clone()
        .map(|(id, (day, _, _, _))| (id, day))
        .join_map(office_of.clone(), |_, day, office| {
            Counter::ComplaintsReceived {
                office: office.clone(),
                day: *day,
            }
        });
    let decided = decided(statuses);
    let decisions = first
        .clone()
        .join_map(decided.clone(), |id, (_, _, due, _), at| {
            (id.clone(), *at <= *due)
        })
        .join_map(office_of.clone(), |_, on_time, office| {
            Counter::ComplaintsDecided {
                office: office.clone(),
                on_time: *on_time,
            }
        });
    let open = first
        .clone()
        .antijoin(decided.map(|(id, _)| id))
        .map(|(id, _)| (id, ()))
        .join_map(office_of, |_, (), office| Counter::ComplaintsOpen {
            office: office.clone(),
        });
    let duplicates = ids
        .map(|(_, (day, _, _, _))| day)
        .concat(first.map(|(_, (day, _, _, _))| day).negate())
        .map(|day| Counter::ComplaintDuplicates { day });
    [received, duplicates, decisions, open]
}

/// Every complaint with its day, merchant, decision due and the office of its place, routed
/// by the calendar and jurisdictions in force at the complaint's time (so every worker of
/// every process routes it alike); remembered for the retention.
fn routed<'s>(
    complaints: Events<'s>,
    versions: StreamVec<'s, u64, RuleSetVersion>,
    reference: &Arc<crate::reference::Reference>,
) -> Received<'s> {
    crate::operators::versioned::at_version(
        complaints,
        versions,
        "RouteComplaints",
        Rc::new(Routing::of(reference)),
        |v, _| v.reference.as_ref().map(|r| Rc::new(Routing::of(r))),
        |routing, event, t, out| {
            let Event::ComplaintNew { complaint } = event else {
                return;
            };
            let ts = complaint.ts.unwrap_or(t);
            let limit = match complaint.kind {
                model::ComplaintKind::Report => REPORT_DECISION_WORKING_DAYS,
                _ => COMPLAINT_DECISION_WORKING_DAYS,
            };
            let due = routing.calendar.working_days_after(ts, limit);
            let merchant = complaint.merchant_id.unwrap_or_default();
            let place = match (complaint.lat, complaint.lon) {
                (Some(lat), Some(lon)) => routing.places.office_at(lat, lon).cloned(),
                _ => None,
            };
            let rec = (
                complaint.complaint_id,
                (local_day(ts), merchant, due, place.unwrap_or_default()),
            );
            out.push((rec.clone(), t, 1));
            out.push((rec, t + COMPLAINT_ID_RETENTION_MS, -1));
        },
    )
    .as_collection()
}

/// Each complaint's office (DOMAIN.md): the jurisdiction its place lies in; else its
/// merchant's registered office; else `unrouted`.
fn offices<'s>(first: Received<'s>, merchants: Registry<'s>) -> Registry<'s> {
    let by_place = first
        .clone()
        .flat_map(|(id, (_, _, _, place))| (!place.is_empty()).then_some((id, place)));
    let by_merchant = first
        .filter(|(_, (_, _, _, place))| place.is_empty())
        .map(|(id, (_, merchant, _, _))| (merchant, id));
    let known_merchants = merchants.clone().map(|(m, _)| m).distinct();
    by_place
        .concat(
            by_merchant
                .clone()
                .join_map(merchants, |_, id, office| (id.clone(), office.clone())),
        )
        .concat(
            by_merchant
                .antijoin(known_merchants)
                .map(|(_, id)| (id, Id::from(UNROUTED_OFFICE))),
        )
}

/// When each complaint was decided: its first status (accepted, rejected, or straight into
/// mediation or closed).
fn decided<'s>(
    statuses: Events<'s>,
) -> differential_dataflow::VecCollection<'s, u64, (Id, u64), isize> {
    statuses
        .flat_map(|(event, t)| {
            let Event::ComplaintStatus {
                complaint_id,
                update,
            } = event
            else {
                return Vec::new();
            };
            let rec = (complaint_id, update.ts.unwrap_or(t));
            vec![
                (rec.clone(), t, 1),
                (rec, t + COMPLAINT_ID_RETENTION_MS, -1),
            ]
        })
        .as_collection()
        .reduce(|_id, input, output| output.push((*input[0].0, 1)))
}
