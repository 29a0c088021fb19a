//! Incidents across sources (docs/explain.md §3): alerts and complaints that an incident rule
//! joins, found incrementally by a differential join on (incident rule, key).
//!
//! Each side becomes a collection of members. An alert's start is a member from the time it
//! is known; its key comes from its group through the reference data in force (the elevator
//! or kitchen's registered place, the scale or stall's merchant). A complaint is a member
//! from its arrival; its keys come from its payload. A place key is a grid cell as wide as the
//! join's distance: an alert lies in one cell, a complaint reaches the cells its circle
//! touches, and the exact distance is checked on the joined pair, so a pair is found once.
//! Every member is retracted `within` (plus the backlog a late partner may arrive with) after
//! its own time: the join's state is bounded by the time bound and the members' rate. A join
//! is order-free: a complaint before its alert or after it, or late, meets it alike.

use super::Events;
use crate::conditions::{Condition, Joined};
use crate::operators::conditions::{RefValues, RuleSetVersion};
use differential_dataflow::{AsCollection, VecCollection};
use model::{Event, Id};
use rules::incident::{IncidentRule, JoinOn};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::Map;

/// Metres per degree of latitude.
const METRES_PER_DEGREE: f64 = 111_320.0;

/// What an alert and a complaint meet on: (incident rule's index, key).
type Key = (u16, JoinKey);

#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
enum JoinKey {
    /// A grid cell (latitude, longitude indices).
    Cell(i64, i64),
    Merchant(Id),
}

/// A point in micro-degrees (records must be `Ord`: no floats).
type Point = (i64, i64);

#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
struct AlertMember {
    subject: String,
    rule: String,
    group: String,
    since: u64,
    place: Option<Point>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
struct ComplaintMember {
    complaint_id: Id,
    ts: u64,
    place: Option<Point>,
}

/// Where the alerts' devices are and whose they are, and how each rule groups: what keys an
/// alert, under one version of the reference data and rules. The places are read through the
/// rules' own index of the reference rows (no second copy of a city's registry); the
/// merchants of scales and stalls are a market's few hundred rows.
struct Keys {
    refs: Arc<RefValues>,
    merchants: HashMap<(&'static str, Id), Id>,
    group_by: HashMap<String, Vec<String>>,
}

impl Keys {
    fn of(refs: Arc<RefValues>, rules: &[(String, rules::RuleSource)]) -> Keys {
        let r = refs.reference();
        let mut merchants = HashMap::new();
        for s in &r.stalls {
            merchants.insert(("stall_id", s.stall_id.clone()), s.merchant_id.clone());
        }
        for s in &r.scales {
            if let Some(m) = merchants.get(&("stall_id", s.stall_id.clone())).cloned() {
                merchants.insert(("scale_id", s.scale_id.clone()), m);
            }
        }
        for m in &r.merchants {
            merchants.insert(
                ("merchant_id", m.merchant_id.clone()),
                m.merchant_id.clone(),
            );
        }
        let group_by = rules
            .iter()
            .map(|(_, s)| (s.id.clone(), s.group_by.clone()))
            .collect();
        Keys {
            refs,
            merchants,
            group_by,
        }
    }

    /// The registered point of a device, in micro-degrees.
    fn place(&self, field: &str, id: &Id) -> Option<Point> {
        let (lat, lon) = match field {
            "elevator_id" => self.refs.elevator(id).map(|e| (e.lat, e.lon))?,
            "kitchen_id" => self.refs.kitchen(id).and_then(|k| k.lat.zip(k.lon))?,
            _ => return None,
        };
        Some(((lat * 1e6).round() as i64, (lon * 1e6).round() as i64))
    }

