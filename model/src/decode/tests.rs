use super::*;
use crate::codes::*;
use proptest::prelude::*;

const NOW: u64 = 1_795_737_600_000;

fn dec() -> Decoder {
    Decoder::default()
}

fn reject(topic: &str, payload: &str) -> Rejection {
    dec().decode(topic, payload.as_bytes(), NOW).unwrap_err()
}

const FRAME_OK: &str = r#"{"ts":1795737600000,"floor":3,"in_door_zone":true,"speed_mps":0.0,"direction":"stop","door":"closed"}"#;

#[test]
fn decodes_a_frame_with_unknown_fields_and_rfc3339_ts() {
    let p = r#"{"ts":"2026-11-27T08:00:00+08:00","floor":-1,"in_door_zone":false,"speed_mps":1.5,
        "direction":"up","door":"closed","load_pct":40,"vibration_mps2":0.1,"firmware":"v2","elevator_id":"IGNORED"}"#;
    let env = dec()
        .decode("cw/v1/elevator/E1/status", p.as_bytes(), NOW)
        .unwrap();
    assert_eq!(env.time_ms, NOW);
    assert!(!env.untimed);
    let Event::ElevatorStatus { elevator_id, frame } = env.event else {
        panic!()
    };
    assert_eq!(elevator_id, "E1", "the topic id wins over the payload id");
    assert_eq!(frame.floor, -1);
    assert_eq!(frame.direction, Direction::Up);
    assert_eq!(frame.service_mode, ServiceMode::Normal);
    assert_eq!(frame.load_pct, Some(40.0));
}

#[test]
fn untimed_messages_take_the_arrival_time() {
    let env = dec()
        .decode(
            "cw/v1/kitchen/K1/camera/C1/heartbeat",
            br#"{"online":true}"#,
            NOW,
        )
        .unwrap();
    assert!(env.untimed);
    assert_eq!(env.time_ms, NOW);
}

#[test]
fn numeric_fault_codes_are_accepted() {
    let env = dec()
        .decode(
            "cw/v1/elevator/E1/event",
            br#"{"ts":1795737600000,"code":"93","floor":2}"#,
            NOW,
        )
        .unwrap();
    let Event::ElevatorEvent { event, .. } = env.event else {
        panic!()
    };
    assert_eq!(event.code, FaultCode::Trapped);
}

#[test]
fn residue_result_is_derived_when_absent() {
    let env = dec()
        .decode(
            "cw/v1/market/M1/residue",
            br#"{"ts":1795737600000,"stall_id":"S1","goods_code":"cabbage","inhibition_pct":55}"#,
            NOW,
        )
        .unwrap();
    let Event::Residue { test, .. } = env.event else {
        panic!()
    };
    assert_eq!(test.result, None);
    assert_eq!(test.outcome(), ResidueResult::Fail);
}

#[test]
fn every_reason_class_names_topic_field_and_why() {
    let t = "cw/v1/elevator/E12/status";
    let r = reject(t, "{not json");
    assert_eq!(r.reason, Reason::NotJson);
    assert!(
        r.message
            .starts_with("cw/v1/elevator/E12/status: payload is not JSON"),
        "{}",
        r.message
    );

    let r = reject(t, "[1,2]");
    assert_eq!(
        (r.reason, r.message.as_str()),
        (
            Reason::NotObject,
            "cw/v1/elevator/E12/status: payload is an array, expected a JSON object"
        )
    );

    let r = reject("cw/v1/elevator/E12/telemetry", "{}");
    assert_eq!(r.reason, Reason::UnknownTopic);

    let r = reject("cw/v1/elevator/E$12/status", FRAME_OK);
    assert_eq!(r.reason, Reason::BadId);
    assert!(r.message.contains("\"E$12\""), "{}", r.message);

    let r = reject(
        t,
        r#"{"ts":1795737600000,"in_door_zone":true,"speed_mps":0,"direction":"stop","door":"closed"}"#,
    );
    assert_eq!(
        (r.reason, r.field.as_deref()),
        (Reason::MissingField, Some("floor"))
    );
    assert_eq!(
        r.message,
        "field \"floor\" in cw/v1/elevator/E12/status: required field is missing"
    );

    let r = reject(
        t,
        r#"{"ts":1795737600000,"floor":3,"in_door_zone":true,"speed_mps":"fast","direction":"stop","door":"closed"}"#,
    );
    assert_eq!(r.reason, Reason::WrongType);
    assert_eq!(
        r.message,
        "field \"speed_mps\" in cw/v1/elevator/E12/status: expected a number, got \"fast\""
    );

    let r = reject(
        t,
        r#"{"ts":1795737600000,"floor":3.5,"in_door_zone":true,"speed_mps":0,"direction":"stop","door":"closed"}"#,
    );
    assert_eq!(
        (r.reason, r.field.as_deref()),
        (Reason::WrongType, Some("floor"))
    );

    let r = reject(
        t,
        r#"{"ts":1795737600000,"floor":3,"in_door_zone":true,"speed_mps":-1,"direction":"stop","door":"closed"}"#,
    );
    assert_eq!(
        (r.reason, r.field.as_deref()),
        (Reason::OutOfRange, Some("speed_mps"))
    );

    let r = reject(
        t,
        r#"{"ts":1795737600000,"floor":3,"in_door_zone":true,"speed_mps":0,"direction":"sideways","door":"closed"}"#,
    );
    assert_eq!(
        (r.reason, r.field.as_deref()),
        (Reason::OutOfRange, Some("direction"))
    );
    assert!(
        r.message
            .ends_with("expected one of up, down, stop, got \"sideways\""),
        "{}",
        r.message
    );

    let r = reject(t, &FRAME_OK.replace("1795737600000", "1795900000000"));
    assert_eq!((r.reason, r.field.as_deref()), (Reason::TsSkew, Some("ts")));

    let r = reject(t, &FRAME_OK.replace("1795737600000", "\"yesterday\""));
    assert_eq!(
        (r.reason, r.field.as_deref()),
        (Reason::WrongType, Some("ts"))
    );

    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000));
    let r = reject(t, &big);
    assert_eq!(r.reason, Reason::TooLarge);
}

