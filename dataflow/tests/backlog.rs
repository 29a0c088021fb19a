//! Every device on its own clock: exact `(condition, time, diff)` output for events that
//! arrive later than the lateness (docs/rules.md, "Every device on its own clock").
//!
//! Each event is sent at the frontier time it arrives at (the second member of the pair):
//! equal to its own time when on time, later for a backlog.

mod common;

use common::{Update, finish, rule_dataflow, rule_dataflow_with};
use dataflow::Condition;
use dataflow::build::Timeouts;
use dataflow::operators::ReorderLimits;
use dataflow::operators::conditions::{Observation, RuleSetVersion, What};
use dataflow::reference::{Elevator, Reference};
use model::{Decoder, Envelope};
use std::sync::Arc;

const T0: u64 = 1_795_737_600_000;
const S: u64 = 1000;
const MIN: u64 = 60 * S;

const RULES: &str = r#"
[[rule]]
id = "trapped"
severity = "critical"
stream = "elevator_status"
mode = "state"
filter = '''event.speed_mps < 0.05 && event.door == "closed" && has(event.occupied)
  && event.occupied && !event.in_door_zone'''
clear_condition = '(event.speed_mps < 0.05 && event.in_door_zone && event.door == "open")'
for = "30s"
group_by = ["elevator_id"]

[[rule]]
id = "stops"
severity = "minor"
stream = "elevator_status"
filter = 'event.speed_mps < 0.05 && event.door == "closed" && !event.in_door_zone'
group_by = ["elevator_id"]
window = { sliding = "1m" }
aggregate = "count"
condition = "value >= 20"

[[rule]]
id = "halted"
severity = "minor"
stream = "elevator_status"
filter = 'prev.speed_mps > 0.5 && event.speed_mps < 0.05'
group_by = ["elevator_id"]
keep_firing_for = "5s"

[[rule]]
id = "offline"
severity = "major"
stream = "elevator_status"
absent_for = "180s"

[[rule]]
id = "group_risk"
severity = "major"
stream = "complaint_new"
filter = 'has(event.merchant_id)'
group_by = ["merchant_id"]
window = { sliding = "1h" }
aggregate = "distinct(complaint_id)"
condition = "value >= 3"
"#;

/// A car's state in a frame.
#[derive(Clone, Copy)]
enum Car {
    Moving,
    /// Stopped between floors, doors closed, someone inside.
    Stuck,
    /// At a landing, doors open.
    Open,
}

fn frame(elevator: &str, car: Car, ts: u64) -> Envelope {
    let (speed, zone, door) = match car {
        Car::Moving => (1.0, false, "closed"),
        Car::Stuck => (0.0, false, "closed"),
        Car::Open => (0.0, true, "open"),
    };
    testkit::Frame::new(elevator, ts)
        .floor(3)
        .in_door_zone(zone)
        .speed(speed)
        .door(door)
        .occupied(true)
        .with("vibration_mps2", 0.1)
        .with("safety_circuit_ok", true)
        .envelope()
}

fn complaint(id: &str, ts: u64) -> Envelope {
    let payload = format!(
        r#"{{"ts":{ts},"complaint_id":"{id}","merchant_id":"M1","merchant_name":"某商户","category":"price"}}"#
    );
    Decoder::default()
        .decode("cw/v1/complaint/new", payload.as_bytes(), ts)
        .unwrap()
}

/// Frames of `car` every second from `from` to `to` (inclusive), each arriving at `arrives`
/// (none: on time).
fn frames(car: Car, from: u64, to: u64, arrives: Option<u64>) -> Vec<(Envelope, u64)> {
    (from..=to)
        .step_by(S as usize)
        .map(|ts| (frame("E1", car, ts), arrives.unwrap_or(ts)))
        .collect()
}

/// Frames of E1 in stretches of (car, from s, to s, arriving at s; none: on time), from T0.
fn story(stretches: &[(Car, u64, u64, Option<u64>)]) -> Vec<(Envelope, u64)> {
    stretches
        .iter()
        .flat_map(|(car, from, to, arrives)| {
            frames(
                *car,
                T0 + from * S,
                T0 + to * S,
                arrives.map(|a| T0 + a * S),
            )
        })
        .collect()
}

fn reference() -> Reference {
    let elevator = |id: &str| Elevator {
        elevator_id: id.into(),
        building: "b".into(),
        district: "d".into(),
        lat: 29.5,
        lon: 106.5,
        maintenance_unit: "MU1".into(),
        rated_speed_mps: 1.75,
        floors: 10,
    };
    Reference {
        elevators: vec![elevator("E1"), elevator("E2")],
        ..Reference::default()
    }
}

