//! MQTT in, counters out: every contract topic and every class of bad input, through a real
//! broker (Mosquitto, and the embedded one) into the running binary.

mod common;

use common::*;
use serde_json::{Value, json};

/// Valid messages of every contract topic (timed `now`), one untimed heartbeat.
fn valid(now: u64) -> Vec<(String, Vec<u8>)> {
    let frame = |id: &str| {
        msg(
            &format!("cw/v1/elevator/{id}/status"),
            json!({"ts": now, "floor": 3, "in_door_zone": true, "speed_mps": 0.0, "direction": "stop", "door": "closed"}).to_string(),
        )
    };
    let sale = |m: &str, s: &str, stall: &str, total: f64| {
        msg(
            &format!("cw/v1/market/{m}/scale/{s}/sale"),
            json!({"ts": now, "stall_id": stall, "goods_code": "pork", "weight_kg": 1.0, "unit_price": total, "total": total}).to_string(),
        )
    };
    let complaint = |id: &str, merchant: Option<&str>| {
        let mut c =
            json!({"ts": now, "complaint_id": id, "merchant_name": "某商户", "category": "price"});
        if let Some(m) = merchant {
            c["merchant_id"] = json!(m);
        }
        msg("cw/v1/complaint/new", c.to_string())
    };
    vec![
        frame("E0001"),
        frame("E0002"),
        frame("X-UNREG"),
        msg("cw/v1/elevator/E0001/event", json!({"ts": now, "code": "93", "floor": 3}).to_string()),
        sale("M-JFB", "SC001", "M-JFB-ST01", 45.0),
        sale("M-JFB", "SC002", "M-JFB-ST02", 12.5),
        sale("M-DP", "SC011", "M-DP-ST01", 3.3),
        msg("cw/v1/market/M-JFB/scale/SC001/check", json!({"ts": now, "reference_kg": 1.0, "measured_kg": 0.99}).to_string()),
        msg("cw/v1/market/M-JFB/residue", json!({"ts": now, "stall_id": "M-JFB-ST01", "goods_code": "cabbage", "inhibition_pct": 12.0}).to_string()),
        msg("cw/v1/kitchen/K-S01/camera/C1/detection", json!({"ts": now, "kind": "rodent", "confidence": 0.9}).to_string()),
        msg("cw/v1/kitchen/K-S01/camera/C2/heartbeat", json!({"ts": now, "online": true}).to_string()),
        msg("cw/v1/kitchen/K-R01/camera/C1/heartbeat", json!({"online": true}).to_string()),
        complaint("C-1", Some("MER001")),
        complaint("C-1", Some("MER001")),
        complaint("C-2", Some("MER-NOT-REGISTERED")),
        complaint("C-3", None),
        msg("cw/v1/complaint/C-1/status", json!({"ts": now, "status": "accepted", "office": "O-JFB"}).to_string()),
    ]
}

/// One message of every reason class, in `Reason::ALL` order.
fn invalid(now: u64) -> Vec<(String, Vec<u8>)> {
    vec![
        msg("cw/v1/elevator/E0003/status", "{not json"),
        msg("cw/v1/elevator/E0003/status", "[1,2,3]"),
        msg("cw/v1/elevator/E0003/telemetry", "{}"),
        msg("cw/v1/elevator/E$0003/status", json!({"ts": now}).to_string()),
        msg("cw/v1/elevator/E0003/event", json!({"ts": now}).to_string()),
        msg("cw/v1/elevator/E0003/status", json!({"ts": now, "floor": 3, "in_door_zone": true, "speed_mps": "fast", "direction": "stop", "door": "closed"}).to_string()),
        msg("cw/v1/market/M-JFB/residue", json!({"ts": now, "stall_id": "S", "goods_code": "g", "inhibition_pct": 140}).to_string()),
        msg("cw/v1/kitchen/K-S01/camera/C1/heartbeat", json!({"ts": now - 2 * 86_400_000u64, "online": true}).to_string()),
        msg("cw/v1/complaint/new", format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000))),
    ]
}

const REASONS: [&str; 9] = [
    "not_json",
    "not_object",
    "unknown_topic",
    "bad_id",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "ts_skew",
    "too_large",
];

fn sum(items: &Value, filter: impl Fn(&Value) -> bool, field: &str) -> f64 {
    items
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| filter(v))
        .map(|v| v[field].as_f64().unwrap())
        .sum()
}

