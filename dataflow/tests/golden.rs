//! The rule path against recorded updates: simulated cities (several seeds, every domain,
//! injected incidents), fed with out-of-order and late messages, with the rules and the
//! reference data changed mid-stream, give exactly the `(condition, time, diff)` recorded in
//! `tests/golden/`. They were recorded from the interpreter path (every expression judged by
//! cel-interpreter), once the compiled path gave the same, before that path was removed.
//! A change meant to change what the rules fire records them again
//! (`CITYWATCH_BLESS_GOLDEN=1 cargo test -p dataflow --test golden`), the reason in its commit.

mod common;

use common::{Update, finish, rule_dataflow};
use dataflow::feed::{ClockMode, Frontier};
use dataflow::operators::conditions::RuleSetVersion;
use dataflow::reference::Reference;
use model::{Decoder, Envelope};
use simulators::city::Size;
use std::collections::BTreeSet;
use std::sync::Arc;

const T0: u64 = 1_795_737_600_000;
const SECONDS: u64 = 300;
const LATENESS: u64 = 2000;

struct Scenario {
    reference: Arc<Reference>,
    changed_reference: Arc<Reference>,
    rules: Arc<Vec<rules::Rule>>,
    changed_rules: Arc<Vec<rules::Rule>>,
    /// Per second of wall time, the messages that arrive in it (some out of order, some late).
    arrivals: Vec<Vec<Envelope>>,
}

fn scenario(seed: u64) -> Scenario {
    let size = Size {
        elevators: 120,
        kitchens: 12,
        cameras_per_kitchen: 2,
        markets: 3,
        scales_per_market: 6,
        merchants: 20,
    };
    let (city, reference) = common::city(size, seed);
    // Mid-stream, every third elevator is found to be rated slower than on file.
    let mut changed = reference.clone();
    for e in changed.elevators.iter_mut().step_by(3) {
        e.rated_speed_mps *= 0.8;
    }
    let pack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/default");
    let rules = rules::load_dir(&pack).unwrap();
    // Mid-stream too, a threshold changes and one rule is switched off.
    let text = std::fs::read_to_string(pack.join("kitchens.toml")).unwrap();
    let mut changed_rules: Vec<rules::Rule> = rules
        .iter()
        .filter(|r| !r.origin.contains("kitchens"))
        .cloned()
        .collect();
    changed_rules
        .extend(rules::load_str("kitchens.toml", &text.replace(">= 0.6", ">= 0.8")).unwrap());
    if let Some(r) = changed_rules
        .iter_mut()
        .find(|r| r.id == "elevator.high_vibration")
    {
        r.enabled = false;
    }
    let mut sim = simulators::Simulator::new(city.district, seed, T0).with_incident_every(2);
    let decoder = Decoder::default();
    let mut arrivals = vec![Vec::new(); SECONDS as usize + 10];
    for second in 0..SECONDS {
        for (i, m) in sim.step().into_iter().enumerate() {
            let Ok(env) = decoder.decode(&m.topic, &m.payload, T0 + second * 1000) else {
                continue;
            };
            // Most arrive in their second; one in 20 a second later (out of order, within the
            // lateness); one in 50 five seconds later (late: placed at the frontier).
            let delay = match (i as u64 + seed) % 100 {
                0 | 1 => 5,
                n if n % 20 == 3 => 1,
                _ => 0,
            };
            arrivals[(second + delay) as usize].push(env);
        }
    }
    Scenario {
        reference: Arc::new(reference),
        changed_reference: Arc::new(changed),
        rules: Arc::new(rules),
        changed_rules: Arc::new(changed_rules),
        arrivals,
    }
}

/// Every condition update of the scenario.
fn run(s: &Scenario) -> Vec<Update> {
    let (reference, changed_reference) = (s.reference.clone(), s.changed_reference.clone());
    let (rules, changed_rules) = (s.rules.clone(), s.changed_rules.clone());
    let arrivals = s.arrivals.clone();
    timely::execute_directly(move |worker| {
        let (mut inputs, probe, seen) = rule_dataflow(worker, reference.clone());
        inputs.load_reference(&reference);
        inputs.rule_versions.send(RuleSetVersion::of(0, &rules));
        let mut frontier = Frontier::new(100, LATENESS, ClockMode::Wall);
        let (mut current_rules, mut current_reference) = (rules.clone(), reference.clone());
        for (second, arrived) in arrivals.into_iter().enumerate() {
            let wall = T0 + second as u64 * 1000;
            if let Some(t) = frontier.target(0, wall) {
                frontier.advance(t);
                inputs.advance_to(t);
                if second == 3 {
                    dataflow::runtime::register_devices(&mut inputs, &rules, &reference, t);
                }
            }
            if second == 60 {
                inputs.set_rules(
                    frontier.epoch(),
                    &changed_rules,
                    &current_rules,
                    &current_reference,
                );
                current_rules = changed_rules.clone();
            }
            if second == 90 {
                inputs.set_reference(
                    frontier.epoch(),
                    &current_rules,
                    &current_reference,
                    changed_reference.clone(),
                );
                current_reference = changed_reference.clone();
            }
            for env in arrived {
                let (t, _) = frontier.place(env.time_ms);
                inputs.events.send((env, t));
            }
            worker.step();
        }
        finish(
            worker,
            &mut inputs,
            &probe,
            &seen,
            T0 + (SECONDS + 10) * 1000,
        )
    })
}

/// The recorded updates of seed `seed`: one JSON line per `(condition, time, diff)`.
fn recorded_path(seed: u64) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/seed-{seed}.jsonl"))
}

fn to_lines(updates: &[Update]) -> String {
    updates
        .iter()
        .map(|u| serde_json::to_string(u).unwrap() + "\n")
        .collect()
}

#[test]
fn simulated_cities_are_judged_as_recorded() {
    for seed in [1, 2, 3] {
        let updates = run(&scenario(seed));
        let fired: BTreeSet<&str> = updates.iter().map(|u| u.0.rule.as_str()).collect();
        assert!(
            updates.len() > 200 && fired.len() >= 10,
            "seed {seed}: too little happens to compare: {} updates of {fired:?}",
            updates.len()
        );
        let path = recorded_path(seed);
        if std::env::var_os("CITYWATCH_BLESS_GOLDEN").is_some() {
            std::fs::write(&path, to_lines(&updates)).unwrap();
        }
        let recorded = std::fs::read_to_string(&path).unwrap();
        let got = to_lines(&updates);
        // Line by line, so a failure shows the first update that differs.
        for (i, (g, r)) in got.lines().zip(recorded.lines()).enumerate() {
            assert_eq!(g, r, "seed {seed}, update {i}");
        }
        assert_eq!(got.lines().count(), recorded.lines().count(), "seed {seed}");
    }
}
