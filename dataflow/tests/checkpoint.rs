//! Checkpoints: a simulated city judged in one run gives the same alert conditions and
//! counters as the same city stopped halfway (its state checkpointed) and started again from
//! the checkpoint with the rest of the messages.

mod common;

use dataflow::checkpoint::{Checkpoints, Taken};
use dataflow::{
    ClockMode, ConditionsSnapshot, Counter, DataflowConfig, Ingested, Outputs, Reference, RuleFeed,
    Snapshot, Source, SourceFactory, Stats, VecSource,
};
use model::Decoder;
use simulators::city::Size;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T0: u64 = 1_795_737_600_000;
const SECONDS: u64 = 240;

/// A condition change: rule, group, value × 1000, started (else stopped), time.
type Change = (String, String, i64, bool, u64);

struct City2 {
    reference: Arc<Reference>,
    rules: Arc<Vec<rules::Rule>>,
    messages: Vec<Ingested>,
}

fn city(seed: u64) -> City2 {
    let size = Size {
        elevators: 80,
        kitchens: 8,
        cameras_per_kitchen: 2,
        markets: 2,
        scales_per_market: 6,
        merchants: 12,
    };
    let (city, reference) = common::city(size, seed);
    let pack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/default");
    let rules = rules::load_dir(&pack).unwrap();
    let mut sim = simulators::Simulator::new(city.district, seed, T0).with_incident_every(2);
    let decoder = Decoder::default();
    let mut messages = Vec::new();
    for second in 0..SECONDS {
        for m in sim.step() {
            if let Ok(envelope) = decoder.decode(&m.topic, &m.payload, T0 + second * 1000) {
                messages.push(Ingested {
                    envelope,
                    seq: None,
                });
            }
        }
    }
    messages.sort_by_key(|m| m.envelope.time_ms);
    City2 {
        reference: Arc::new(reference),
        rules: Arc::new(rules),
        messages,
    }
}

struct Run {
    changes: Vec<Change>,
    /// Every time-series window written, as text (sorted).
    series: Vec<String>,
    counters: Snapshot,
    taken: Option<Taken>,
}

/// Judges `messages` on two workers (event clock), restoring `restore` first; with
/// checkpoints, the last one (taken at the end) is returned.
fn run(c: &City2, messages: Vec<Ingested>, restore: Option<Taken>, checkpoints: bool) -> Run {
    let messages = Mutex::new(Some(messages));
    let sources: SourceFactory = Arc::new(move |index, _| {
        let mine = if index == 0 {
            messages.lock().unwrap().take().unwrap_or_default()
        } else {
            Vec::new()
        };
        Box::new(VecSource::new(mine)) as Box<dyn Source>
    });
    let changes = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(Mutex::new(Snapshot::default()));
    let taken = Arc::new(Mutex::new(None));
    let ck = checkpoints.then(|| {
        let taken = taken.clone();
        Checkpoints::new(
            2,
            100,
            // Periodic ones too, while the city runs.
            Duration::from_millis(20),
            dataflow::checkpoint::Restore::taken(restore),
            Box::new(move |t| *taken.lock().unwrap() = Some(t)),
        )
    });
    let series = Arc::new(Mutex::new(Vec::new()));
    let (seen, last, windows) = (changes.clone(), counters.clone(), series.clone());
    let running = dataflow::start(
        DataflowConfig {
            workers: 2,
            clock: ClockMode::Event,
            lateness_ms: 2000,
            batch: 64,
            ..DataflowConfig::default()
        },
        c.reference.clone(),
        RuleFeed {
            initial: c.rules.clone(),
            ..RuleFeed::default()
        },
        sources,
        Outputs {
            snapshots: Arc::new(move |s| *last.lock().unwrap() = s),
            series: Some(Arc::new(move |batch: Vec<dataflow::Series>| {
                windows
                    .lock()
                    .unwrap()
                    .extend(batch.iter().map(|w| format!("{w:?}")));
            })),
            raw: false,
            conditions: Some(Arc::new(move |s: ConditionsSnapshot| {
                let mut seen = seen.lock().unwrap();
                for (a, started, at) in s.changes {
                    let milli = (a.value * 1000.0).round() as i64;
                    seen.push((a.rule, a.group, milli, started, at));
                }
            })),
            checkpoints: ck,
            signals: None,
            facts: None,
        },
        Arc::new(Stats::default()),
    )
    .unwrap();
    running.join();
    let changes = std::mem::take(&mut *changes.lock().unwrap());
    let counters = counters.lock().unwrap().clone();
    let taken = taken.lock().unwrap().take();
    let mut series = std::mem::take(&mut *series.lock().unwrap());
    series.sort();
    Run {
        changes,
        series,
        counters,
        taken,
    }
}

/// The conditions active after `changes`.
fn active(changes: &[Change]) -> BTreeMap<(String, String), i64> {
    let mut on = BTreeMap::new();
    for (rule, group, milli, started, _) in changes {
        if *started {
            on.insert((rule.clone(), group.clone()), *milli);
        } else {
            on.remove(&(rule.clone(), group.clone()));
        }
    }
    on
}

