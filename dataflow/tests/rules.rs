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
    Decoder::default().decode(topic, payload.as_bytes(), ts).unwrap()
}

fn detection(kitchen: &str, kind: &str, ts: u64) -> (Envelope, u64) {
    let e = env(&format!("cw/v1/kitchen/{kitchen}/camera/C1/detection"), format!(r#"{{"ts":{ts},"kind":"{kind}","confidence":0.9}}"#), ts);
    (e, ts)
}

fn reference() -> Reference {
    Reference {
        kitchens: vec![
            Kitchen { kitchen_id: "K1".into(), venue: "小学".into(), venue_type: "school".into(), district: "d".into() },
            Kitchen { kitchen_id: "K2".into(), venue: "饭店".into(), venue_type: "restaurant".into(), district: "d".into() },
        ],
        cameras: vec![Camera { kitchen_id: "K1".into(), camera_id: "C1".into() }, Camera { kitchen_id: "K1".into(), camera_id: "C2".into() }],
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

/// Runs the rules over rounds of (epoch, events) and returns the condition updates emitted
/// with times before `until`.
fn run(rounds: Vec<(u64, Vec<(Envelope, u64)>)>, until: u64) -> Vec<Update> {
    timely::execute_directly(move |worker| {
        let rules = Arc::new(rules::load_str("test.toml", RULES).unwrap());
        let reference = Arc::new(reference());
        let plan = Plan { timeouts: Timeouts::default(), series: false, rules: rules.clone(), reference: reference.clone(), stats: Default::default() };
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let Built { inputs, conditions, .. } = build(scope, &plan);
            let (probe, _) = conditions.unwrap().inner.inspect(move |u: &Update| sink.borrow_mut().push(u.clone())).probe();
            (inputs, probe)
        });
        for (epoch, events) in rounds {
            inputs.advance_to(epoch);
            if epoch == T0 {
                // Both registered cameras, for the absence rule (rule 2), at start-up.
                for key in ["K1/C1", "K1/C2"] {
                    inputs.registrations.send(Observation { rule: 2, group: key.into(), time: T0, what: What::Registered });
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
        let mut all: Vec<Update> = seen.borrow().iter().filter(|u| u.1 < until).cloned().collect();
        consolidate_updates(&mut all);
        all
    })
}

fn cond(rule: &str, group: &str, value: f64) -> Condition {
    Condition { rule: rule.into(), group: group.into(), value_milli: (value * 1000.0) as i64 }
}

#[test]
fn window_reference_and_absence_rules() {
    let beat = |cam: &str, ts: u64| {
        (env(&format!("cw/v1/kitchen/K1/camera/{cam}/heartbeat"), format!(r#"{{"ts":{ts},"online":true}}"#), ts), ts)
    };
    let out = run(
        vec![
            (T0, vec![beat("C1", T0), detection("K1", "no_mask", T0 + MIN), detection("K2", "stranger", T0 + MIN)]),
            // Out of order within the round: the rules see them in event-time order.
            (
                T0 + 2 * MIN,
                vec![detection("K1", "no_hat", T0 + 4 * MIN), detection("K1", "no_mask", T0 + 3 * MIN), detection("K1", "stranger", T0 + 5 * MIN)],
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
