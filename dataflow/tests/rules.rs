//! Exact `(condition, time, diff)` output of the rule dataflow for hand-made input.

use dataflow::Condition;
use dataflow::build::{Built, Plan, Timeouts, build};
use dataflow::operators::conditions::{Observation, What};
use dataflow::reference::{Camera, Kitchen, Reference};
use differential_dataflow::consolidation::consolidate_updates;
use model::{Decoder, Envelope};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::operators::{Inspect, Probe};

const T0: u64 = 1_795_737_600_000;
const MIN: u64 = 60_000;

type Update = (Condition, u64, isize);

fn env(topic: &str, payload: String, ts: u64) -> Envelope {
    Decoder::default()
        .decode(topic, payload.as_bytes(), ts)
        .unwrap()
}

fn detection(kitchen: &str, kind: &str, ts: u64) -> (Envelope, u64) {
    let e = env(
        &format!("cw/v1/kitchen/{kitchen}/camera/C1/detection"),
        format!(r#"{{"ts":{ts},"kind":"{kind}","confidence":0.9}}"#),
        ts,
    );
    (e, ts)
}

fn reference() -> Reference {
    Reference {
        kitchens: vec![
            Kitchen {
                kitchen_id: "K1".into(),
                venue: "小学".into(),
                venue_type: "school".into(),
                district: "d".into(),
            },
            Kitchen {
                kitchen_id: "K2".into(),
                venue: "饭店".into(),
                venue_type: "restaurant".into(),
                district: "d".into(),
            },
        ],
        cameras: vec![
            Camera {
                kitchen_id: "K1".into(),
                camera_id: "C1".into(),
            },
            Camera {
                kitchen_id: "K1".into(),
                camera_id: "C2".into(),
            },
        ],
        ..Reference::default()
    }
}

const RULES: &str = r#"
[[rule]]
id = "hygiene"
severity = "minor"
stream = "kitchen_detection"
filter = 'event.kind in ["no_mask", "no_hat"]'
group_by = ["kitchen_id"]
window = { sliding = "10m" }
condition = "value >= 3"

[[rule]]
id = "stranger"
severity = "major"
stream = "kitchen_detection"
filter = 'event.kind == "stranger" && ref.kitchen.venue_type == "school"'
group_by = ["kitchen_id"]
keep_firing_for = "5m"

[[rule]]
id = "camera_offline"
severity = "minor"
stream = "kitchen_heartbeat"
absent_for = "3m"
"#;

/// Runs `rules` over rounds of (epoch, events) and returns the condition updates emitted
/// with times before `until`. The cameras of [`reference`] are registered for rule 2 at T0.
fn run(rounds: Vec<(u64, Vec<(Envelope, u64)>)>, until: u64) -> Vec<Update> {
    run_with(
        Arc::new(rules::load_str("test.toml", RULES).unwrap()),
        Arc::new(reference()),
        rounds,
        until,
        true,
    )
}

fn run_with(
    rules: Arc<Vec<rules::Rule>>,
    reference: Arc<Reference>,
    rounds: Vec<(u64, Vec<(Envelope, u64)>)>,
    until: u64,
    register_cameras: bool,
) -> Vec<Update> {
    timely::execute_directly(move |worker| {
        let plan = Plan {
            timeouts: Timeouts::default(),
            series: false,
            rules: rules.clone(),
            reference: reference.clone(),
            stats: Default::default(),
        };
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let Built {
                inputs, conditions, ..
            } = build(scope, &plan);
            let (probe, _) = conditions
                .unwrap()
                .inner
                .inspect(move |u: &Update| sink.borrow_mut().push(u.clone()))
                .probe();
            (inputs, probe)
        });
        for (epoch, events) in rounds {
            inputs.advance_to(epoch);
            if epoch == T0 && register_cameras {
                // Both registered cameras, for the absence rule (rule 2), at start-up.
                for key in ["K1/C1", "K1/C2"] {
                    inputs.registrations.send(Observation {
                        rule: 2,
                        group: key.into(),
                        time: T0,
                        what: What::Registered,
                    });
                }
            }
            for e in events {
                inputs.events.send(e);
            }
        }
        inputs.advance_to(until);
        while probe.less_than(&until) {
            worker.step();
        }
        let mut all: Vec<Update> = seen
            .borrow()
            .iter()
            .filter(|u| u.1 < until)
            .cloned()
            .collect();
        consolidate_updates(&mut all);
        all
    })
}

