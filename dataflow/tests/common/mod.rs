//! The rule dataflow on one worker, as the tests drive it, and a simulated city.
// Each test file uses its own part of these helpers.
#![allow(dead_code)]

use dataflow::Condition;
use dataflow::build::{Built, Plan, Timeouts, build};
use dataflow::reference::Reference;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::operators::{Inspect, Probe};

pub type Update = (Condition, u64, isize);

type Worker = timely::worker::Worker;

/// The rule dataflow over `reference` on `worker`: its inputs, its probe, and every
/// condition update it emits.
pub fn rule_dataflow(
    worker: &mut Worker,
    reference: Arc<Reference>,
) -> (
    dataflow::build::Inputs,
    timely::dataflow::ProbeHandle<u64>,
    Rc<RefCell<Vec<Update>>>,
) {
    rule_dataflow_with(worker, reference, Timeouts::default())
}

/// The same, with `timeouts` of its own.
pub fn rule_dataflow_with(
    worker: &mut Worker,
    reference: Arc<Reference>,
    timeouts: Timeouts,
) -> (
    dataflow::build::Inputs,
    timely::dataflow::ProbeHandle<u64>,
    Rc<RefCell<Vec<Update>>>,
) {
    let plan = Plan {
        timeouts,
        series: false,
        rules_on: true,
        reference,
        stats: Default::default(),
        checkpoints: None,
        incidents: Default::default(),
        facts: None,
    };
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    let (inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
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
    (inputs, probe, seen)
}

/// Runs the dataflow to `until` and returns its consolidated updates before `until`.
pub fn finish(
    worker: &mut Worker,
    inputs: &mut dataflow::build::Inputs,
    probe: &timely::dataflow::ProbeHandle<u64>,
    seen: &Rc<RefCell<Vec<Update>>>,
    until: u64,
) -> Vec<Update> {
    inputs.advance_to(until);
    while probe.less_than(&until) {
        worker.step();
    }
    dataflow::offline::closed_before(&seen.borrow(), until)
}

/// A simulated city of `size`: the city, and its reference data as a start loads it.
pub fn city(size: simulators::city::Size, seed: u64) -> (simulators::city::City, Reference) {
    let city = simulators::city::City::generate(size, seed);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &city.files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let reference = Reference::load(dir.path()).unwrap();
    (city, reference)
}

/// Runs `events` (all on worker 0, in the order given) through a whole dataflow started with
/// `config`, `reference` and `rules`, handing every conditions snapshot to `seen`; returns once
/// the input has ended and everything is published.
pub fn run_snapshots(
    config: dataflow::DataflowConfig,
    reference: Reference,
    rules: dataflow::RuleFeed,
    events: Vec<model::Envelope>,
    seen: impl Fn(dataflow::ConditionsSnapshot) + Send + Sync + 'static,
) {
    use dataflow::{Ingested, Source, SourceFactory, VecSource};
    let messages: Vec<Ingested> = events
        .into_iter()
        .map(|envelope| Ingested {
            envelope,
            seq: None,
        })
        .collect();
    let messages = std::sync::Mutex::new(Some(messages));
    let sources: SourceFactory = Arc::new(move |index, _| {
        let mine = match index {
            0 => messages.lock().unwrap().take().unwrap_or_default(),
            _ => Vec::new(),
        };
        Box::new(VecSource::new(mine)) as Box<dyn Source>
    });
    dataflow::start(
        config,
        Arc::new(reference),
        rules,
        sources,
        dataflow::Outputs {
            snapshots: Arc::new(|_| {}),
            series: None,
            raw: false,
            conditions: Some(Arc::new(seen)),
            checkpoints: None,
            signals: None,
            facts: None,
        },
        Arc::new(dataflow::Stats::default()),
    )
    .unwrap()
    .join();
}
