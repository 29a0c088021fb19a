//! Exact `(data, time, diff)` output of the counter dataflow for hand-made input.

use dataflow::Counter;
use dataflow::build::{Built, Inputs, MINUTE_RETENTION_MS, Plan, Timeouts, build};
use differential_dataflow::consolidation::consolidate_updates;
use model::event::*;
use model::{ComplaintKind, Envelope, Event, Id};
use std::cell::RefCell;
use std::rc::Rc;
use timely::dataflow::operators::{Inspect, Probe};

const T0: u64 = 1_795_737_600_000; // 2026-11-27T08:00:00+08:00

type Update = (Counter, u64, isize);

/// Runs the graph: `setup` loads reference data at time 0, then each round is an input
/// epoch with its events (placed at the given times). Returns every counter update emitted
/// with a time before `until`, consolidated.
fn run(
    setup: impl FnOnce(&mut Inputs) + Send + Sync + 'static,
    rounds: Vec<(u64, Vec<(Event, u64)>)>,
    until: u64,
) -> Vec<Update> {
    timely::execute_directly(move |worker| {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let Built {
                inputs, counters, ..
            } = build(scope, &plan());
            let (probe, _) = counters
                .inner
                .inspect(move |u: &Update| sink.borrow_mut().push(u.clone()))
                .probe();
            (inputs, probe)
        });
        setup(&mut inputs);
        for (epoch, events) in rounds {
            inputs.advance_to(epoch);
            for (event, t) in events {
                let env = Envelope {
                    time_ms: event.ts().unwrap_or(t),
                    event,
                    received_ms: t,
                    untimed: false,
                    replayed: false,
                };
                inputs.events.send((env, t));
            }
        }
        inputs.advance_to(until);
        while probe.less_than(&until) {
            worker.step();
        }
        dataflow::offline::closed_before(&seen.borrow(), until)
    })
}

fn plan() -> Plan {
    Plan {
        timeouts: Timeouts {
            elevator_ms: 180_000,
            camera_ms: 180_000,
            ..Timeouts::default()
        },
        series: false,
        rules_on: false,
        checkpoints: None,
        incidents: Default::default(),
        facts: None,
        // One jurisdiction, a square around 29.55 N 106.55 E, for routing complaints by place.
        reference: std::sync::Arc::new(dataflow::Reference {
            jurisdictions: Some(
                serde_json::json!({"type": "FeatureCollection", "features": [
                    {"type": "Feature", "properties": {"office_id": "O-SQ"}, "geometry": {"type": "Polygon",
                     "coordinates": [[[106.5, 29.5], [106.6, 29.5], [106.6, 29.6], [106.5, 29.6], [106.5, 29.5]]]}}
                ]}),
            ),
            ..Default::default()
        }),
        stats: Default::default(),
    }
}

fn frame(id: &str, ts: u64) -> Event {
    testkit::Frame::new(id, ts).envelope().event
}

fn id(s: &str) -> Id {
    s.into()
}

#[test]
fn elevators_registered_online_and_unregistered() {
    let out = run(
        |i| {
            i.elevators.insert((id("E1"), id("north")));
            i.elevators.insert((id("E2"), id("north")));
            i.elevators.insert((id("E3"), id("south")));
        },
        vec![(
            T0,
            vec![
                (frame("E1", T0), T0),
                (frame("E1", T0 + 60_000), T0 + 60_000),
                (frame("E3", T0 + 1_000), T0 + 1_000),
                (frame("X9", T0 + 2_000), T0 + 2_000),
            ],
        )],
        T0 + 600_000,
    );
    let north = || Counter::ElevatorsOnline {
        district: id("north"),
    };
    let south = || Counter::ElevatorsOnline {
        district: id("south"),
    };
    let mut expected = vec![
        (
            Counter::ElevatorsRegistered {
                district: id("north"),
            },
            0,
            2,
        ),
        (
            Counter::ElevatorsRegistered {
                district: id("south"),
            },
            0,
            1,
        ),
        (north(), T0, 1),
        (north(), T0 + 240_000, -1),
        (south(), T0 + 1_000, 1),
        (south(), T0 + 181_000, -1),
        (Counter::ElevatorsUnregisteredOnline, T0 + 2_000, 1),
        (Counter::ElevatorsUnregisteredOnline, T0 + 182_000, -1),
    ];
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}

