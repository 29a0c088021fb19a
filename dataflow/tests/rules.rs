//! Exact `(condition, time, diff)` output of the rule dataflow for hand-made input.

mod common;

use common::{Update, finish, rule_dataflow};

use dataflow::Condition;
use dataflow::operators::conditions::{Observation, RuleSetVersion, What};
use dataflow::reference::{Camera, Kitchen, Reference};
use differential_dataflow::consolidation::consolidate_updates;
use model::{Decoder, Envelope};
use std::sync::Arc;

const T0: u64 = 1_795_737_600_000;
const MIN: u64 = 60_000;

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

fn heartbeat(kitchen: &str, camera: &str, ts: u64) -> (Envelope, u64) {
    let e = env(
        &format!("cw/v1/kitchen/{kitchen}/camera/{camera}/heartbeat"),
        format!(r#"{{"ts":{ts},"online":true}}"#),
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
                lat: None,
                lon: None,
            },
            Kitchen {
                kitchen_id: "K2".into(),
                venue: "饭店".into(),
                venue_type: "restaurant".into(),
                district: "d".into(),
                lat: None,
                lon: None,
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
        vec![
            ("camera_offline", "K1/C1".to_owned()),
            ("camera_offline", "K1/C2".to_owned()),
        ],
    )
}

fn run_with(
    rules: Arc<Vec<rules::Rule>>,
    reference: Arc<Reference>,
    rounds: Vec<(u64, Vec<(Envelope, u64)>)>,
    until: u64,
    registrations: Vec<(&'static str, String)>,
) -> Vec<Update> {
    timely::execute_directly(move |worker| {
        let mut rounds_start = rounds.first().map(|r| r.0);
        let (mut inputs, probe, seen) = rule_dataflow(worker, reference.clone());
        inputs.rule_versions.send(RuleSetVersion::of(0, &rules));
        for (epoch, events) in rounds {
            inputs.advance_to(epoch);
            if let Some(start) = rounds_start.take() {
                // Registered devices, for absence rules, at start-up.
                for (rule, key) in registrations.iter().cloned() {
                    let rule = rules::rule_key(rule);
                    inputs.registrations.send(Observation {
                        rule,
                        group: key,
                        time: start,
                        what: What::Registered,
                    });
                }
            }
            for e in events {
                inputs.events.send(e);
            }
        }
        finish(worker, &mut inputs, &probe, &seen, until)
    })
}

/// An on-time episode's record: it started at `since` (its start's time).
fn cond(rule: &str, group: &str, value: f64, since: u64) -> Condition {
    Condition {
        rule: rule.into(),
        group: group.into(),
        value_milli: (value * 1000.0) as i64,
        since,
        late_by_ms: 0,
    }
}

#[test]
fn window_reference_and_absence_rules() {
    let beat = |cam: &str, ts: u64| heartbeat("K1", cam, ts);
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
        (cond("hygiene", "K1", 3.0, T0 + 4 * MIN), T0 + 4 * MIN, 1),
        (cond("hygiene", "K1", 3.0, T0 + 4 * MIN), T0 + 11 * MIN, -1),
        // A stranger only alerts in a school canteen (reference data), for 5 minutes.
        (cond("stranger", "K1", 1.0, T0 + 5 * MIN), T0 + 5 * MIN, 1),
        (cond("stranger", "K1", 1.0, T0 + 5 * MIN), T0 + 10 * MIN, -1),
        // C1: silent from T0 until its next heartbeat at 6 min, and again from 6 min; C2
        // never reported: absent 3 minutes after registration (below).
        (
            cond("camera_offline", "K1/C1", 180.0, T0 + 3 * MIN),
            T0 + 3 * MIN,
            1,
        ),
        (
            cond("camera_offline", "K1/C1", 180.0, T0 + 3 * MIN),
            T0 + 6 * MIN,
            -1,
        ),
        (
            cond("camera_offline", "K1/C1", 180.0, T0 + 9 * MIN),
            T0 + 9 * MIN,
            1,
        ),
    ];
    consolidate_updates(&mut expected);
    expected.push((
        cond("camera_offline", "K1/C2", 180.0, T0 + 3 * MIN),
        T0 + 3 * MIN,
        1,
    ));
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
        let f = testkit::Frame::new("E1", ts)
            .floor(3)
            .in_door_zone(zone)
            .speed(speed)
            .door(door)
            .occupied(occupied);
        (f.envelope(), ts)
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
        let out = run_with(pack(), elevators(), vec![(T0, frames)], T0 + 60 * s, vec![]);
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
        let out = run_with(pack(), elevators(), vec![(T0, frames)], T0 + 60 * s, vec![]);
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
            vec![],
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

/// Oracle: seeded random frames for a few elevators; the incremental condition set at every
/// time equals a naive recomputation on a time grid.
mod oracle {
    use super::*;

    const RULES: &str = r#"
[[rule]]
id = "stopped"
severity = "minor"
stream = "elevator_status"
mode = "state"
filter = "event.speed_mps < 0.05"
for = "50ms"
keep_firing_for = "30ms"
group_by = ["elevator_id"]

[[rule]]
id = "busy"
severity = "minor"
stream = "elevator_status"
filter = "event.speed_mps >= 0.05"
group_by = ["elevator_id"]
window = { sliding = "200ms" }
condition = "value >= 3"

[[rule]]
id = "moved"
severity = "minor"
stream = "elevator_status"
filter = "event.speed_mps >= 0.05"
group_by = ["elevator_id"]
keep_firing_for = "40ms"

[[rule]]
id = "silent"
severity = "minor"
stream = "elevator_status"
absent_for = "300ms"
"#;

    fn frame(id: &str, t: u64, moving: bool) -> (Envelope, u64) {
        let speed = if moving { 1.0 } else { 0.0 };
        (testkit::Frame::new(id, t).speed(speed).envelope(), t)
    }

    /// Firing on a 1 ms grid from a raw condition: fires once raw has held `for_ms`, stops
    /// `keep_ms` after raw last held.
    fn naive_firing(raw: &[bool], for_ms: usize, keep_ms: usize) -> Vec<bool> {
        let mut out = vec![false; raw.len()];
        let (mut true_since, mut false_since) = (None, None);
        for t in 0..raw.len() {
            if raw[t] {
                true_since.get_or_insert(t);
                false_since = None;
            } else {
                true_since = None;
                false_since.get_or_insert(t);
            }
            let starts = true_since.is_some_and(|a| t - a >= for_ms);
            let continues = t > 0 && out[t - 1] && false_since.is_none_or(|f| t - f < keep_ms);
            out[t] = starts || continues;
        }
        out
    }

    #[test]
    fn incremental_conditions_match_a_naive_recomputation() {
        let t0 = T0;
        let until = 3000u64;
        let ids = ["E0", "E1", "E2", "E3"];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..8 {
            // E3 never reports: only the absence rule sees it.
            let mut frames: Vec<(usize, u64, bool)> = (0..120)
                .map(|_| ((next() % 3) as usize, next() % 2500, next() % 3 != 0))
                .collect();
            // At most one frame per elevator and time: simultaneous frames have no order.
            frames.sort_by_key(|f| (f.0, f.1));
            frames.dedup_by_key(|f| (f.0, f.1));
            let mut keyed: Vec<(u64, (usize, u64, bool))> =
                frames.iter().map(|f| (next(), *f)).collect();
            keyed.sort_by_key(|k| k.0);
            let shuffled: Vec<(usize, u64, bool)> = keyed.into_iter().map(|k| k.1).collect();
            let events = shuffled
                .iter()
                .map(|&(e, t, m)| frame(ids[e], t0 + t, m))
                .collect();
            let registrations = ids.iter().map(|id| ("silent", id.to_string())).collect();
            let rules = Arc::new(rules::load_str("oracle.toml", RULES).unwrap());
            let out = run_with(
                rules,
                Arc::new(Reference::default()),
                vec![(t0, events)],
                t0 + until,
                registrations,
            );
            for (gi, id) in ids.iter().enumerate() {
                let mine: Vec<(u64, bool)> = frames
                    .iter()
                    .filter(|f| f.0 == gi)
                    .map(|f| (f.1, f.2))
                    .collect();
                let n = until as usize;
                // Raw conditions on the grid.
                let mut stopped = vec![false; n];
                let mut busy = vec![false; n];
                let mut moved = vec![false; n];
                let mut silent = vec![false; n];
                for t in 0..n as u64 {
                    let latest = mine.iter().rfind(|f| f.0 <= t);
                    stopped[t as usize] = latest.is_some_and(|f| !f.1);
                    busy[t as usize] = mine
                        .iter()
                        .filter(|f| f.1 && f.0 <= t && f.0 + 200 > t)
                        .count()
                        >= 3;
                    // An event rule holds from each match for keep_firing_for (40 ms).
                    moved[t as usize] = mine.iter().any(|f| f.1 && f.0 <= t && t < f.0 + 40);
                    let seen = mine
                        .iter()
                        .filter(|f| f.0 <= t)
                        .map(|f| f.0)
                        .max()
                        .unwrap_or(0);
                    silent[t as usize] = t >= seen + 300;
                }
                let expected = [
                    ("stopped", naive_firing(&stopped, 50, 30)),
                    ("busy", naive_firing(&busy, 0, 0)),
                    ("moved", moved),
                    ("silent", naive_firing(&silent, 0, 0)),
                ];
                for (rule, want) in expected {
                    for t in 0..n as u64 {
                        let active: isize = out
                            .iter()
                            .filter(|u| u.0.rule == rule && u.0.group == *id && u.1 <= t0 + t)
                            .map(|u| u.2)
                            .sum();
                        assert!(
                            active == 0 || active == 1,
                            "round {round} {rule} {id} at {t}: {active}"
                        );
                        assert_eq!(
                            active == 1,
                            want[t as usize],
                            "round {round}: {rule} for {id} at {t} ms; frames {mine:?}"
                        );
                    }
                }
            }
        }
    }
}

/// Changing rules at run time: a changed rule starts afresh at the change (its firing
/// condition stops there), an unchanged rule keeps its state.
#[test]
fn a_rule_change_at_run_time() {
    let before = Arc::new(rules::load_str("test.toml", RULES).unwrap());
    let changed = RULES.replace("condition = \"value >= 3\"", "condition = \"value >= 2\"").replace(
        "filter = 'event.kind == \"stranger\" && ref.kitchen.venue_type == \"school\"'\ngroup_by = [\"kitchen_id\"]\nkeep_firing_for = \"5m\"",
        "filter = 'event.kind == \"stranger\" && ref.kitchen.venue_type == \"school\"'\ngroup_by = [\"kitchen_id\"]\nkeep_firing_for = \"1m\"",
    );
    let after = Arc::new(rules::load_str("test.toml", &changed).unwrap());
    assert_ne!(before[0].source, after[0].source);
    assert_ne!(before[1].source, after[1].source);
    assert_eq!(before[2].source, after[2].source);
    let beat = |ts: u64| heartbeat("K1", "C1", ts);
    let out = timely::execute_directly(move |worker| {
        let reference = Arc::new(reference());
        let (mut inputs, probe, seen) = rule_dataflow(worker, reference.clone());
        inputs.rule_versions.send(RuleSetVersion::of(0, &before));
        inputs.advance_to(T0);
        rules_runtime_register(&mut inputs, &before, &reference);
        for e in [
            beat(T0),
            detection("K1", "no_mask", T0 + MIN),
            detection("K1", "no_hat", T0 + 2 * MIN),
            detection("K1", "stranger", T0 + 3 * MIN),
        ] {
            inputs.events.send(e);
        }
        inputs.advance_to(T0 + 5 * MIN);
        inputs.set_rules(T0 + 5 * MIN, &after, &before, &reference);
        for e in [
            detection("K1", "no_hat", T0 + 6 * MIN),
            detection("K1", "no_mask", T0 + 7 * MIN),
        ] {
            inputs.events.send(e);
        }
        let until = T0 + 9 * MIN;
        finish(worker, &mut inputs, &probe, &seen, until)
    });
    let mut expected = vec![
        // Under the old threshold (3) two violations were not enough; the new rule starts with
        // an empty window at 5 min and fires at its second violation.
        (cond("hygiene", "K1", 2.0, T0 + 7 * MIN), T0 + 7 * MIN, 1),
        // The stranger alert of the old rule stops at the change.
        (cond("stranger", "K1", 1.0, T0 + 3 * MIN), T0 + 3 * MIN, 1),
        (cond("stranger", "K1", 1.0, T0 + 3 * MIN), T0 + 5 * MIN, -1),
        // The unchanged absence rule keeps its state: C1 beat at T0, offline 3 min later; C2
        // (never seen) too, from its registration at T0, not from the change.
        (
            cond("camera_offline", "K1/C1", 180.0, T0 + 3 * MIN),
            T0 + 3 * MIN,
            1,
        ),
        (
            cond("camera_offline", "K1/C2", 180.0, T0 + 3 * MIN),
            T0 + 3 * MIN,
            1,
        ),
    ];
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}

fn rules_runtime_register(
    inputs: &mut dataflow::build::Inputs,
    rules: &[rules::Rule],
    reference: &Reference,
) {
    let t = *inputs.rule_versions.time();
    dataflow::runtime::register_devices(inputs, rules, reference, t);
}

#[test]
fn a_reference_change_at_run_time() {
    let rules = Arc::new(rules::load_str("test.toml", RULES).unwrap());
    let before = Arc::new(reference());
    // K2 becomes a school canteen; camera K1/C2 is taken out, K2/C1 comes in.
    let mut changed = reference();
    changed.kitchens[1].venue_type = "school".into();
    changed.cameras[1] = Camera {
        kitchen_id: "K2".into(),
        camera_id: "C1".into(),
    };
    let after = Arc::new(changed);
    let beat = |ts: u64| heartbeat("K1", "C1", ts);
    let out = timely::execute_directly(move |worker| {
        let (mut inputs, probe, seen) = rule_dataflow(worker, before.clone());
        inputs.rule_versions.send(RuleSetVersion::of(0, &rules));
        inputs.advance_to(T0);
        rules_runtime_register(&mut inputs, &rules, &before);
        for e in [beat(T0), detection("K2", "stranger", T0 + MIN / 2)] {
            inputs.events.send(e);
        }
        inputs.advance_to(T0 + 4 * MIN);
        inputs.set_reference(T0 + 4 * MIN, &rules, &before, after.clone());
        inputs
            .events
            .send(detection("K2", "stranger", T0 + 5 * MIN));
        let until = T0 + 12 * MIN;
        finish(worker, &mut inputs, &probe, &seen, until)
    });
    let mut expected = vec![
        // Unchanged device: its silence counts on across the change.
        (
            cond("camera_offline", "K1/C1", 180.0, T0 + 3 * MIN),
            T0 + 3 * MIN,
            1,
        ),
        // Taken out of the registry while offline: the condition stops at the change.
        (
            cond("camera_offline", "K1/C2", 180.0, T0 + 3 * MIN),
            T0 + 3 * MIN,
            1,
        ),
        (
            cond("camera_offline", "K1/C2", 180.0, T0 + 3 * MIN),
            T0 + 4 * MIN,
            -1,
        ),
        // Registered by the change, never heard: absent 3 minutes after it.
        (
            cond("camera_offline", "K2/C1", 180.0, T0 + 7 * MIN),
            T0 + 7 * MIN,
            1,
        ),
        // A stranger in K2 counts only once K2 is a school canteen.
        (cond("stranger", "K2", 1.0, T0 + 5 * MIN), T0 + 5 * MIN, 1),
        (cond("stranger", "K2", 1.0, T0 + 5 * MIN), T0 + 10 * MIN, -1),
    ];
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}

/// Complaints fed again from the complaint log at start: their deadline clocks are restored
/// (one that ran out meanwhile fires at once, one decided meanwhile stays quiet), and other
/// rules do not count them again.
#[test]
fn complaints_fed_again_at_start_restore_deadlines_only() {
    const DEADLINES: &str = r#"
[[rule]]
id = "overdue"
severity = "major"
stream = "complaint_new"
group_by = ["complaint_id"]
deadline = { working_days = 1, done_stream = "complaint_status", done = 'event.status == "accepted"' }

[[rule]]
id = "burst"
severity = "major"
stream = "complaint_new"
group_by = ["merchant_id"]
window = { sliding = "30d" }
aggregate = "count"
condition = "value >= 2"
"#;
    let rules = Arc::new(rules::load_str("test.toml", DEADLINES).unwrap());
    let complaint = |id: &str, ts: u64, replayed: bool| {
        let mut e = env(
            "cw/v1/complaint/new",
            format!(
                r#"{{"ts":{ts},"complaint_id":"{id}","merchant_id":"M1","merchant_name":"某商户","category":"price"}}"#
            ),
            ts,
        );
        e.replayed = replayed;
        (e, T0)
    };
    let accepted = |id: &str, ts: u64| {
        let mut e = env(
            &format!("cw/v1/complaint/{id}/status"),
            format!(r#"{{"ts":{ts},"status":"accepted"}}"#),
            ts,
        );
        e.replayed = true;
        (e, T0)
    };
    let day = 24 * 60 * MIN;
    let out = run_with(
        rules,
        Arc::new(Reference::default()),
        vec![(
            T0,
            vec![
                // Made ten days ago, never decided: overdue now.
                complaint("C1", T0 - 10 * day, true),
                // Made ten days ago, accepted the day after.
                complaint("C2", T0 - 10 * day, true),
                accepted("C2", T0 - 9 * day),
                // Made now: its clock runs a working day from now.
                complaint("C3", T0, false),
            ],
        )],
        T0 + 10 * MIN,
        vec![],
    );
    // Only C1's clock ran out (at the restart, not ten days ago), and the burst rule counted
    // the one live complaint only.
    assert_eq!(out, vec![(cond("overdue", "C1", 1.0, T0), T0, 1)]);
}
