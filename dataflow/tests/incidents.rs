//! Incidents across sources: the dataflow joins an alert's start and a complaint under an
//! incident rule, in either order, late, and only within the rule's distance and time.

mod common;

use control::conditions::Joined;
use control::reference::{Elevator, Merchant, Scale, Stall};
use dataflow::{ClockMode, ConditionsSnapshot, DataflowConfig, Reference, RuleFeed};
use model::Envelope;
use std::sync::{Arc, Mutex};
use testkit::Frame;

const T0: u64 = 1_795_737_600_000;

const RULES: &str = r#"
[[rule]]
id = "elevator.trapped"
severity = "critical"
stream = "elevator_status"
mode = "state"
filter = 'event.door == "closed" && event.speed_mps < 0.05 && has(event.occupied) && event.occupied'
for = "5s"
group_by = ["elevator_id"]

[[rule]]
id = "market.short"
severity = "major"
stream = "market_check"
filter = 'event.reference_kg - event.measured_kg > 0.1'
group_by = ["market_id", "scale_id"]
keep_firing_for = "1h"

[[incident]]
id = "incident.elevator"
severity = "critical"
alerts = ["elevator.trapped"]
on = "place"
within_m = 50
within = "1m"

[[incident]]
id = "incident.stall"
severity = "major"
alerts = ["market.short"]
complaints = ["price"]
on = "merchant"
within = "1m"
"#;

/// E1 stands at (29.5630, 106.5510); E2 a kilometre north.
fn reference() -> Reference {
    let elevator = |id: &str, lat: f64| Elevator {
        elevator_id: id.into(),
        building: "B".into(),
        district: "D1".into(),
        lat,
        lon: 106.551,
        maintenance_unit: "U1".into(),
        rated_speed_mps: 1.75,
        floors: 20,
    };
    Reference {
        elevators: vec![elevator("E1", 29.563), elevator("E2", 29.572)],
        stalls: vec![Stall {
            stall_id: "S1".into(),
            market_id: "M1".into(),
            merchant_id: "MER1".into(),
        }],
        scales: vec![Scale {
            scale_id: "SC1".into(),
            market_id: "M1".into(),
            stall_id: "S1".into(),
        }],
        merchants: vec![Merchant {
            merchant_id: "MER1".into(),
            name: "甲".into(),
            office_id: "O1".into(),
        }],
        ..Reference::default()
    }
}

fn at(s: u64) -> u64 {
    T0 + s * 1000
}

/// `id` is trapped from `from` s: firing 5 s later.
fn trapped(id: &str, from: u64) -> Vec<Envelope> {
    (from..from + 8)
        .map(|s| Frame::new(id, at(s)).occupied(true).envelope())
        .collect()
}

fn decode(topic: &str, payload: serde_json::Value, received: u64) -> Envelope {
    model::Decoder::default()
        .decode(topic, payload.to_string().as_bytes(), received)
        .unwrap()
}

/// A complaint made `metres_north` of E1, at `s`.
fn complaint(id: &str, s: u64, metres_north: f64, category: &str) -> Envelope {
    let payload = serde_json::json!({
        "ts": at(s), "complaint_id": id, "merchant_name": "电梯", "category": category,
        "lat": 29.563 + metres_north / 111_320.0, "lon": 106.551,
    });
    decode("cw/v1/complaint/new", payload, at(s))
}

fn about_merchant(id: &str, s: u64, merchant: &str) -> Envelope {
    let payload = serde_json::json!({
        "ts": at(s), "complaint_id": id, "merchant_id": merchant, "merchant_name": "甲",
        "category": "price",
    });
    decode("cw/v1/complaint/new", payload, at(s))
}

fn short_weight(s: u64) -> Envelope {
    let payload = serde_json::json!({"ts": at(s), "reference_kg": 2.0, "measured_kg": 1.7});
    decode("cw/v1/market/M1/scale/SC1/check", payload, at(s))
}