#[test]
fn payload_limit_is_configurable() {
    let d = Decoder::new(DecoderConfig {
        max_payload_bytes: 10,
        ..Default::default()
    });
    let r = d
        .decode("cw/v1/elevator/E1/status", FRAME_OK.as_bytes(), NOW)
        .unwrap_err();
    assert_eq!(r.reason, Reason::TooLarge);
    assert!(r.message.contains("exceeds the limit of 10 bytes"));
}

#[test]
fn every_required_field_of_every_stream_is_reported_when_missing() {
    // Keeps the error path's field tables in step with the payload structs.
    let samples = sample_events();
    assert_eq!(samples.len(), Stream::ALL.len());
    for event in samples {
        let (topic, payload) = event.encode("cw/v1/");
        let obj: serde_json::Map<String, Value> = serde_json::from_slice(&payload).unwrap();
        assert!(dec().decode(&topic, &payload, NOW).is_ok(), "{topic}");
        for (name, _) in obj.iter() {
            let mut without = obj.clone();
            without.remove(name);
            let res = dec().decode(&topic, &serde_json::to_vec(&without).unwrap(), NOW);
            if let Err(r) = res {
                assert_eq!(
                    (r.reason, r.field.as_deref()),
                    (Reason::MissingField, Some(name.as_str())),
                    "{topic}"
                );
            }
            let mut wrong = obj.clone();
            wrong.insert(name.clone(), Value::Array(vec![]));
            let r = dec()
                .decode(&topic, &serde_json::to_vec(&wrong).unwrap(), NOW)
                .unwrap_err();
            assert_eq!(
                (r.reason, r.field.as_deref()),
                (Reason::WrongType, Some(name.as_str())),
                "{topic} {name}"
            );
        }
    }
}