/// Runs the rules over events sent in arrival order (each at its arrival time), with E1 and
/// E2 registered for `offline` at `T0`; the updates before `until`.
fn run(events: Vec<(Envelope, u64)>, until: u64) -> Vec<Update> {
    run_with(events, until, Timeouts::default())
}

/// The same, with reordering bounded by `timeouts`.
fn run_with(mut events: Vec<(Envelope, u64)>, until: u64, timeouts: Timeouts) -> Vec<Update> {
    events.sort_by_key(|(_, t)| *t);
    timely::execute_directly(move |worker| {
        let (mut inputs, probe, seen) = rule_dataflow_with(worker, Arc::new(reference()), timeouts);
        let rules = rules::load_str("test.toml", RULES).unwrap();
        inputs.rule_versions.send(RuleSetVersion::of(0, &rules));
        inputs.advance_to(T0);
        for e in ["E1", "E2"] {
            inputs.registrations.send(Observation {
                rule: rules::rule_key("offline"),
                group: e.into(),
                time: T0,
                what: What::Registered,
            });
        }
        for (env, t) in events {
            // The frontier follows arrivals, as the live clock does.
            inputs.advance_to(t);
            inputs.events.send((env, t));
        }
        finish(worker, &mut inputs, &probe, &seen, until)
    })
}

fn cond(rule: &str, group: &str, value: f64, since: u64, late_by_ms: u64) -> Condition {
    Condition {
        rule: rule.into(),
        group: group.into(),
        value_milli: (value * 1000.0) as i64,
        since,
        late_by_ms,
    }
}

/// Only the updates of `rule`.
fn of(rule: &str, out: Vec<Update>) -> Vec<Update> {
    out.into_iter().filter(|(c, _, _)| c.rule == rule).collect()
}

/// Moving to 10 s, stuck from 10 s to 50 s, at a landing with doors open at 70 s.
fn trapped_story(backlog_arrives: Option<u64>) -> Vec<(Envelope, u64)> {
    let mut events = frames(Car::Moving, T0, T0 + 5 * S, None);
    events.extend(frames(Car::Moving, T0 + 6 * S, T0 + 9 * S, backlog_arrives));
    events.extend(frames(
        Car::Stuck,
        T0 + 10 * S,
        T0 + 50 * S,
        backlog_arrives,
    ));
    events.extend(frames(Car::Open, T0 + 70 * S, T0 + 71 * S, None));
    events
}

#[test]
fn a_trapped_passenger_delivered_as_a_45_s_backlog_fires_with_its_true_since() {
    // The link drops after 5 s; 6 s to 50 s arrive at 60 s.
    let out = of(
        "trapped",
        run(trapped_story(Some(T0 + 60 * S)), T0 + 2 * MIN),
    );
    let c = cond("trapped", "E1", 1.0, T0 + 40 * S, 20 * S);
    assert_eq!(out, vec![(c.clone(), T0 + 60 * S, 1), (c, T0 + 70 * S, -1)]);
}

#[test]
fn the_same_frames_on_time_fire_on_time() {
    let out = of("trapped", run(trapped_story(None), T0 + 2 * MIN));
    let c = cond("trapped", "E1", 1.0, T0 + 40 * S, 0);
    assert_eq!(out, vec![(c.clone(), T0 + 40 * S, 1), (c, T0 + 70 * S, -1)]);
}

#[test]
fn out_of_order_within_the_lateness_and_duplicates_change_nothing() {
    let mut events = trapped_story(None);
    // Each frame arrives again, and every pair of neighbours swapped, all within a second
    // of its time: the frontier (held back by the lateness, here by the test) has not
    // passed them.
    let again: Vec<_> = events.iter().map(|(e, t)| (e.clone(), *t)).collect();
    events.extend(again);
    events.sort_by_key(|(e, _)| e.time_ms);
    for pair in events.chunks_mut(4) {
        pair.reverse();
    }
    let rounds: Vec<(u64, Vec<(Envelope, u64)>)> = events
        .chunks(8)
        .map(|c| (c.iter().map(|(_, t)| *t).min().unwrap(), c.to_vec()))
        .collect();
    let out = timely::execute_directly(move |worker| {
        let (mut inputs, probe, seen) = rule_dataflow(worker, Arc::new(reference()));
        let rules = rules::load_str("test.toml", RULES).unwrap();
        inputs.rule_versions.send(RuleSetVersion::of(0, &rules));
        for (epoch, events) in rounds {
            inputs.advance_to(epoch);
            for e in events {
                inputs.events.send(e);
            }
        }
        finish(worker, &mut inputs, &probe, &seen, T0 + 2 * MIN)
    });
    let c = cond("trapped", "E1", 1.0, T0 + 40 * S, 0);
    assert_eq!(
        of("trapped", out),
        vec![(c.clone(), T0 + 40 * S, 1), (c, T0 + 70 * S, -1)]
    );
}

