//! Time series from a running citywatch into a real server that speaks the InfluxDB v2 write
//! API (VictoriaMetrics on a free port): per-elevator 10 s windows, market goods minutes and
//! counter snapshots, with exact values.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::Victoria;

fn frame(ts: u64, speed: f64, door: &str, safety_ok: bool) -> (String, Vec<u8>) {
    testkit::Frame::new("E0001", ts)
        .floor(2)
        .in_door_zone(speed == 0.0)
        .speed(speed)
        .direction(if speed > 0.0 { "up" } else { "stop" })
        .door(door)
        .with("vibration_mps2", 0.1)
        .with("safety_circuit_ok", safety_ok)
        .message()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_snapshots_reach_the_server() {
    let vm = Victoria::start();
    let broker = free_port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", vm.port);
    // Event-time clock: the frontier follows the data, so windows close without waiting.
    let mut cw = Citywatch::start_with(
        "embedded",
        Some(broker),
        &dir.path().join("data"),
        &[
            "--influx-url",
            &url,
            "--influx-org",
            "bureau",
            "--influx-bucket",
            "city",
            "--clock",
            "event",
        ],
        &[
            ("CITYWATCH_INFLUX_TOKEN", "t0k3n"),
            ("CITYWATCH_INFLUX_BATCH_INTERVAL_MS", "50"),
            ("CITYWATCH_INFLUX_SNAPSHOT_INTERVAL_MS", "1000"),
        ],
    )
    .await;

    let t = now_ms() - now_ms() % 60_000 - 120_000;
    let sale = |ts: u64, price: f64| {
        msg(
            "cw/v1/market/M-JFB/scale/SC001/sale",
            json!({"ts": ts, "stall_id": "M-JFB-ST01", "goods_code": "pork", "weight_kg": 1.0, "unit_price": price, "total": price}).to_string(),
        )
    };
    let messages = vec![
        frame(t, 0.0, "open", true),
        frame(t + 1000, 0.0, "closed", true),
        frame(t + 2000, 1.0, "closed", true),
        frame(t + 3000, 1.5, "closed", true),
        frame(t + 4000, 0.0, "closed", true),
        frame(t + 5000, 0.0, "open", true),
        frame(t + 6000, 0.0, "closed", false),
        frame(t + 7000, 1.2, "closed", true),
        sale(t + 1000, 10.0),
        sale(t + 2000, 20.0),
        // Moves the event-time frontier past the first minute.
        frame(t + 80_000, 0.0, "closed", true),
    ];
    publish_all(broker, "influx-test", &messages).await;
    cw.acked(messages.len() as u64).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let (trips, goods) = loop {
        let trips = vm.export(r#"{__name__="elevator_10s_trips"}"#).await;
        let goods = vm
            .export(r#"{__name__="market_goods_1m_mean_unit_price"}"#)
            .await;
        if !trips.is_empty() && !goods.is_empty() {
            break (trips, goods);
        }
        assert!(
            Instant::now() < deadline,
            "no windows written: {}",
            cw.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(trips[0]["metric"]["elevator_id"], "E0001");
    assert_eq!(trips[0]["timestamps"][0], t);
    assert_eq!(trips[0]["values"][0], 2);
    let one = |name: &str| {
        let vm = &vm;
        let name = name.to_owned();
        async move { vm.export(&format!("{{__name__=\"{name}\"}}")).await[0]["values"][0].clone() }
    };
    assert_eq!(one("elevator_10s_frames").await, 8);
    assert_eq!(one("elevator_10s_max_speed_mps").await, 1.5);
    assert_eq!(one("elevator_10s_door_cycles").await, 1);
    assert_eq!(one("elevator_10s_fault_seconds").await, 1);
    assert_eq!(one("elevator_10s_mean_vibration_mps2").await, 0.1);
    assert_eq!(goods[0]["metric"]["market_id"], "M-JFB");
    assert_eq!(goods[0]["metric"]["goods_code"], "pork");
    assert_eq!(goods[0]["timestamps"][0], t);
    assert_eq!(goods[0]["values"][0], 15);
    assert_eq!(one("market_goods_1m_turnover_yuan").await, 30);

    // Snapshots follow their own interval, so the windows may be in before the first one.
    let registered = loop {
        let registered = vm
            .export(r#"{__name__="elevators_registered",district="yuzhong"}"#)
            .await;
        if !registered.is_empty() {
            break registered;
        }
        assert!(Instant::now() < deadline, "no counter snapshot written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        registered[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v == 60)
    );
    let metrics = cw.metrics().await;
    assert!(
        metrics.contains("citywatch_influx_points_dropped_total{where=\"queue\"} 0"),
        "{metrics}"
    );
    cw.stop();
}