fn cond(rule: &str, group: &str, value: f64) -> Condition {
    Condition {
        rule: rule.into(),
        group: group.into(),
        value_milli: (value * 1000.0) as i64,
    }
}

#[test]
fn window_reference_and_absence_rules() {
    let beat = |cam: &str, ts: u64| {
        (
            env(
                &format!("cw/v1/kitchen/K1/camera/{cam}/heartbeat"),
                format!(r#"{{"ts":{ts},"online":true}}"#),
                ts,
            ),
            ts,
        )
    };
    let out = run(
        vec![
            (
                T0,
                vec![
                    beat("C1", T0),
                    detection("K1", "no_mask", T0 + MIN),
                    detection("K2", "stranger", T0 + MIN),
                ],
            ),
            // Out of order within the round: the rules see them in event-time order.
            (
                T0 + 2 * MIN,
                vec![
                    detection("K1", "no_hat", T0 + 4 * MIN),
                    detection("K1", "no_mask", T0 + 3 * MIN),
                    detection("K1", "stranger", T0 + 5 * MIN),
                ],
            ),
            (T0 + 6 * MIN, vec![beat("C1", T0 + 6 * MIN)]),
        ],
        T0 + 30 * MIN,
    );
    let mut expected = vec![
        // Three hygiene detections within 10 minutes: fires at the third, ends when the first
        // leaves the window.
        (cond("hygiene", "K1", 3.0), T0 + 4 * MIN, 1),
        (cond("hygiene", "K1", 3.0), T0 + 11 * MIN, -1),
        // A stranger only alerts in a school canteen (reference data), for 5 minutes.
        (cond("stranger", "K1", 1.0), T0 + 5 * MIN, 1),
        (cond("stranger", "K1", 1.0), T0 + 10 * MIN, -1),
        // C1: silent from T0 until its next heartbeat at 6 min, and again from 6 min; C2
        // never reported: absent 3 minutes after registration (below).
        (cond("camera_offline", "K1/C1", 180.0), T0 + 3 * MIN, 1),
        (cond("camera_offline", "K1/C1", 180.0), T0 + 6 * MIN, -1),
        (cond("camera_offline", "K1/C1", 180.0), T0 + 9 * MIN, 1),
    ];
    consolidate_updates(&mut expected);
    expected.push((cond("camera_offline", "K1/C2", 180.0), T0 + 3 * MIN, 1));
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}

/// The shipped default pack, on the scenarios DOMAIN.md names.
mod default_pack {
    use super::*;
    use dataflow::reference::Elevator;

    fn pack() -> Arc<Vec<rules::Rule>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/default");
        Arc::new(rules::load_dir(&dir).unwrap())
    }

    fn elevators() -> Arc<Reference> {
        Arc::new(Reference {
            elevators: vec![Elevator {
                elevator_id: "E1".into(),
                building: "b".into(),
                district: "d".into(),
                lat: 29.5,
                lon: 106.5,
                maintenance_unit: "MU-01".into(),
                rated_speed_mps: 1.0,
                floors: 10,
            }],
            ..Reference::default()
        })
    }

    fn frame(ts: u64, speed: f64, zone: bool, door: &str, occupied: bool) -> (Envelope, u64) {
        let p = format!(
            r#"{{"ts":{ts},"floor":3,"in_door_zone":{zone},"speed_mps":{speed},"direction":"stop","door":"{door}","occupied":{occupied}}}"#
        );
        (env("cw/v1/elevator/E1/status", p, ts), ts)
    }

    fn only(out: &[Update], rule: &str) -> Vec<(u64, isize)> {
        out.iter()
            .filter(|u| u.0.rule == rule)
            .map(|u| (u.1, u.2))
            .collect()
    }

    #[test]
    fn trapped_outside_the_door_zone_fires_after_30_s_and_resolves_at_an_open_landing() {
        let s = 1000;
        // Stops between floors, doors closed, occupied: frames every second for 40 s, then
        // the car levels, and the door opens at the landing at 45 s.
        let mut frames: Vec<_> = (0..=40)
            .map(|i| frame(T0 + i * s, 0.0, false, "closed", true))
            .collect();
        frames.push(frame(T0 + 42 * s, 0.3, false, "closed", true));
        frames.push(frame(T0 + 44 * s, 0.0, true, "closed", true));
        frames.push(frame(T0 + 45 * s, 0.0, true, "open", true));
        let out = run_with(pack(), elevators(), vec![(T0, frames)], T0 + 60 * s, false);
        assert_eq!(
            only(&out, "elevator.trapped_outside_zone"),
            vec![(T0 + 30 * s, 1), (T0 + 45 * s, -1)]
        );
        // Stopped outside the door zone from 0 s: fires at 10 s; the car moves at 42 s, and
        // the condition ends 10 s later (hysteresis).
        assert_eq!(
            only(&out, "elevator.stopped_outside_door_zone"),
            vec![(T0 + 10 * s, 1), (T0 + 52 * s, -1)]
        );
        assert!(only(&out, "elevator.trapped_in_zone").is_empty());
    }

    #[test]
    fn overspeed_is_judged_against_the_registered_rated_speed() {
        let s = 1000;
        let frames = vec![
            frame(T0, 1.1, false, "closed", false),
            frame(T0 + s, 1.2, false, "closed", false),
            frame(T0 + 2 * s, 1.0, false, "closed", false),
        ];
        let out = run_with(pack(), elevators(), vec![(T0, frames)], T0 + 60 * s, false);
        // 1.1 is under 1.15 × 1.0; 1.2 is over; back under at 2 s, ends 10 s later.
        assert_eq!(
            only(&out, "elevator.overspeed"),
            vec![(T0 + s, 1), (T0 + 12 * s, -1)]
        );
    }

    #[test]
    fn a_cheating_scale_and_a_failed_residue_retest() {
        let sale = |ts: u64, total: f64| {
            let p = format!(
                r#"{{"ts":{ts},"stall_id":"ST1","goods_code":"pork","weight_kg":2.0,"unit_price":10.0,"total":{total}}}"#
            );
            (env("cw/v1/market/M1/scale/S1/sale", p, ts), ts)
        };
        let residue = |ts: u64, pct: f64| {
            let p = format!(
                r#"{{"ts":{ts},"stall_id":"ST1","goods_code":"cabbage","inhibition_pct":{pct}}}"#
            );
            (env("cw/v1/market/M1/residue", p, ts), ts)
        };
        let events = vec![
            sale(T0, 20.10),              // within max(0.05, 1 % of 20) = 0.20
            sale(T0 + MIN, 20.50),        // 0.50 over: mismatch
            residue(T0 + 2 * MIN, 55.0),  // positive
            residue(T0 + 30 * MIN, 60.0), // re-test positive
            residue(T0 + 60 * MIN, 52.0), // second re-test positive: fail
        ];
        let out = run_with(
            pack(),
            Arc::new(Reference::default()),
            vec![(T0, events)],
            T0 + 200 * MIN,
            false,
        );
        assert_eq!(
            only(&out, "market.total_mismatch"),
            vec![(T0 + MIN, 1), (T0 + 61 * MIN, -1)]
        );
        assert_eq!(
            only(&out, "market.residue_suspect"),
            vec![(T0 + 2 * MIN, 1), (T0 + 180 * MIN, -1)]
        );
        let fail = only(&out, "market.residue_fail");
        assert_eq!(fail[0], (T0 + 60 * MIN, 1));
    }
}