#[test]
fn a_trapped_alert_raised_in_a_gap_stops_when_the_backlog_shows_the_car_was_freed() {
    // Stuck from 10 s when the link drops: the `for` runs out at 40 s on the wall clock's
    // time. The backlog (at 60 s) shows the car reached a landing at 30 s.
    let events = story(&[
        (Car::Moving, 0, 9, None),
        (Car::Stuck, 10, 10, None),
        (Car::Stuck, 11, 24, Some(60)),
        (Car::Moving, 25, 29, Some(60)),
        (Car::Open, 30, 30, Some(60)),
    ]);
    let out = of("trapped", run(events, T0 + 3 * MIN));
    let c = cond("trapped", "E1", 1.0, T0 + 40 * S, 0);
    assert_eq!(out, vec![(c.clone(), T0 + 40 * S, 1), (c, T0 + 60 * S, -1)]);
}

#[test]
fn a_backlog_that_confirms_an_alert_raised_in_the_gap_does_not_end_it() {
    // Stuck from 10 s; the link drops; `trapped` fires at 40 s. The backlog, in two parts at
    // 60 s and 61 s, shows the car stuck all along: the alert stays as it was.
    let events = story(&[
        (Car::Moving, 0, 9, None),
        (Car::Stuck, 10, 10, None),
        (Car::Stuck, 11, 30, Some(60)),
        (Car::Stuck, 31, 59, Some(61)),
        (Car::Open, 90, 90, None),
    ]);
    let out = of("trapped", run(events, T0 + 3 * MIN));
    let c = cond("trapped", "E1", 1.0, T0 + 40 * S, 0);
    assert_eq!(out, vec![(c.clone(), T0 + 40 * S, 1), (c, T0 + 90 * S, -1)]);
}

#[test]
fn an_offline_device_whose_backlog_shows_it_alive_is_online_when_the_backlog_arrives() {
    // Heard until 5 s, then nothing on the wall clock until a backlog of 6 s to 250 s
    // arrives at 300 s. Offline is about hearing the device: raised at 185 s, it ends when
    // the backlog is heard. E2 never reported: offline 180 s after registration.
    let mut events = frames(Car::Open, T0, T0 + 5 * S, None);
    events.extend(
        (T0 + 6 * S..=T0 + 250 * S)
            .step_by(5 * S as usize)
            .map(|ts| (frame("E1", Car::Open, ts), T0 + 300 * S)),
    );
    let out = of("offline", run(events, T0 + 6 * MIN));
    let e1 = cond("offline", "E1", 180.0, T0 + 185 * S, 0);
    let e2 = cond("offline", "E2", 180.0, T0 + 180 * S, 0);
    let mut expected = vec![
        (e2, T0 + 180 * S, 1),
        (e1.clone(), T0 + 185 * S, 1),
        (e1, T0 + 300 * S, -1),
    ];
    expected.sort();
    let mut out = out;
    out.sort();
    assert_eq!(out, expected);
}