#[test]
fn cameras_online_per_venue_type_with_explicit_offline() {
    let beat = |k: &str, c: &str, ts: u64, online: bool| Event::Heartbeat {
        kitchen_id: id(k),
        camera_id: id(c),
        heartbeat: Heartbeat {
            ts: Some(ts),
            online,
        },
    };
    let out = run(
        |i| {
            i.kitchens.insert((id("K1"), id("school")));
            i.kitchens.insert((id("K2"), id("restaurant")));
            i.cameras.insert((id("K1"), id("C1")));
            i.cameras.insert((id("K1"), id("C2")));
            i.cameras.insert((id("K2"), id("C1")));
        },
        vec![(
            T0,
            vec![
                (beat("K1", "C1", T0, true), T0),
                (beat("K2", "C1", T0, true), T0),
                (beat("K1", "C1", T0 + 5_000, false), T0 + 5_000),
            ],
        )],
        T0 + 100_000,
    );
    let mut expected = vec![
        (
            Counter::CamerasRegistered {
                venue_type: id("school"),
            },
            0,
            2,
        ),
        (
            Counter::CamerasRegistered {
                venue_type: id("restaurant"),
            },
            0,
            1,
        ),
        (
            Counter::CamerasOnline {
                venue_type: id("school"),
            },
            T0,
            1,
        ),
        (
            Counter::CamerasOnline {
                venue_type: id("school"),
            },
            T0 + 5_000,
            -1,
        ),
        (
            Counter::CamerasOnline {
                venue_type: id("restaurant"),
            },
            T0,
            1,
        ),
    ];
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}

#[test]
fn market_turnover_per_minute_is_retracted_after_retention() {
    let sale = |total: f64, ts: u64| Event::Sale {
        market_id: id("M1"),
        scale_id: id("S1"),
        sale: Sale {
            ts: Some(ts),
            stall_id: id("ST1"),
            goods_code: id("pork"),
            weight_kg: 1.0,
            unit_price: total,
            total,
            tare_kg: None,
        },
    };
    let out = run(
        |_| {},
        // The second sale arrives out of order, in a later epoch but still ahead of it.
        vec![
            (T0, vec![(sale(12.34, T0 + 30_000), T0 + 30_000)]),
            (T0 + 10_000, vec![(sale(0.66, T0 + 20_000), T0 + 20_000)]),
        ],
        T0 + 2 * 3_600_000,
    );
    let minute = T0;
    let until = minute + MINUTE_RETENTION_MS;
    let turnover = || Counter::MarketTurnoverFen {
        market: id("M1"),
        minute,
    };
    let sales = || Counter::MarketSales {
        market: id("M1"),
        minute,
    };
    let mut expected = vec![
        (turnover(), T0 + 20_000, 66),
        (turnover(), T0 + 30_000, 1234),
        (turnover(), until, -1300),
        (sales(), T0 + 20_000, 1),
        (sales(), T0 + 30_000, 1),
        (sales(), until, -2),
    ];
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}

#[test]
fn residue_tests_count_per_market_day_and_result_and_leave_two_days_later() {
    let test = |pct: f64, ts: u64| Event::Residue {
        market_id: id("M1"),
        test: ResidueTest {
            ts: Some(ts),
            stall_id: id("ST1"),
            goods_code: id("cabbage"),
            inhibition_pct: pct,
            result: None,
        },
    };
    let out = run(
        |_| {},
        vec![(
            T0,
            vec![
                (test(12.0, T0), T0),
                (test(55.0, T0 + 60_000), T0 + 60_000),
                (test(20.0, T0 + 120_000), T0 + 120_000),
            ],
        )],
        T0 + 3 * model::time::DAY_MS,
    );
    let day = model::time::local_day(T0);
    let gone = model::time::day_start(day + 2);
    let tests = |failed| Counter::ResidueTests {
        market: id("M1"),
        day,
        failed,
    };
    let mut expected = vec![
        (tests(false), T0, 1),
        (tests(true), T0 + 60_000, 1),
        (tests(false), T0 + 120_000, 1),
        (tests(false), gone, -2),
        (tests(true), gone, -1),
    ];
    consolidate_updates(&mut expected);
    let residue: Vec<Update> = out
        .into_iter()
        .filter(|(c, _, _)| matches!(c, Counter::ResidueTests { .. }))
        .collect();
    assert_eq!(residue, expected);
}

#[test]
fn complaints_are_deduplicated_and_routed_by_merchant() {
    let complaint = |cid: &str, merchant: Option<&str>, ts: u64| {
        complaint_about(cid, merchant, ComplaintKind::Complaint, ts)
    };
    let day = model::time::local_day(T0);
    let out = run(
        |i| i.merchants.insert((id("MER1"), id("O1"))),
        vec![(
            T0,
            vec![
                (complaint("C1", Some("MER1"), T0), T0),
                (complaint("C1", Some("MER1"), T0 + 100), T0 + 100),
                (complaint("C2", None, T0 + 200), T0 + 200),
            ],
        )],
        T0 + 1_000,
    );
    let mut expected = vec![
        (
            Counter::ComplaintsReceived {
                office: id("O1"),
                day,
            },
            T0,
            1,
        ),
        (
            Counter::ComplaintsReceived {
                office: id("unrouted"),
                day,
            },
            T0 + 200,
            1,
        ),
        (Counter::ComplaintDuplicates { day }, T0 + 100, 1),
        (Counter::ComplaintsOpen { office: id("O1") }, T0, 1),
        (
            Counter::ComplaintsOpen {
                office: id("unrouted"),
            },
            T0 + 200,
            1,
        ),
    ];
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}