/// Counters as a restart keeps or derives them (the per-day complaint counters come from the
/// complaint log, which this test does not feed again).
fn comparable(s: &Snapshot) -> BTreeMap<Counter, i64> {
    s.values
        .iter()
        .filter(|(c, _)| {
            !matches!(
                c,
                Counter::ComplaintsReceived { .. }
                    | Counter::ComplaintDuplicates { .. }
                    | Counter::ComplaintsDecided { .. }
                    | Counter::ComplaintsOpen { .. }
            )
        })
        .map(|(c, v)| (c.clone(), *v))
        .collect()
}

#[test]
fn a_run_stopped_and_restored_from_its_checkpoint_judges_as_one_run() {
    let c = city(7);
    let whole = run(&c, c.messages.clone(), None, false);
    let split = T0 + 130_000;
    let (before, after): (Vec<_>, Vec<_>) = c
        .messages
        .iter()
        .cloned()
        .partition(|m| m.envelope.time_ms < split);
    let first = run(&c, before, None, true);
    let taken = first.taken.clone().expect("a checkpoint at the stop");
    assert!(taken.at <= split, "taken at {} after the split", taken.at);
    assert!(
        taken.parts.len() >= 7,
        "conditions and two liveness parts per worker, and the counters: {:?}",
        taken.parts.keys().collect::<Vec<_>>()
    );
    let second = run(&c, after, Some(taken.clone()), true);

    // The second run starts with the conditions active at the checkpoint (again, at its
    // time); the alert journal takes them as the episodes it holds.
    let held = active(&first.changes);
    let (again, rest): (Vec<Change>, Vec<Change>) =
        second
            .changes
            .into_iter()
            .partition(|(rule, group, milli, started, at)| {
                *started
                    && *at == taken.at
                    && held.get(&(rule.clone(), group.clone())) == Some(milli)
            });
    assert_eq!(again.len(), held.len(), "every active condition restored");
    let mut joined = first.changes.clone();
    joined.extend(rest);
    let fired: std::collections::BTreeSet<&str> =
        whole.changes.iter().map(|c| c.0.as_str()).collect();
    assert!(
        whole.changes.len() > 100 && fired.len() >= 8 && !held.is_empty(),
        "too little happens to compare: {} changes of {fired:?}, {} active at the stop",
        whole.changes.len(),
        held.len()
    );
    // Updates at one time may come in either order from two workers.
    let mut whole_changes = whole.changes.clone();
    joined.sort();
    whole_changes.sort();
    assert_eq!(joined, whole_changes);
    assert_eq!(comparable(&second.counters), comparable(&whole.counters));
    // Windows open at the stop close after the restart with all their inputs.
    let mut windows = first.series.clone();
    windows.extend(second.series);
    windows.sort();
    assert!(whole.series.len() > 100, "{} windows", whole.series.len());
    assert_eq!(windows, whole.series);
}

fn decoded(topic: &str, payload: String, ts: u64) -> Ingested {
    Ingested {
        envelope: Decoder::default()
            .decode(topic, payload.as_bytes(), ts)
            .unwrap(),
        seq: None,
    }
}

#[test]
fn absence_clocks_run_on_across_a_stop() {
    // Every camera beats for 10 s and falls silent; one elevator keeps the clock moving. The
    // stop at 100 s is mid-absence: the cameras go offline 180 s after their last beat, not
    // 180 s after the restart.
    let mut c = city(3);
    let mut messages = Vec::new();
    for s in 0..300u64 {
        let ts = T0 + s * 1000;
        if s < 10 {
            for cam in &c.reference.cameras {
                messages.push(decoded(
                    &format!(
                        "cw/v1/kitchen/{}/camera/{}/heartbeat",
                        cam.kitchen_id, cam.camera_id
                    ),
                    format!(r#"{{"ts":{ts},"online":true}}"#),
                    ts,
                ));
            }
        }
        let e = &c.reference.elevators[0].elevator_id;
        messages.push(decoded(
            &format!("cw/v1/elevator/{e}/status"),
            format!(
                r#"{{"ts":{ts},"floor":1,"in_door_zone":true,"speed_mps":0,"direction":"stop","door":"closed"}}"#
            ),
            ts,
        ));
    }
    c.messages = messages;
    let whole = run(&c, c.messages.clone(), None, false);
    let (before, after): (Vec<_>, Vec<_>) = c
        .messages
        .iter()
        .cloned()
        .partition(|m| m.envelope.time_ms < T0 + 100_000);
    let first = run(&c, before, None, true);
    let taken = first.taken.clone().unwrap();
    let second = run(&c, after, Some(taken), true);
    let offline: Vec<u64> = second
        .changes
        .iter()
        .filter(|c| c.0.contains("camera_offline") && c.3)
        .map(|c| c.4)
        .collect();
    assert_eq!(
        offline.len(),
        c.reference.cameras.len(),
        "{:?}",
        second.changes
    );
    assert!(
        offline.iter().all(|t| *t == T0 + 189_000),
        "180 s after the last beat at T0 + 9 s: {offline:?}"
    );
    let mut joined = first.changes;
    joined.extend(second.changes);
    let mut whole_changes = whole.changes;
    joined.sort();
    whole_changes.sort();
    assert_eq!(joined, whole_changes);
}