#[test]
fn a_device_whose_clock_runs_5_min_behind_is_judged_on_its_own_time() {
    // E2's frames arrive 5 min after their time; E1 is on time. E2 stops for 10 s (no
    // alert), reaches a landing, then is stuck for 40 s: `trapped` fires 30 s into it on E2's time,
    // which the control room learns 5 min later. E1 is stuck for 40 s at the same time.
    let lag = 5 * MIN;
    let e2 = |car: Car, from: u64, to: u64| -> Vec<(Envelope, u64)> {
        (from..=to)
            .step_by(S as usize)
            .map(|ts| (frame("E2", car, ts), ts + lag))
            .collect()
    };
    let mut events = e2(Car::Moving, T0, T0 + 9 * S);
    events.extend(e2(Car::Stuck, T0 + 10 * S, T0 + 20 * S));
    events.extend(e2(Car::Open, T0 + 21 * S, T0 + 29 * S));
    events.extend(e2(Car::Stuck, T0 + 30 * S, T0 + 70 * S));
    events.extend(e2(Car::Open, T0 + 80 * S, T0 + 80 * S));
    events.extend(frames(Car::Moving, T0 + lag, T0 + lag + 9 * S, None));
    events.extend(frames(
        Car::Stuck,
        T0 + lag + 10 * S,
        T0 + lag + 50 * S,
        None,
    ));
    let out = of("trapped", run(events, T0 + lag + 2 * MIN));
    let late = cond("trapped", "E2", 1.0, T0 + 60 * S, lag);
    let on_time = cond("trapped", "E1", 1.0, T0 + lag + 40 * S, 0);
    let mut expected = vec![
        (late.clone(), T0 + lag + 60 * S, 1),
        (on_time, T0 + lag + 40 * S, 1),
        (late, T0 + lag + 80 * S, -1),
    ];
    expected.sort();
    let mut out = out;
    out.sort();
    assert_eq!(out, expected);
}

#[test]
fn complaints_delivered_an_hour_late_are_counted_at_their_own_times() {
    // Complaints about M1 made at 0, 20, 50, 90 and 100 min, all delivered at 120 min.
    // Three within an hour at 50 min (until the first leaves the window at 60 min), and
    // again at 100 min (until 50 min leaves at 110 min): two episodes, the first begun and
    // ended inside the backlog (told as a start and a stop a millisecond apart), the second
    // ending when M1's clock reaches 110 min (one silent minute after the delivery, its
    // clock is the frontier's).
    let arrives = T0 + 120 * MIN;
    let events = [0, 20, 50, 90, 100]
        .iter()
        .enumerate()
        .map(|(i, m)| (complaint(&format!("C{i}"), T0 + m * MIN), arrives))
        .collect();
    let out = of("group_risk", run(events, T0 + 3 * 60 * MIN));
    let first = cond("group_risk", "M1", 3.0, T0 + 50 * MIN, 70 * MIN);
    let second = cond("group_risk", "M1", 3.0, T0 + 100 * MIN, 20 * MIN);
    let mut expected = vec![
        (first.clone(), arrives, 1),
        (first, arrives + 1, -1),
        (second.clone(), arrives, 1),
        (second, arrives + MIN, -1),
    ];
    expected.sort();
    let mut out = out;
    out.sort();
    assert_eq!(out, expected);
}

#[test]
fn an_event_beyond_max_backlog_is_judged_at_the_frontier_as_before() {
    // The whole stuck period arrives 20 min late (max_backlog is 15 min): the 40 s collapse
    // into one instant and no `for` runs out.
    let arrives = T0 + 20 * MIN;
    let mut events = frames(Car::Moving, T0, T0 + 9 * S, Some(arrives));
    events.extend(frames(Car::Stuck, T0 + 10 * S, T0 + 50 * S, Some(arrives)));
    let out = of("trapped", run(events, arrives + 20 * S));
    assert_eq!(out, vec![]);
}

#[test]
fn live_frames_sent_before_the_backlog_are_judged_after_it() {
    // The link is down from 6 s to 54 s; when it is back the terminal sends live frames
    // (the car still stuck) and its backlog 3 s later. Judged in arrival order the stuck
    // period would start at 55 s and the doors opening at 70 s would end it unseen.
    let events = story(&[
        (Car::Moving, 0, 5, None),
        (Car::Moving, 6, 9, Some(58)),
        (Car::Stuck, 10, 54, Some(58)),
        (Car::Stuck, 55, 65, None),
        (Car::Open, 70, 71, None),
    ]);
    let out = of("trapped", run(events.clone(), T0 + 2 * MIN));
    let c = cond("trapped", "E1", 1.0, T0 + 40 * S, 18 * S);
    assert_eq!(out, vec![(c.clone(), T0 + 58 * S, 1), (c, T0 + 70 * S, -1)]);
    // Without keeping the gap, the backlog is judged at the latest frame's time.
    let off = Timeouts {
        reorder: ReorderLimits {
            keep_ms: 0,
            ..ReorderLimits::default()
        },
        ..Timeouts::default()
    };
    assert_eq!(of("trapped", run_with(events, T0 + 2 * MIN, off)), vec![]);
}

/// Reordering kept for a minute after a gap (the default is 30 s): the backlogs below arrive
/// after a `for` of 30 s has run out on the live frames.
fn keep_a_minute() -> Timeouts {
    Timeouts {
        reorder: ReorderLimits {
            keep_ms: MIN,
            ..ReorderLimits::default()
        },
        ..Timeouts::default()
    }
}

