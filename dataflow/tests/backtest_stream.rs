//! A backtest streamed from a recording (the input following the newest event less the
//! recording's disorder) gives exactly what the backtest over the whole recording gives.

mod common;

use dataflow::offline::backtest;
use dataflow::reference::Reference;
use model::{Decoder, Envelope};
use simulators::city::Size;
use std::sync::Arc;

const T0: u64 = 1_795_737_600_000;

/// A simulated city's messages in arrival order (one in 25 arrives 4 s late), each with its
/// event time, and the city's reference data.
fn recording(seed: u64, seconds: u64) -> (Vec<(Envelope, u64)>, Arc<Reference>) {
    let size = Size {
        elevators: 150,
        kitchens: 10,
        cameras_per_kitchen: 2,
        markets: 2,
        scales_per_market: 6,
        merchants: 20,
    };
    let (city, reference) = common::city(size, seed);
    let reference = Arc::new(reference);
    let mut sim = simulators::Simulator::new(city.district, seed, T0).with_incident_every(3);
    let decoder = Decoder::default();
    let mut arrivals: Vec<Vec<Envelope>> = vec![Vec::new(); seconds as usize + 5];
    for second in 0..seconds {
        for (i, m) in sim.step().into_iter().enumerate() {
            let Ok(env) = decoder.decode(&m.topic, &m.payload, T0 + second * 1000) else {
                continue;
            };
            let delay = if i % 25 == 7 { 4 } else { 0 };
            arrivals[(second + delay) as usize].push(env);
        }
    }
    let events = arrivals
        .into_iter()
        .flatten()
        .map(|e| {
            let t = e.time_ms;
            (e, t)
        })
        .collect();
    (events, reference)
}

fn disorder(events: &[(Envelope, u64)]) -> u64 {
    let mut newest = 0u64;
    let mut most = 0u64;
    for (_, t) in events {
        most = most.max(newest.saturating_sub(*t));
        newest = newest.max(*t);
    }
    most
}

#[test]
fn a_streamed_backtest_equals_the_whole_one() {
    let pack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/default");
    let rules = Arc::new(rules::load_dir(&pack).unwrap());
    for seed in [1, 2] {
        let (events, reference) = recording(seed, 600);
        let start = events.iter().map(|e| e.1).min().unwrap();
        let until = events.iter().map(|e| e.1).max().unwrap() + 1;
        let disorder = disorder(&events);
        assert!(disorder >= 3_000, "the recording is out of order");
        assert!(
            events.len() > 5 * 4096,
            "long enough to move the input many times"
        );
        let whole = backtest(
            rules.clone(),
            reference.clone(),
            events.clone().into_iter(),
            start,
            until,
            u64::MAX,
        );
        let streamed = backtest(
            rules.clone(),
            reference,
            events.into_iter(),
            start,
            until,
            disorder,
        );
        assert!(whole.len() >= 20, "seed {seed}: {} intervals", whole.len());
        assert!(
            whole.iter().any(|i| i.resolves.is_some()),
            "some resolve too"
        );
        assert_eq!(streamed, whole, "seed {seed}");
    }
}