/// Keeps the event clock moving to `until` s.
fn clock(until: u64) -> Vec<Envelope> {
    (0..=until)
        .map(|s| Frame::new("E9", at(s)).envelope())
        .collect()
}

/// Every pair the snapshots carried, in the order given, on two workers.
fn run(events: Vec<Envelope>) -> Vec<Joined> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    common::run_snapshots(
        DataflowConfig {
            workers: 2,
            clock: ClockMode::Event,
            lateness_ms: 2000,
            ..DataflowConfig::default()
        },
        reference(),
        RuleFeed {
            initial: Arc::new(rules::load_str("t.toml", RULES).unwrap()),
            incidents: Arc::new(rules::load_incidents_str("t.toml", RULES).unwrap()),
            ..RuleFeed::default()
        },
        events,
        move |s: ConditionsSnapshot| {
            sink.lock()
                .unwrap()
                .extend(s.joined.into_iter().map(|(j, _)| j));
        },
    );
    let mut all = std::mem::take(&mut *seen.lock().unwrap());
    all.sort();
    all
}

/// Merges event lists by time, as they would arrive.
fn merged(parts: Vec<Vec<Envelope>>) -> Vec<Envelope> {
    let mut all: Vec<Envelope> = parts.into_iter().flatten().collect();
    all.sort_by_key(|e| e.received_ms);
    all
}

fn trapped_pair(complaint_id: &str, complaint_s: u64, distance_m: u32) -> Joined {
    Joined {
        incident: "incident.elevator".into(),
        severity: rules::Severity::Critical,
        subject: "elevator/E1".into(),
        rule: "elevator.trapped".into(),
        group: "E1".into(),
        since: at(15),
        complaint_id: complaint_id.into(),
        complaint_ms: at(complaint_s),
        distance_m: Some(distance_m),
        within_ms: 60_000,
    }
}

#[test]
fn a_complaint_after_the_alert_and_one_before_it_both_join() {
    // Trapped from 10 s, firing at 15 s. C1 comes 30 s before, 20 m away; C2 40 s after,
    // 10 m away; C3 at the same time 200 m away; C4 two minutes later (out of time).
    let events = merged(vec![
        trapped("E1", 10),
        vec![
            complaint("C1", 0, 20.0, "service"),
            complaint("C2", 55, -10.0, "service"),
            complaint("C3", 20, 200.0, "service"),
            complaint("C4", 140, 0.0, "service"),
        ],
        clock(160),
    ]);
    assert_eq!(
        run(events),
        vec![trapped_pair("C1", 0, 20), trapped_pair("C2", 55, 10)]
    );
}

#[test]
fn a_late_complaint_joins_at_its_own_time() {
    // C5 was made at 16 s, 5 m away, but arrives only after the clock passed 60 s.
    let mut events = merged(vec![trapped("E1", 10), clock(160)]);
    let late = complaint("C5", 16, 5.0, "quality");
    let pos = events.iter().position(|e| e.received_ms >= at(60)).unwrap();
    events.insert(pos, late);
    assert_eq!(run(events), vec![trapped_pair("C5", 16, 5)]);
}

#[test]
fn a_stall_joins_on_its_merchant_and_only_with_its_categories() {
    let price = about_merchant("P1", 30, "MER1");
    let other_merchant = about_merchant("P2", 31, "MER2");
    let mut wrong_category = about_merchant("P3", 32, "MER1");
    if let model::Event::ComplaintNew { complaint } = &mut wrong_category.event {
        complaint.category = "service".into();
    }
    let events = merged(vec![
        vec![short_weight(40), price, other_merchant, wrong_category],
        clock(120),
    ]);
    let pairs = run(events);
    assert_eq!(
        pairs,
        vec![Joined {
            incident: "incident.stall".into(),
            severity: rules::Severity::Major,
            subject: "merchant/MER1".into(),
            rule: "market.short".into(),
            group: "M1/SC1".into(),
            since: at(40),
            complaint_id: "P1".into(),
            complaint_ms: at(30),
            distance_m: None,
            within_ms: 60_000,
        }]
    );
}