#[test]
fn an_alert_the_live_frames_raised_stands_when_the_backlog_confirms_it() {
    // Live frames from 55 s show the car stuck: `trapped` since 85 s. The backlog (at 90 s)
    // shows a landing at 50–54 s, so the stuck period did start at 55 s; before it, an
    // episode at 40–50 s nobody knew of, told as a start and a stop a millisecond apart.
    let events = story(&[
        (Car::Moving, 0, 5, None),
        (Car::Stuck, 6, 49, Some(90)),
        (Car::Open, 50, 54, Some(90)),
        (Car::Stuck, 55, 100, None),
        (Car::Open, 110, 110, None),
    ]);
    let out = of("trapped", run_with(events, T0 + 3 * MIN, keep_a_minute()));
    let live = cond("trapped", "E1", 1.0, T0 + 85 * S, 0);
    let found = cond("trapped", "E1", 1.0, T0 + 36 * S, 54 * S);
    let mut expected = vec![
        (live.clone(), T0 + 85 * S, 1),
        (found.clone(), T0 + 90 * S, 1),
        (found, T0 + 90 * S + 1, -1),
        (live, T0 + 110 * S, -1),
    ];
    expected.sort();
    let mut out = out;
    out.sort();
    assert_eq!(out, expected);
}

#[test]
fn an_alert_the_live_frames_raised_is_replaced_when_the_backlog_shows_it_began_earlier() {
    // Live frames from 55 s: `trapped` since 85 s. The backlog shows the car stuck since
    // 10 s: the passenger was trapped since 40 s. The record since 85 s ends when the
    // backlog arrives and the one since 40 s begins then.
    let events = story(&[
        (Car::Moving, 0, 9, None),
        (Car::Stuck, 10, 54, Some(90)),
        (Car::Stuck, 55, 100, None),
        (Car::Open, 110, 110, None),
    ]);
    let out = of("trapped", run_with(events, T0 + 3 * MIN, keep_a_minute()));
    let live = cond("trapped", "E1", 1.0, T0 + 85 * S, 0);
    let true_one = cond("trapped", "E1", 1.0, T0 + 40 * S, 50 * S);
    let mut expected = vec![
        (live.clone(), T0 + 85 * S, 1),
        (live, T0 + 90 * S, -1),
        (true_one.clone(), T0 + 90 * S, 1),
        (true_one, T0 + 110 * S, -1),
    ];
    expected.sort();
    let mut out = out;
    out.sort();
    assert_eq!(out, expected);
}

#[test]
fn an_alert_the_live_frames_raised_and_ended_is_not_told_again() {
    // Live frames from 55 s: stuck, `trapped` from 85 s to the doors opening at 91 s. The
    // backlog (at 95 s) shows the car moving before the gap: nothing changes.
    let events = story(&[
        (Car::Moving, 0, 5, None),
        (Car::Moving, 6, 54, Some(95)),
        (Car::Stuck, 55, 90, None),
        (Car::Open, 91, 100, None),
    ]);
    let out = of("trapped", run_with(events, T0 + 3 * MIN, keep_a_minute()));
    let live = cond("trapped", "E1", 1.0, T0 + 85 * S, 0);
    assert_eq!(
        out,
        vec![(live.clone(), T0 + 85 * S, 1), (live, T0 + 91 * S, -1)]
    );
}

/// A small deterministic generator (xorshift64*), so the oracle test needs no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Frames every second for 10 min of `elevators` cars, each in runs of 1 to 60 s of moving,
/// stuck or at a landing.
fn random_city(rng: &mut Rng, elevators: usize) -> Vec<(String, Vec<(Car, u64)>)> {
    (0..elevators)
        .map(|i| {
            let mut frames = Vec::new();
            let mut ts = T0;
            while ts < T0 + 10 * MIN {
                let car = [Car::Moving, Car::Stuck, Car::Open][rng.below(3) as usize];
                for _ in 0..1 + rng.below(60) {
                    frames.push((car, ts));
                    ts += S;
                }
            }
            (format!("E{i:02}"), frames)
        })
        .collect()
}

