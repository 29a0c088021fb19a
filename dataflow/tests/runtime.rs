//! The running dataflow with the event-time frontier: out-of-order and late input.

use dataflow::{
    ClockMode, Counter, DataflowConfig, Ingested, Outputs, Reference, Snapshot, Source,
    SourceFactory, Stats, VecSource,
};
use model::Stream;
use std::sync::{Arc, Mutex, PoisonError};

const T0: u64 = 1_795_737_600_000;

fn frame(id: &str, ts: u64) -> Ingested {
    Ingested {
        envelope: testkit::Frame::new(id, ts).envelope(),
        seq: None,
    }
}

fn replay(events: Vec<Ingested>, workers: usize, batch: usize) -> (Snapshot, Arc<Stats>) {
    let events = Arc::new(Mutex::new(Some(events)));
    let sources: SourceFactory = Arc::new(move |index, _| {
        let mine = if index == 0 {
            events.lock().unwrap().take().unwrap_or_default()
        } else {
            Vec::new()
        };
        Box::new(VecSource::new(mine)) as Box<dyn Source>
    });
    let last = Arc::new(Mutex::new(Snapshot::default()));
    let sink = last.clone();
    let stats = Arc::new(Stats::default());
    let config = DataflowConfig {
        workers,
        clock: ClockMode::Event,
        lateness_ms: 2000,
        batch,
        ..DataflowConfig::default()
    };
    let reference = Reference::default();
    let running = dataflow::start(
        config,
        Arc::new(reference),
        Default::default(),
        sources,
        Outputs {
            snapshots: Arc::new(move |s| *sink.lock().unwrap_or_else(PoisonError::into_inner) = s),
            series: None,
            raw: false,
            conditions: None,
            checkpoints: None,
            signals: None,
            facts: None,
        },
        stats.clone(),
    )
    .unwrap();
    running.join();
    let s = last.lock().unwrap().clone();
    (s, stats)
}

#[test]
fn late_events_are_counted_and_entered_at_the_frontier() {
    // One event per batch, so the frontier moves between them: after T0+5000 it stands at
    // T0+3000; T0+1000 is then late, T0+4000 is not.
    let events = vec![
        frame("E1", T0),
        frame("E1", T0 + 5_000),
        frame("E2", T0 + 1_000),
        frame("E2", T0 + 4_000),
    ];
    let (snap, stats) = replay(events, 1, 1);
    assert_eq!(stats.late_total(), 1);
    assert_eq!(
        snap.get(&Counter::Late {
            stream: Stream::ElevatorStatus
        }),
        1
    );
    assert_eq!(
        snap.get(&Counter::Messages {
            stream: Stream::ElevatorStatus,
            minute: T0
        }),
        4
    );
    assert_eq!(snap.get(&Counter::ElevatorsUnregisteredOnline), 2);
    // Closed just past the newest event.
    assert_eq!(snap.as_of, T0 + 5_100);
}

#[test]
fn out_of_order_within_lateness_is_not_late_and_workers_agree() {
    let events: Vec<Ingested> = (0..200u64)
        .map(|i| frame(&format!("E{}", i % 7), T0 + (i * 37) % 1500))
        .collect();
    let (one, s1) = replay(events.clone(), 1, 16);
    let (two, s2) = replay(events, 2, 16);
    assert_eq!(s1.late_total(), 0);
    assert_eq!(s2.late_total(), 0);
    assert_eq!(one.values, two.values);
    assert_eq!(one.get(&Counter::ElevatorsUnregisteredOnline), 7);
    assert_eq!(
        one.get(&Counter::Messages {
            stream: Stream::ElevatorStatus,
            minute: T0
        }),
        200
    );
}
