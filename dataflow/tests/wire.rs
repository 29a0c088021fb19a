//! Every record that crosses workers, round-tripped through bincode, the encoding timely uses
//! between processes. A type that serializes for JSON but not for bincode (skipped fields,
//! self-describing values) would only fail once citywatch runs as a cluster.

use dataflow::Counter;
use dataflow::operators::conditions::{Batch, Observation, Plain, RuleSetVersion, What};
use dataflow::reference::Reference;
use dataflow::series::FrameSummary;
use model::{Id, Stream};
use rules::machine::{Item, Scalar};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let bytes = bincode::serialize(value).expect("serializes");
    let back: T = bincode::deserialize(&bytes).unwrap_or_else(|e| {
        panic!(
            "a {} does not come back from bincode: {e}",
            std::any::type_name::<T>()
        )
    });
    assert_eq!(&back, value);
}

#[test]
fn the_rules_and_the_reference_data_travel_between_processes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = rules::load_dir(&root.join("rules/default")).unwrap();
    let reference = Reference::load(&root.join("examples/reference")).unwrap();
    assert!(reference.jurisdictions.is_some());
    round_trip(&RuleSetVersion::of(7, &rules).with_reference(Arc::new(reference)));
    round_trip(&RuleSetVersion::of(8, &rules));
}

#[test]
fn observations_conditions_and_counters_travel_between_processes() {
    let items = [Item::Num(2.5), Item::Text("pork".into()), Item::Unit];
    let mut whats: Vec<What> = items
        .iter()
        .map(|item| What::Event {
            matched: true,
            cleared: false,
            item: item.clone(),
            seen: None,
        })
        .collect();
    whats.extend([
        What::Registered,
        What::Unregistered,
        What::Deferred {
            fields: vec![
                Some(Scalar::Text("open".into())),
                None,
                Some(Scalar::Num(1.0)),
                Some(Scalar::Bool(true)),
            ],
            item: Item::Unit,
        },
    ]);
    for what in &whats {
        round_trip(&Observation {
            rule: 42,
            group: "E0001".into(),
            time: 1_795_737_600_000,
            what: what.clone(),
        });
    }
    round_trip(&Batch {
        group: "M1/S1/pork".into(),
        time: 45_001,
        own: 1,
        plain: Plain {
            rules: 0b101,
            matched: 0b100,
            cleared: 0b001,
        },
        items: whats
            .into_iter()
            .enumerate()
            .map(|(i, w)| (i as u64, w))
            .collect(),
    });
    // A match kept for an explanation, and the cause handed with a start.
    let seen = model::seen::Seen::of(
        &testkit::Frame::new("E0001", 1_795_737_600_000)
            .occupied(true)
            .envelope(),
    );
    round_trip(&What::Event {
        matched: true,
        cleared: false,
        item: Item::Unit,
        seen: Some(seen.clone()),
    });
    round_trip(&dataflow::conditions::Cause {
        rule: "elevator.trapped_outside_zone".into(),
        group: "E0001".into(),
        since: 1_795_737_630_000,
        value: 1.0,
        raw_since: Some(1_795_737_600_000),
        events: vec![seen.clone()],
        items: vec![(1_795_737_600_000, Item::Num(2.5)), (1, Item::Unit)],
        earlier: 3,
        last_seen: None,
    });
    round_trip(&dataflow::Condition {
        rule: "elevator.trapped_alarm".into(),
        group: "E0001".into(),
        value_milli: 1000,
        since: 1_795_737_600_000,
        late_by_ms: 45_000,
    });
    for c in [
        Counter::Messages {
            stream: Stream::ElevatorStatus,
            minute: 60_000,
        },
        Counter::ElevatorsRegistered {
            district: Id::from("yuzhong"),
        },
        Counter::ComplaintsDecided {
            office: Id::from("O-JFB"),
            on_time: true,
        },
    ] {
        round_trip(&c);
    }
    round_trip(&(
        Id::from("E0001"),
        5u64,
        FrameSummary {
            speed_mps: 1.0,
            vibration_mps2: None,
            door_open: false,
            fault: true,
        },
    ));
}

#[test]
fn the_facts_for_the_alerts_and_the_signals_travel_between_processes() {
    use dataflow::Signal;
    use model::Fact;
    round_trip(&Fact::Evidence {
        kitchen_id: "K-R01".into(),
        camera_id: "C1".into(),
        kind: "rodent".into(),
        ts: 1_795_737_600_000,
        snapshot: "snap/1.jpg".into(),
    });
    round_trip(&Fact::Complaint {
        complaint_id: "C1".into(),
        merchant_id: None,
        merchant_name: "李记禽蛋摊".into(),
        kind: "complaint".into(),
        place: Some((29.55, 106.58)),
        received_ms: 1,
        category: "price".into(),
    });
    round_trip(&Fact::Status {
        complaint_id: "C1".into(),
        ts: 2,
        status: "accepted".into(),
        office: Some("O-JFB".into()),
    });
    round_trip(&Fact::Residue {
        key: "M-DP/M-DP-ST01/spinach".into(),
        ts: 3,
        inhibition_pct: 62.5,
        result: "fail".into(),
    });
    for s in [
        Signal::Journaled(5),
        Signal::Ask(6),
        Signal::Grant(7),
        Signal::Took { process: 1, at: 6 },
        Signal::Wrote { process: 1, at: 6 },
        Signal::Marked { process: 0, at: 6 },
        Signal::Holds {
            process: 1,
            at: vec![6, 3],
        },
    ] {
        round_trip(&s);
    }
}