    /// The member and key an alert of `c` is under `inc` (none: its device is not known).
    fn alert(&self, i: u16, inc: &IncidentRule, c: &Condition) -> Option<(Key, AlertMember)> {
        let (at, field) = inc.key_field(self.group_by.get(&c.rule)?)?;
        let value = Id::from(c.group.split('/').nth(at)?);
        let subject = format!("{}/{value}", field.trim_end_matches("_id"));
        let member = |subject, place| AlertMember {
            subject,
            rule: c.rule.clone(),
            group: c.group.clone(),
            since: c.since,
            place,
        };
        match inc.on {
            JoinOn::Place { metres } => {
                let p = self.place(field, &value)?;
                let key = (i, JoinKey::Cell(cell(p.0, metres), cell(p.1, metres)));
                Some((key, member(subject, Some(p))))
            }
            JoinOn::Merchant => {
                let m = self.merchants.get(&(field, value))?.clone();
                let subject = format!("merchant/{m}");
                Some(((i, JoinKey::Merchant(m)), member(subject, None)))
            }
        }
    }
}

/// The grid index of a coordinate (micro-degrees) for cells `metres` wide (in latitude
/// degrees; a complaint reaches as many longitude cells as its latitude needs).
fn cell(micro: i64, metres: f64) -> i64 {
    let width = metres / METRES_PER_DEGREE * 1e6;
    (micro as f64 / width).floor() as i64
}

/// The cells a circle of `metres` around `p` touches.
fn cells_around(p: Point, metres: f64) -> Vec<(i64, i64)> {
    let lat = p.0 as f64 / 1e6;
    let dlat = metres / METRES_PER_DEGREE * 1e6;
    let dlon = dlat / lat.to_radians().cos().max(0.05);
    let (lat0, lat1) = (
        cell(p.0 - dlat as i64, metres),
        cell(p.0 + dlat as i64, metres),
    );
    let (lon0, lon1) = (
        cell(p.1 - dlon as i64, metres),
        cell(p.1 + dlon as i64, metres),
    );
    (lat0..=lat1)
        .flat_map(|a| (lon0..=lon1).map(move |o| (a, o)))
        .collect()
}

/// Great-circle distance in metres (haversine) between two points in micro-degrees.
pub(crate) fn distance_m(a: Point, b: Point) -> f64 {
    let rad = |v: i64| (v as f64 / 1e6).to_radians();
    let (la1, lo1, la2, lo2) = (rad(a.0), rad(a.1), rad(b.0), rad(b.1));
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// Every alert and complaint that `incidents` join, at the later of their two times.
pub(crate) fn joined<'s>(
    conditions: VecCollection<'s, u64, Condition, isize>,
    complaints: Events<'s>,
    versions: StreamVec<'s, u64, RuleSetVersion>,
    (plan, refs): (&crate::build::Plan, Arc<RefValues>),
) -> StreamVec<'s, u64, (Joined, u64)> {
    let incidents = plan.incidents.clone();
    let keep_ms = plan.timeouts.max_backlog_ms;
    let alerts = alert_members(conditions, versions, (plan, refs), keep_ms);
    let complaints = complaint_members(complaints, incidents.clone(), keep_ms);
    alerts
        .join_map(complaints, move |(i, _), a, c| {
            pair(&incidents[usize::from(*i)], a, c)
        })
        .flat_map(|p| p)
        .inner
        .flat_map(|(j, t, d)| (d > 0).then_some((j, t)))
}

/// The alerts' members: each start of a condition whose rule an incident takes, from the time
/// it is known until `within` (and the backlog) after its start.
fn alert_members<'s>(
    conditions: VecCollection<'s, u64, Condition, isize>,
    versions: StreamVec<'s, u64, RuleSetVersion>,
    (plan, refs): (&crate::build::Plan, Arc<RefValues>),
    keep_ms: u64,
) -> VecCollection<'s, u64, (Key, AlertMember), isize> {
    let incidents = plan.incidents.clone();
    let starts = conditions
        .consolidate()
        .inner
        .flat_map(|(c, t, d)| (d > 0).then_some((c, t)));
    let initial = Rc::new(Keys::of(refs, &[]));
    crate::operators::versioned::at_version(
        starts,
        versions,
        "IncidentAlerts",
        initial,
        |v, before: &Rc<Keys>| {
            // The same reference data keeps its index; new data is indexed once.
            let refs = match &v.reference {
                Some(r) if !Arc::ptr_eq(r, before.refs.reference()) => {
                    Arc::new(RefValues::new(r.clone()))
                }
                _ => before.refs.clone(),
            };
            Some(Rc::new(Keys::of(refs, &v.rules)))
        },
        move |keys, c, t, out| {
            for (i, inc) in incidents.iter().enumerate() {
                if !inc.enabled || !inc.takes_alert(&c.rule) {
                    continue;
                }
                let Some(member) = keys.alert(i as u16, inc, &c) else {
                    continue;
                };
                let until = c.since.saturating_add(inc.within_ms + keep_ms);
                if until > t {
                    out.push((member.clone(), t, 1));
                    out.push((member, until, -1));
                }
            }
        },
    )
    .as_collection()
}