#[test]
fn per_device_delays_up_to_max_backlog_judge_as_a_replay_sorted_per_device() {
    let end = T0 + 10 * MIN;
    for seed in [1u64, 2, 3] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let city = random_city(&mut rng, 12);
        // Every other car's link delivers its frames late by up to 14 min, in order.
        let delays: Vec<u64> = (0..city.len())
            .map(|i| {
                if i % 2 == 0 {
                    0
                } else {
                    S + rng.below(14 * MIN)
                }
            })
            .collect();
        let sent = |delayed: bool| -> Vec<(Envelope, u64)> {
            city.iter()
                .zip(&delays)
                .flat_map(|((id, frames), d)| {
                    let d = if delayed { *d } else { 0 };
                    frames
                        .iter()
                        .map(move |(car, ts)| (frame(id, *car, *ts), ts + d))
                })
                .collect()
        };
        let rules_of_groups = |u: &Update| u.0.rule != "offline";
        let on_time: Vec<Update> = run(sent(false), end + 30 * MIN)
            .into_iter()
            .filter(rules_of_groups)
            .filter(|u| u.1 < end)
            .collect();
        // Back on each car's own time: every update of a delayed car is late by its delay.
        let delay_of = |group: &str| delays[group[1..].parse::<usize>().unwrap()];
        let mut delayed: Vec<Update> = run(sent(true), end + 45 * MIN)
            .into_iter()
            .filter(rules_of_groups)
            .map(|(mut c, t, d)| {
                let delay = delay_of(&c.group);
                assert_eq!(c.late_by_ms, delay, "{c:?} at {t}");
                c.late_by_ms = 0;
                (c, t - delay, d)
            })
            .filter(|u| u.1 < end)
            .collect();
        delayed.sort();
        let mut expected = on_time;
        expected.sort();
        assert!(
            expected.len() > 50,
            "seed {seed}: {} updates",
            expected.len()
        );
        assert_eq!(delayed, expected, "seed {seed}");
    }
}

/// Each update's episode (its record but for how late it was known) and diff.
fn episodes(out: &[Update]) -> std::collections::BTreeMap<(String, String, u64, i64), isize> {
    let mut net = std::collections::BTreeMap::new();
    for (c, _, d) in out.iter().filter(|u| u.0.rule != "offline") {
        let key = (c.rule.clone(), c.group.clone(), c.since, c.value_milli);
        *net.entry(key).or_insert(0) += d;
    }
    net
}

#[test]
fn frames_each_delayed_at_random_are_judged_in_each_cars_own_order() {
    // Every other car's frames each arrive 0–20 s late, independently: its own events come
    // out of order. With every event kept for reordering (gap 0, 64 events: a window of at
    // least 32 s), each episode of the on-time run is found with its true start; an episode
    // an incomplete order suggested is ended when the missing frames arrive; what is active
    // at the end is the same.
    let end = T0 + 10 * MIN;
    let reorder_all = Timeouts {
        reorder: ReorderLimits {
            gap_ms: 0,
            keep_ms: 20 * MIN,
            events: 64,
        },
        ..Timeouts::default()
    };
    let off = Timeouts {
        reorder: ReorderLimits {
            keep_ms: 0,
            ..ReorderLimits::default()
        },
        ..Timeouts::default()
    };
    for seed in [4u64, 5, 6] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let city = random_city(&mut rng, 12);
        let mut on_time = Vec::new();
        let mut shuffled = Vec::new();
        for (i, (id, frames)) in city.iter().enumerate() {
            for (car, ts) in frames {
                let late = if i % 2 == 1 { rng.below(20 * S) } else { 0 };
                on_time.push((frame(id, *car, *ts), *ts));
                shuffled.push((frame(id, *car, *ts), ts + late));
            }
        }
        let truth = episodes(&run(on_time, end + 5 * MIN));
        assert!(truth.len() > 30, "seed {seed}: {} episodes", truth.len());
        let judged = episodes(&run_with(shuffled.clone(), end + 5 * MIN, reorder_all));
        let missing: Vec<_> = truth.keys().filter(|e| !judged.contains_key(*e)).collect();
        assert_eq!(
            missing,
            Vec::<&(String, String, u64, i64)>::new(),
            "seed {seed}"
        );
        for (e, net) in &judged {
            assert_eq!(
                *net,
                truth.get(e).copied().unwrap_or(0),
                "seed {seed}: {e:?}"
            );
        }
        // The same input judged in arrival order misses true episodes.
        let unordered = episodes(&run_with(shuffled, end + 5 * MIN, off));
        assert!(
            truth.keys().any(|e| !unordered.contains_key(e)),
            "seed {seed}: arrival order found every episode"
        );
    }
}
