//! Decode throughput per message kind: topic + JSON payload into a typed event, one core.
//!
//! `cargo bench -p citywatch-benches --bench decode`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use model::Decoder;
use std::hint::black_box;

const NOW: u64 = 1_795_737_600_000;

fn samples() -> Vec<(&'static str, String, String)> {
    vec![
        (
            "elevator_status",
            "cw/v1/elevator/E0001234/status".into(),
            format!(
                r#"{{"ts":{NOW},"floor":12,"position_m":33.1,"in_door_zone":false,"speed_mps":1.62,"direction":"up","door":"closed","light_curtain_blocked":false,"occupied":true,"load_pct":41.5,"vibration_mps2":0.08,"service_mode":"normal","safety_circuit_ok":true,"power_ok":true}}"#
            ),
        ),
        (
            "elevator_event",
            "cw/v1/elevator/E0001234/event".into(),
            format!(r#"{{"ts":{NOW},"code":"93","floor":7,"detail":"门区外困人"}}"#),
        ),
        (
            "market_sale",
            "cw/v1/market/M01/scale/S0042/sale".into(),
            format!(
                r#"{{"ts":{NOW},"stall_id":"ST0042","goods_code":"pork","weight_kg":1.25,"unit_price":28.0,"total":35.0}}"#
            ),
        ),
        (
            "kitchen_detection",
            "cw/v1/kitchen/K0042/camera/C1/detection".into(),
            format!(
                r#"{{"ts":{NOW},"kind":"no_mask","confidence":0.83,"snapshot":"https://evidence.local/K0042/C1/1.jpg"}}"#
            ),
        ),
        (
            "kitchen_heartbeat",
            "cw/v1/kitchen/K0042/camera/C1/heartbeat".into(),
            r#"{"ts":"2026-11-27T08:00:00+08:00","online":true}"#.into(),
        ),
        (
            "complaint_new",
            "cw/v1/complaint/new".into(),
            format!(
                r#"{{"ts":{NOW},"complaint_id":"C20261127001","kind":"complaint","merchant_id":"MER0042","merchant_name":"健身工坊","category":"prepaid_card","lat":29.55,"lon":106.57,"amount":3000,"text":"预付卡无法退款"}}"#
            ),
        ),
        (
            "rejected_wrong_type",
            "cw/v1/elevator/E0001234/status".into(),
            format!(
                r#"{{"ts":{NOW},"floor":12,"in_door_zone":false,"speed_mps":"fast","direction":"up","door":"closed"}}"#
            ),
        ),
    ]
}

fn decode(c: &mut Criterion) {
    let decoder = Decoder::default();
    let mut group = c.benchmark_group("model::Decoder::decode");
    group.throughput(Throughput::Elements(1));
    for (name, topic, payload) in samples() {
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(decoder.decode(black_box(&topic), black_box(payload.as_bytes()), NOW))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