/// The complaints' members: each new complaint an incident takes, under every key it
/// reaches, until `within` (and the backlog) after it was received.
fn complaint_members<'s>(
    complaints: Events<'s>,
    incidents: Arc<Vec<IncidentRule>>,
    keep_ms: u64,
) -> VecCollection<'s, u64, (Key, ComplaintMember), isize> {
    complaints
        .flat_map(move |(event, t)| {
            let Event::ComplaintNew { complaint } = event else {
                return Vec::new();
            };
            let ts = complaint.ts.unwrap_or(t);
            let place = complaint
                .lat
                .zip(complaint.lon)
                .map(|(lat, lon)| ((lat * 1e6).round() as i64, (lon * 1e6).round() as i64));
            let member = ComplaintMember {
                complaint_id: complaint.complaint_id.clone(),
                ts,
                place,
            };
            let mut out = Vec::new();
            for (i, inc) in incidents.iter().enumerate() {
                if !inc.enabled || !inc.takes_complaint(&complaint.category) {
                    continue;
                }
                let keys: Vec<JoinKey> = match (inc.on, place, &complaint.merchant_id) {
                    (JoinOn::Place { metres }, Some(p), _) => cells_around(p, metres)
                        .into_iter()
                        .map(|(a, o)| JoinKey::Cell(a, o))
                        .collect(),
                    (JoinOn::Merchant, _, Some(m)) => vec![JoinKey::Merchant(m.clone())],
                    _ => continue,
                };
                let until = ts.saturating_add(inc.within_ms + keep_ms).max(t + 1);
                for k in keys {
                    let rec = ((i as u16, k), member.clone());
                    out.push((rec.clone(), t, 1));
                    out.push((rec, until, -1));
                }
            }
            out
        })
        .as_collection()
}

/// An alert and a complaint under one key: joined when they lie within the rule's time (and,
/// for a place, its distance) of each other.
fn pair(inc: &IncidentRule, a: &AlertMember, c: &ComplaintMember) -> Option<Joined> {
    if a.since.abs_diff(c.ts) > inc.within_ms {
        return None;
    }
    let distance_m = match (inc.on, a.place, c.place) {
        (JoinOn::Place { metres }, Some(p), Some(q)) => {
            let d = distance_m(p, q);
            if d > metres {
                return None;
            }
            Some(d.round() as u32)
        }
        (JoinOn::Place { .. }, _, _) => return None,
        (JoinOn::Merchant, _, _) => None,
    };
    Some(Joined {
        incident: inc.id.clone(),
        severity: inc.severity,
        subject: a.subject.clone(),
        rule: a.rule.clone(),
        group: a.group.clone(),
        since: a.since,
        complaint_id: c.complaint_id.to_string(),
        complaint_ms: c.ts,
        distance_m,
        within_ms: inc.within_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complaint_reaches_the_cell_of_every_point_within_its_distance() {
        // Chongqing's latitude: a degree of longitude is ~97 km there.
        let centre = (29_563_000, 106_551_000);
        let cells = cells_around(centre, 50.0);
        for (dlat, dlon) in [
            (0.00044, 0.0),
            (-0.00044, 0.0),
            (0.0, 0.0005),
            (0.0003, -0.0003),
        ] {
            let p = (
                centre.0 + (dlat * 1e6) as i64,
                centre.1 + (dlon * 1e6) as i64,
            );
            assert!(distance_m(centre, p) <= 50.0, "{dlat},{dlon}");
            assert!(cells.contains(&(cell(p.0, 50.0), cell(p.1, 50.0))));
        }
        assert!(cells.len() <= 16, "{}", cells.len());
    }

    #[test]
    fn the_distance_is_the_great_circle_one() {
        // 0.001° of latitude is 111.2 m.
        let d = distance_m((29_000_000, 106_000_000), (29_001_000, 106_000_000));
        assert!((d - 111.2).abs() < 0.5, "{d}");
    }
}