fn sample_events() -> Vec<Event> {
    let ts = Some(NOW);
    vec![
        Event::ElevatorStatus {
            elevator_id: "E1".into(),
            frame: ElevatorFrame {
                ts,
                floor: 1,
                position_m: Some(3.0),
                in_door_zone: true,
                speed_mps: 0.0,
                direction: Direction::Stop,
                door: Door::Open,
                light_curtain_blocked: Some(false),
                occupied: Some(true),
                load_pct: Some(10.0),
                vibration_mps2: Some(0.1),
                service_mode: ServiceMode::Normal,
                safety_circuit_ok: Some(true),
                power_ok: Some(true),
                alarm_button: Some(false),
            },
        },
        Event::ElevatorEvent {
            elevator_id: "E1".into(),
            event: ElevatorEvent {
                ts,
                code: FaultCode::Trapped,
                floor: Some(2),
                detail: Some("x".into()),
            },
        },
        Event::Sale {
            market_id: "M1".into(),
            scale_id: "S1".into(),
            sale: Sale {
                ts,
                stall_id: "ST1".into(),
                goods_code: "pork".into(),
                weight_kg: 1.0,
                unit_price: 30.0,
                total: 30.0,
                tare_kg: Some(0.01),
            },
        },
        Event::ScaleCheck {
            market_id: "M1".into(),
            scale_id: "S1".into(),
            check: ScaleCheck {
                ts,
                reference_kg: 1.0,
                measured_kg: 0.99,
            },
        },
        Event::Residue {
            market_id: "M1".into(),
            test: ResidueTest {
                ts,
                stall_id: "ST1".into(),
                goods_code: "cabbage".into(),
                inhibition_pct: 20.0,
                result: Some(ResidueResult::Pass),
            },
        },
        Event::Detection {
            kitchen_id: "K1".into(),
            camera_id: "C1".into(),
            detection: Detection {
                ts,
                kind: DetectionKind::Rodent,
                confidence: Some(0.9),
                snapshot: Some("s/1.jpg".into()),
            },
        },
        Event::Heartbeat {
            kitchen_id: "K1".into(),
            camera_id: "C1".into(),
            heartbeat: Heartbeat { ts, online: true },
        },
        Event::ComplaintNew {
            complaint: Complaint {
                ts,
                complaint_id: "C1".into(),
                kind: ComplaintKind::Report,
                merchant_id: Some("MER1".into()),
                merchant_name: "张三超市".into(),
                category: "prepaid_card".into(),
                lat: Some(29.5),
                lon: Some(106.5),
                amount: Some(100.0),
                text: Some("退卡难".into()),
            },
        },
        Event::ComplaintStatus {
            complaint_id: "C1".into(),
            update: ComplaintUpdate {
                ts,
                status: ComplaintStatus::Accepted,
                office: Some("O1".into()),
            },
        },
    ]
}

fn id() -> impl Strategy<Value = crate::Id> {
    "[A-Za-z0-9_.-]{1,64}".prop_map(Into::into)
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(s)
}

fn ts() -> impl Strategy<Value = Option<u64>> {
    opt(NOW - DAY_MS..=NOW + DAY_MS)
}

fn finite(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    (lo..=hi).prop_filter("finite", |v: &f64| v.is_finite())
}

fn open<T: Clone + std::fmt::Debug + 'static>(
    known: &'static [T],
    parse: fn(&str) -> T,
) -> impl Strategy<Value = T> {
    prop_oneof![
        proptest::sample::select(known),
        "[a-z0-9_]{1,12}".prop_map(move |s| parse(&s)),
    ]
}