async fn check_everything(cw: &Citywatch, broker_port: u16) {
    let now = now_ms();
    let valid = valid(now);
    let invalid = invalid(now);
    // Interleave bad input with the valid messages: nothing valid around it may be lost.
    let mut all = Vec::new();
    for (i, m) in valid.iter().enumerate() {
        all.push(m.clone());
        if let Some(bad) = invalid.get(i) {
            all.push(bad.clone());
        }
    }
    publish_all(broker_port, "test-publisher", &all).await;
    // Once everything is acknowledged, every event is in the dataflow with a time before `t`.
    let t = cw.acked(all.len() as u64).await;
    let c = cw.counters_after(t).await;

    let e = &c["elevators"];
    assert_eq!(
        (
            e["registered"].as_i64(),
            e["online"].as_i64(),
            e["offline"].as_i64()
        ),
        (Some(60), Some(2), Some(58)),
        "{e}"
    );
    assert_eq!(e["unregistered_online"], 1);
    let cams = &c["cameras"]["by_venue_type"];
    let cam = |venue: &str, field: &str| sum(cams, |v| v["venue_type"] == venue, field);
    assert_eq!(
        (cam("school", "registered"), cam("school", "online")),
        (9.0, 2.0)
    );
    assert_eq!(
        (cam("restaurant", "registered"), cam("restaurant", "online")),
        (6.0, 1.0)
    );
    assert_eq!(cam("canteen", "online"), 0.0);

    let markets = &c["markets"]["per_minute"];
    assert_eq!(
        sum(markets, |v| v["market"] == "M-JFB", "turnover_yuan"),
        57.5
    );
    assert_eq!(sum(markets, |v| v["market"] == "M-JFB", "sales"), 2.0);
    assert_eq!(
        sum(markets, |v| v["market"] == "M-DP", "turnover_yuan"),
        3.3
    );

    let complaints = &c["complaints"];
    assert_eq!(complaints["received_today"], 3, "{complaints}");
    assert_eq!(complaints["duplicates_today"], 1);
    let office = |o: &str| {
        sum(
            &complaints["by_office"],
            |v| v["office"] == o,
            "received_today",
        )
    };
    assert_eq!((office("O-JFB"), office("unrouted")), (1.0, 2.0));

    let per_minute = &c["messages"]["per_minute"];
    let stream = |s: &str| sum(per_minute, |v| v["stream"] == s, "count");
    for (s, n) in [
        ("elevator_status", 3.0),
        ("elevator_event", 1.0),
        ("market_sale", 3.0),
        ("market_check", 1.0),
        ("market_residue", 1.0),
        ("kitchen_detection", 1.0),
        ("kitchen_heartbeat", 2.0),
        ("complaint_new", 4.0),
        ("complaint_status", 1.0),
    ] {
        assert_eq!(stream(s), n, "{s}: {per_minute}");
    }
    assert_eq!(c["messages"]["untimed"]["kitchen_heartbeat"], 1);

    let dl = cw.get("/api/v1/deadletters?limit=100").await;
    let mut reasons: Vec<String> = dl["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.reverse();
    assert_eq!(reasons, REASONS);
    let wrong = cw.get("/api/v1/deadletters?reason=wrong_type").await;
    assert_eq!(wrong["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        wrong["items"][0]["message"],
        "field \"speed_mps\" in cw/v1/elevator/E0003/status: expected a number, got \"fast\""
    );
    assert_eq!(wrong["items"][0]["field"], "speed_mps");
    let bad = reqwest::get(cw.url("/api/v1/deadletters?reason=nonsense"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["field"], "reason");

    let metrics = cw.metrics().await;
    assert!(
        metrics.contains("citywatch_messages_total{stream=\"elevator_status\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("citywatch_deadletters_total{reason=\"too_large\"} 1"));
    assert!(metrics.contains("citywatch_mqtt_connection_state{state=\"subscribed\"} 1"));
    assert!(metrics.contains(&format!("citywatch_mqtt_acks_total {}", all.len())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_and_every_bad_input_through_mosquitto() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cw = Citywatch::start(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        None,
        &dir.path().join("data"),
    )
    .await;
    check_everything(&cw, broker.port).await;
    cw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_through_the_embedded_broker() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut cw = Citywatch::start("embedded", Some(port), &dir.path().join("data")).await;
    check_everything(&cw, port).await;
    check_sse(&cw).await;
    cw.stop();
}

/// The SSE stream starts with the current snapshot and then follows the frontier.
async fn check_sse(cw: &Citywatch) {
    use futures_util::StreamExt;
    let resp = reqwest::get(cw.url("/api/v1/counters/stream"))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut snapshots: Vec<Value> = Vec::new();
    while snapshots.len() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                assert!(event.contains("event: counters"), "{event}");
                snapshots.push(serde_json::from_str(data.trim()).unwrap());
            }
        }
    }
    assert_eq!(snapshots[0]["elevators"]["registered"], 60);
    assert!(snapshots[1]["as_of"].as_u64() > snapshots[0]["as_of"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_down_are_counted_exactly_once_after_restart() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);

    // First run establishes the persistent session, then stops cleanly.
    let mut cw = Citywatch::start(&url, None, &data).await;
    let now = now_ms();
    let before: Vec<_> = (0..50)
        .map(|i| {
            msg(
                &format!("cw/v1/kitchen/K-S01/camera/C{}/heartbeat", 1 + i % 3),
                json!({"ts": now, "online": true}).to_string(),
            )
        })
        .collect();
    publish_all(broker.port, "before", &before).await;
    cw.acked(50).await;
    cw.stop();

    // While citywatch is down, the broker keeps what is published for its session.
    let now = now_ms();
    let during: Vec<_> = (0..500)
        .map(|i| {
            let id = format!("E{:04}", 1 + i % 60);
            msg(
                &format!("cw/v1/elevator/{id}/status"),
                json!({"ts": now + i as u64, "floor": 1, "in_door_zone": true, "speed_mps": 0.0, "direction": "stop", "door": "closed"}).to_string(),
            )
        })
        .collect();
    publish_all(broker.port, "during", &during).await;

    let mut cw = Citywatch::start(&url, None, &data).await;
    let t = cw.acked(500).await;
    let c = cw.counters_after(t.max(now + 500)).await;
    let per_minute = &c["messages"]["per_minute"];
    assert_eq!(
        sum(per_minute, |v| v["stream"] == "elevator_status", "count"),
        500.0,
        "{per_minute}"
    );
    assert_eq!(c["elevators"]["online"], 60);
    let metrics = cw.metrics().await;
    assert!(
        metrics.contains("citywatch_messages_total{stream=\"elevator_status\"} 500"),
        "{metrics}"
    );
    cw.stop();
}

/// Complaints are kept on disk (the complaint log) and fed again at start: the open ones are
/// still open after a restart, and their handling clocks run on.
/// C1 received, C2 accepted by O-JFB: the list, its filters and its paging. Returns the list.
async fn check_complaint_list(cw: &Citywatch, now: u64) -> Value {
    let ids = async |query: &str| -> Vec<String> {
        let page = cw.get(&format!("/api/v1/complaints{query}")).await;
        page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {page}"))
            .iter()
            .map(|c| c["complaint_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = cw.get("/api/v1/complaints").await;
    assert_eq!(all["total"], 2, "{all}");
    // Soonest due first: C1's decision (7 working days) before C2's mediation (45).
    let (c1, c2) = (&all["items"][0], &all["items"][1]);
    assert_eq!(
        (c1["complaint_id"].clone(), c2["complaint_id"].clone()),
        (json!("C1"), json!("C2"))
    );
    assert_eq!(
        (c1["state"].clone(), c1["open"].clone()),
        (json!("received"), json!(true))
    );
    assert_eq!(c1["due_ms"], c1["decision_due_ms"]);
    assert!(c1["working_days_left"].as_i64().unwrap() >= 6, "{c1}");
    assert!(c1["decision_due_ms"].as_u64().unwrap() > now);
    assert_eq!(c2["state"], "accepted");
    assert_eq!(c2["office"], "O-JFB");
    assert_eq!(c2["due_ms"], c2["mediation_due_ms"]);
    assert_eq!(c2["statuses"][0]["status"], "accepted");
    assert_eq!(ids("?state=received").await, ["C1"]);
    assert_eq!(ids("?state=open&office=O-JFB").await, ["C2"]);
    assert_eq!(ids("?merchant=王记").await, ["C1", "C2"]);
    assert_eq!(
        ids(&format!("?due_before={now}")).await,
        Vec::<String>::new()
    );
    let page = cw.get("/api/v1/complaints?limit=1&offset=1").await;
    assert_eq!(
        (
            page["total"].clone(),
            page["items"][0]["complaint_id"].clone()
        ),
        (json!(2), json!("C2"))
    );
    let bad = reqwest::get(cw.url("/api/v1/complaints?state=lost"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_complaints_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut cw = Citywatch::start("embedded", Some(port), &data).await;
    let now = now_ms();
    let complaint = |id: &str| {
        msg(
            "cw/v1/complaint/new",
            json!({"ts": now, "complaint_id": id, "merchant_id": "MER001", "merchant_name": "王记蔬菜摊", "category": "price"})
                .to_string(),
        )
    };
    let accepted = msg(
        "cw/v1/complaint/C2/status",
        json!({"ts": now + 1, "status": "accepted", "office": "O-JFB"}).to_string(),
    );
    publish_all(port, "12315", &[complaint("C1"), complaint("C2"), accepted]).await;
    cw.acked(3).await;
    let complaints = |c: &Value| {
        (
            c["complaints"]["received_today"].as_i64(),
            c["complaints"]["open"].as_i64(),
            c["complaints"]["decided"].as_i64(),
        )
    };
    let before = cw.counters_after(now + 1).await;
    assert_eq!(complaints(&before), (Some(2), Some(1), Some(1)), "{before}");
    let listed = check_complaint_list(&cw, now).await;
    cw.stop();

    let mut cw = Citywatch::start("embedded", Some(port), &data).await;
    let after = cw.counters_after(now_ms()).await;
    assert_eq!(complaints(&after), (Some(2), Some(1), Some(1)), "{after}");
    assert_eq!(
        cw.get("/api/v1/complaints").await,
        listed,
        "the list comes back from the complaint log"
    );
    // Restored, not received again.
    let metrics = cw.metrics().await;
    assert!(
        metrics.contains("citywatch_messages_total{stream=\"complaint_new\"} 0"),
        "{metrics}"
    );
    cw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_with_an_event_stream_open() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut cw = Citywatch::start("embedded", Some(port), &dir.path().join("data")).await;
    let resp = reqwest::get(cw.url("/api/v1/counters/stream"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The stream stays open while citywatch is asked to stop: it must still exit, cleanly.
    let stopped = tokio::task::spawn_blocking(move || cw.stop());
    tokio::time::timeout(std::time::Duration::from_secs(30), stopped)
        .await
        .expect("citywatch stopped in time")
        .unwrap();
    drop(resp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_residue_hold_shows_its_tests_outlives_a_restart_and_ends_at_a_passing_test() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    // The built-in pack: a positive test and two positive re-tests put the goods on hold.
    let start = async || Citywatch::start_with("embedded", Some(port), &data, &[], &[]).await;
    let mut cw = start().await;
    let now = now_ms();
    let test = |ts: u64, pct: f64| {
        msg(
            "cw/v1/market/M-JFB/residue",
            json!({"ts": ts, "stall_id": "M-JFB-ST01", "goods_code": "cabbage", "inhibition_pct": pct})
                .to_string(),
        )
    };
    let other = msg(
        "cw/v1/market/M-JFB/residue",
        json!({"ts": now, "stall_id": "M-JFB-ST02", "goods_code": "spinach", "inhibition_pct": 10.0})
            .to_string(),
    );
    publish_all(
        port,
        "market-lab",
        &[
            test(now, 62.0),
            test(now + 1, 58.0),
            test(now + 2, 71.0),
            other,
        ],
    )
    .await;
    let the_hold = |v: &Value| {
        v.as_array()
            .and_then(|h| h.iter().find(|h| h["status"] == "hold"))
            .cloned()
    };
    let on_hold = |v: &Value| the_hold(v).is_some();
    let hold = the_hold(&poll_until(&cw, "/api/v1/holds", on_hold).await).unwrap();
    assert_eq!(
        (
            hold["market_id"].clone(),
            hold["stall_id"].clone(),
            hold["goods_code"].clone()
        ),
        (json!("M-JFB"), json!("M-JFB-ST01"), json!("cabbage"))
    );
    // The third positive decides it (at the dataflow's 100-ms tick).
    let since = hold["since_ms"].as_u64().unwrap();
    assert!(since <= now + 2 && since + 100 > now + 2, "{hold}");
    let tests: Vec<(u64, &str)> = hold["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["ts"].as_u64().unwrap(), t["result"].as_str().unwrap()))
        .collect();
    assert_eq!(tests, [(now, "fail"), (now + 1, "fail"), (now + 2, "fail")]);
    assert_eq!(
        cw.get("/api/v1/holds?market=M-DP").await,
        json!([]),
        "another market's"
    );
    let tested = |v: &Value| v["markets"]["residue_tests_today"].as_u64();
    poll_until(&cw, "/api/v1/counters", |v| tested(v) == Some(4)).await;
    cw.stop();

    // After a restart: the hold (from the checkpoint) with its tests (from the log).
    let mut cw = start().await;
    let back = the_hold(&poll_until(&cw, "/api/v1/holds", on_hold).await).unwrap();
    assert_eq!(back["since_ms"], since);
    assert_eq!(back["tests"], hold["tests"], "{back}");
    let counters = cw.counters_after(now_ms()).await;
    assert_eq!(tested(&counters), Some(4), "tests counted once: {counters}");

    // A passing test of the same stall and goods ends it.
    publish_all(port, "market-lab", &[test(now_ms(), 12.0)]).await;
    poll_until(&cw, "/api/v1/holds", |v| v == &json!([])).await;
    cw.stop();
}
