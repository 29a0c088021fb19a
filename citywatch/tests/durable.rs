//! Acknowledged means durable: a message citywatch acknowledged to the broker reaches the
//! alert journal even when the process is killed before the frontier passed it, and a
//! message fed again after a crash raises no second alert.

mod common;

use common::*;
use serde_json::Value;

/// A lateness long enough that the checks between an acknowledgement and the kill run
/// inside it, whatever the machine's load.
const LATENESS: &str = "4000";

async fn start(port: u16, data: &std::path::Path) -> Citywatch {
    Citywatch::start_with(
        "embedded",
        Some(port),
        data,
        &["--lateness-ms", LATENESS],
        &[],
    )
    .await
}

/// Waits until the conditions are published past `t` (everything before it is journaled).
async fn journaled_past(cw: &Citywatch, t: u64) {
    poll_until(cw, "/api/v1/conditions", |c| {
        c["as_of"].as_u64().unwrap_or(0) > t
    })
    .await;
}

fn firings(detail: &Value) -> usize {
    detail["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["event"] == "firing")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_acknowledged_just_before_a_kill_is_journaled_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let viewer = token(&data, "大屏", "viewer");
    let port = free_port();
    let mut cw = start(port, &data).await;
    let ts = now_ms();
    publish_all(
        port,
        "terminal",
        &[msg(
            "cw/v1/elevator/E0001/event",
            format!("{{\"ts\":{ts},\"code\":\"trapped\"}}"),
        )],
    )
    .await;
    cw.acked(1).await;
    // Acknowledged, and not journaled yet: the frontier is a lateness behind.
    assert_eq!(
        get_as(&cw, &viewer, "/api/v1/alerts").await,
        Value::Array(vec![])
    );
    cw.kill_9();

    let mut cw = start(port, &data).await;
    let alerts = poll_until(&cw, "/api/v1/alerts", |a| {
        a.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["rule"], "elevator.reported_critical");
    assert_eq!(
        alerts[0]["since_ms"],
        ts - ts % 100,
        "judged at its own time"
    );
    let id = alerts[0]["id"].as_str().unwrap().to_owned();
    let detail = get_as(&cw, &viewer, &format!("/api/v1/alerts/{id}")).await;
    assert_eq!(firings(&detail), 1, "{detail}");
    let told = detail["notifications"].as_array().unwrap().len();
    assert!(told > 0, "its unit is told: {detail}");

    // Killed again at once, before the replay point could move past it: fed again at the
    // next start, and recognised as the episode the journal has.
    cw.kill_9();
    let restarted = now_ms();
    let cw = start(port, &data).await;
    journaled_past(&cw, restarted).await;
    let detail = get_as(&cw, &viewer, &format!("/api/v1/alerts/{id}")).await;
    assert_eq!(firings(&detail), 1, "one firing across restarts: {detail}");
    assert_eq!(
        detail["notifications"].as_array().unwrap().len(),
        told,
        "no second notification: {detail}"
    );
}

/// 60 elevators' frames and 360 one-shot critical events through Mosquitto; citywatch stopped
/// by `stop` once `acked` messages are acknowledged (part of the stream acknowledged, part in
/// flight, part still to come), and started again: every alert once, at its own time, and
/// every message counted once.
/// `exact`: every alert at its own time. Otherwise a message the broker still held at the stop
/// may come back after the restart behind the checkpoint's time (after a clean stop the last
/// checkpoint is at the newest event taken); it is then judged at the checkpoint's time (late,
/// by at most the lateness) until per-device timelines judge it on its device's own clock.
async fn a_stop_mid_stream_loses_no_alert_and_doubles_none(
    acked: u64,
    stop: impl FnOnce(&mut Citywatch),
    exact: bool,
) {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let viewer = token(&data, "大屏", "viewer");
    let mqtt = format!("mqtt://127.0.0.1:{}", broker.port);
    let args = ["--lateness-ms", LATENESS];
    // Checkpoints often, so the kill falls between two with messages after the last.
    let env = [("CITYWATCH_CHECKPOINT_EVERY_MS", "200")];
    let mut cw = Citywatch::start_with(&mqtt, None, &data, &args, &env).await;
    let (messages, expected) = incidents(now_ms(), 200);
    let published = messages.len() as i64;
    let publisher = tokio::spawn({
        let port = broker.port;
        async move { publish_all(port, "terminals", &messages).await }
    });
    cw.acked(acked).await;
    stop(&mut cw);
    let cw = Citywatch::start_with(&mqtt, None, &data, &args, &env).await;
    publisher.await.unwrap();
    let path = "/api/v1/alerts?rule=elevator.reported_critical&limit=1000";
    poll_until(&cw, path, |a| {
        a.as_array().is_some_and(|a| a.len() >= expected.len())
    })
    .await;
    // Past everything fed again and everything redelivered: a duplicate would show now.
    journaled_past(&cw, now_ms()).await;
    let alerts = get_as(&cw, &viewer, path).await;
    // Version 1: opened once, so notified once per receiver (one idempotency key each).
    let late_ms = if exact { 0 } else { LATENESS.parse().unwrap() };
    assert_each_alert_once(&alerts, &expected, late_ms);
    // Counted once each: restored from the checkpoint, the rest fed again from the log, and
    // redeliveries recognised.
    let counters = cw.counters_after(now_ms()).await;
    assert_eq!(messages_counted(&counters), published, "{counters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_early_in_a_stream_loses_no_alert_and_doubles_none() {
    a_stop_mid_stream_loses_no_alert_and_doubles_none(60, Citywatch::kill_9, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_stream_loses_no_alert_and_doubles_none() {
    a_stop_mid_stream_loses_no_alert_and_doubles_none(300, Citywatch::kill_9, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_late_in_a_stream_loses_no_alert_and_doubles_none() {
    a_stop_mid_stream_loses_no_alert_and_doubles_none(800, Citywatch::kill_9, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_mid_stream_loses_no_alert_and_doubles_none() {
    a_stop_mid_stream_loses_no_alert_and_doubles_none(300, Citywatch::stop, false).await;
}

/// A car stuck for ~3 s, then citywatch stopped by `stop` and started again, the car still
/// stuck: the alert's `since` is 6 s after the car first stopped, as if nothing had stopped
/// (the pending `for` came back from the checkpoint); without it, it would count from a
/// frame after the restart.
async fn stuck_across_a_stop(stop: impl FnOnce(&mut Citywatch)) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("stuck.toml"), STUCK_RULE).unwrap();
    let viewer = token(&data, "大屏", "viewer");
    let port = free_port();
    let args = ["--rules", rules.to_str().unwrap()];
    let env = [("CITYWATCH_CHECKPOINT_EVERY_MS", "200")];
    let mut cw = Citywatch::start_with("embedded", Some(port), &data, &args, &env).await;
    let t0 = now_ms();
    for i in 0..7u64 {
        publish_all(port, "terminal", &[stuck(t0 + i * 500)]).await;
        let wait = (t0 + (i + 1) * 500).saturating_sub(now_ms());
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    }
    cw.acked(7).await;
    stop(&mut cw);
    let cw = Citywatch::start_with("embedded", Some(port), &data, &args, &env).await;
    publish_all(port, "terminal", &[stuck(now_ms())]).await;
    poll_until(&cw, "/api/v1/alerts", |a| {
        a.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let alerts = get_as(&cw, &viewer, "/api/v1/alerts").await;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["rule"], "test.stuck");
    assert_eq!(alerts[0]["since_ms"], t0 - t0 % 100 + 6000, "{alerts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_for_pending_at_a_clean_stop_runs_out_on_time_after_the_restart() {
    stuck_across_a_stop(|cw| cw.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_for_pending_at_a_kill_runs_out_on_time_after_the_restart() {
    stuck_across_a_stop(|cw| {
        // Past a periodic checkpoint that holds the first frames: the rest are fed again
        // from the input log.
        std::thread::sleep(std::time::Duration::from_millis(600));
        cw.kill_9()
    })
    .await;
}