fn complaint_about(cid: &str, merchant: Option<&str>, kind: ComplaintKind, ts: u64) -> Event {
    complaint_at(cid, merchant, kind, ts, None)
}

fn complaint_at(
    cid: &str,
    merchant: Option<&str>,
    kind: ComplaintKind,
    ts: u64,
    place: Option<(f64, f64)>,
) -> Event {
    Event::ComplaintNew {
        complaint: Complaint {
            ts: Some(ts),
            complaint_id: id(cid),
            kind,
            merchant_id: merchant.map(id),
            merchant_name: "某商户".into(),
            category: id("price"),
            lat: place.map(|p| p.0),
            lon: place.map(|p| p.1),
            amount: None,
            text: None,
        },
    }
}

fn complaint(cid: &str, kind: ComplaintKind, ts: u64) -> Event {
    complaint_about(cid, Some("MER1"), kind, ts)
}

fn status(cid: &str, ts: u64) -> Event {
    Event::ComplaintStatus {
        complaint_id: id(cid),
        update: ComplaintUpdate {
            ts: Some(ts),
            status: model::ComplaintStatus::Accepted,
            office: None,
        },
    }
}

#[test]
fn decisions_count_on_time_or_late_against_working_days_and_the_rest_stay_open() {
    const DAY: u64 = 86_400_000;
    // Friday 27 Nov, 08:00: a complaint is due by the end of Tuesday 8 Dec (7 working days),
    // a report by the end of Thursday 17 Dec (15).
    let (prompt, late, report) = (T0 + DAY, T0 + 12 * DAY, T0 + 12 * DAY);
    let out = run(
        |i| i.merchants.insert((id("MER1"), id("O1"))),
        vec![
            (
                T0,
                vec![
                    (complaint("C1", ComplaintKind::Complaint, T0), T0),
                    (complaint("C2", ComplaintKind::Complaint, T0), T0),
                    (complaint("R1", ComplaintKind::Report, T0), T0),
                    (complaint("C3", ComplaintKind::Complaint, T0), T0),
                ],
            ),
            (prompt, vec![(status("C1", prompt), prompt)]),
            // A second status is progress, not another decision.
            (prompt + 1, vec![(status("C1", prompt + 1), prompt + 1)]),
            (
                late,
                vec![(status("C2", late), late), (status("R1", report), report)],
            ),
        ],
        T0 + 13 * DAY,
    );
    let open = Counter::ComplaintsOpen { office: id("O1") };
    let decided = |on_time| Counter::ComplaintsDecided {
        office: id("O1"),
        on_time,
    };
    let mut expected = vec![
        (
            Counter::ComplaintsReceived {
                office: id("O1"),
                day: model::time::local_day(T0),
            },
            T0,
            4,
        ),
        (open.clone(), T0, 4),
        (open.clone(), prompt, -1),
        (open, late, -2),
        (decided(true), prompt, 1),
        (decided(false), late, 1),
        (decided(true), report, 1),
    ];
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}

#[test]
fn a_complaint_goes_to_the_jurisdiction_of_its_place_before_its_merchants_office() {
    let day = model::time::local_day(T0);
    let c = ComplaintKind::Complaint;
    let out = run(
        |i| i.merchants.insert((id("MER1"), id("O1"))),
        vec![(
            T0,
            vec![
                // In the square: its office, whatever the merchant's.
                (
                    complaint_at("P1", Some("MER1"), c, T0, Some((29.55, 106.55))),
                    T0,
                ),
                // Outside every jurisdiction: the merchant's office.
                (
                    complaint_at("P2", Some("MER1"), c, T0, Some((29.70, 106.55))),
                    T0,
                ),
                // Neither: unrouted.
                (complaint_at("P3", None, c, T0, Some((29.70, 106.55))), T0),
            ],
        )],
        T0 + 1_000,
    );
    let received = |office: &str| Counter::ComplaintsReceived {
        office: id(office),
        day,
    };
    let open = |office: &str| Counter::ComplaintsOpen { office: id(office) };
    let mut expected = vec![
        (received("O-SQ"), T0, 1),
        (received("O1"), T0, 1),
        (received("unrouted"), T0, 1),
        (open("O-SQ"), T0, 1),
        (open("O1"), T0, 1),
        (open("unrouted"), T0, 1),
    ];
    consolidate_updates(&mut expected);
    assert_eq!(out, expected);
}