fn frame() -> impl Strategy<Value = ElevatorFrame> {
    (
        (
            ts(),
            any::<i32>(),
            opt(finite(-1e6, 1e6)),
            any::<bool>(),
            finite(0.0, 20.0),
        ),
        (
            proptest::sample::select(Direction::ALL),
            proptest::sample::select(Door::ALL),
            opt(any::<bool>()),
            opt(any::<bool>()),
        ),
        (
            opt(finite(0.0, 150.0)),
            opt(finite(0.0, 100.0)),
            open(ServiceMode::KNOWN, ServiceMode::parse),
        ),
        (opt(any::<bool>()), opt(any::<bool>()), opt(any::<bool>())),
    )
        .prop_map(
            |(
                (ts, floor, position_m, in_door_zone, speed_mps),
                (direction, door, light_curtain_blocked, occupied),
                (load_pct, vibration_mps2, service_mode),
                (safety_circuit_ok, power_ok, alarm_button),
            )| {
                ElevatorFrame {
                    ts,
                    floor,
                    position_m,
                    in_door_zone,
                    speed_mps,
                    direction,
                    door,
                    light_curtain_blocked,
                    occupied,
                    load_pct,
                    vibration_mps2,
                    service_mode,
                    safety_circuit_ok,
                    power_ok,
                    alarm_button,
                }
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    let money = || finite(1e-3, 1e6);
    prop_oneof![
        (id(), frame())
            .prop_map(|(elevator_id, frame)| Event::ElevatorStatus { elevator_id, frame }),
        (
            id(),
            ts(),
            open(FaultCode::KNOWN, FaultCode::parse),
            opt(any::<i32>()),
            opt(".*")
        )
            .prop_map(
                |(elevator_id, ts, code, floor, detail)| Event::ElevatorEvent {
                    elevator_id,
                    event: ElevatorEvent {
                        ts,
                        code,
                        floor,
                        detail
                    }
                }
            ),
        (
            id(),
            id(),
            ts(),
            id(),
            id(),
            money(),
            money(),
            finite(0.0, 1e6),
            opt(finite(0.0, 10.0))
        )
            .prop_map(
                |(
                    market_id,
                    scale_id,
                    ts,
                    stall_id,
                    goods_code,
                    weight_kg,
                    unit_price,
                    total,
                    tare_kg,
                )| Event::Sale {
                    market_id,
                    scale_id,
                    sale: Sale {
                        ts,
                        stall_id,
                        goods_code,
                        weight_kg,
                        unit_price,
                        total,
                        tare_kg
                    },
                }
            ),
        (id(), id(), ts(), money(), finite(0.0, 1e6)).prop_map(
            |(market_id, scale_id, ts, reference_kg, measured_kg)| Event::ScaleCheck {
                market_id,
                scale_id,
                check: ScaleCheck {
                    ts,
                    reference_kg,
                    measured_kg
                }
            }
        ),
        (
            id(),
            ts(),
            id(),
            id(),
            finite(0.0, 100.0),
            opt(proptest::sample::select(ResidueResult::ALL))
        )
            .prop_map(
                |(market_id, ts, stall_id, goods_code, inhibition_pct, result)| Event::Residue {
                    market_id,
                    test: ResidueTest {
                        ts,
                        stall_id,
                        goods_code,
                        inhibition_pct,
                        result
                    },
                }
            ),
        (
            id(),
            id(),
            ts(),
            open(DetectionKind::KNOWN, DetectionKind::parse),
            opt(finite(0.0, 1.0)),
            opt(".*")
        )
            .prop_map(|(kitchen_id, camera_id, ts, kind, confidence, snapshot)| {
                Event::Detection {
                    kitchen_id,
                    camera_id,
                    detection: Detection {
                        ts,
                        kind,
                        confidence,
                        snapshot,
                    },
                }
            }),
        (id(), id(), ts(), any::<bool>()).prop_map(|(kitchen_id, camera_id, ts, online)| {
            Event::Heartbeat {
                kitchen_id,
                camera_id,
                heartbeat: Heartbeat { ts, online },
            }
        }),
        (
            (
                ts(),
                id(),
                proptest::sample::select(ComplaintKind::ALL),
                opt(id()),
                ".*",
                "[a-z_]{1,20}"
            ),
            (
                opt(finite(-90.0, 90.0)),
                opt(finite(-180.0, 180.0)),
                opt(finite(0.0, 1e7)),
                opt(".*")
            ),
        )
            .prop_map(
                |(
                    (ts, complaint_id, kind, merchant_id, merchant_name, category),
                    (lat, lon, amount, text),
                )| Event::ComplaintNew {
                    complaint: Complaint {
                        ts,
                        complaint_id,
                        kind,
                        merchant_id,
                        merchant_name,
                        category: category.into(),
                        lat,
                        lon,
                        amount,
                        text
                    },
                }
            ),
        (
            id(),
            ts(),
            proptest::sample::select(ComplaintStatus::ALL),
            opt(id())
        )
            .prop_map(
                |(complaint_id, ts, status, office)| Event::ComplaintStatus {
                    complaint_id,
                    update: ComplaintUpdate { ts, status, office }
                }
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_valid_event_round_trips(ev in event()) {
        let (topic, payload) = ev.encode("cw/v1/");
        let env = dec().decode(&topic, &payload, NOW).map_err(|r| TestCaseError::fail(r.message))?;
        prop_assert_eq!(env.untimed, ev.ts().is_none());
        prop_assert_eq!(env.event, ev);
    }

    #[test]
    fn no_bytes_make_the_decoder_panic(
        topic in prop_oneof![
            Just("cw/v1/elevator/E1/status".to_owned()),
            Just("cw/v1/complaint/new".to_owned()),
            Just("cw/v1/market/M/scale/S/sale".to_owned()),
            Just("cw/v1/kitchen/K/camera/C/detection".to_owned()),
            "cw/v1/[a-z/]{0,30}",
            ".*",
        ],
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            "\\{(\"[a-z_]{1,12}\":(-?[0-9.e]{1,12}|\"[^\"]{0,8}\"|true|null|\\[\\]),?){0,8}\\}".prop_map(String::into_bytes),
        ],
    ) {
        match dec().decode(&topic, &payload, NOW) {
            Ok(_) => {}
            Err(r) => prop_assert!(!r.message.is_empty()),
        }
    }

    #[test]
    fn mutated_valid_payloads_decode_or_reject_cleanly(ev in event(), cut in 0usize..400, byte in any::<u8>()) {
        let (topic, mut payload) = ev.encode("cw/v1/");
        if !payload.is_empty() {
            let i = cut % payload.len();
            payload[i] = byte;
        }
        if let Err(r) = dec().decode(&topic, &payload, NOW) {
            prop_assert!(r.message.starts_with("field \"") || r.message.starts_with(&topic));
        }
    }
}
