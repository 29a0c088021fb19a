//! A clean stop: it journals every incident it took (none is lost in the last moments), and
//! it is not the end of time (no absence clock runs out at the stop).

mod common;

use common::*;

/// Starts citywatch with the built-in rules on `data`, publishes one message through its
/// embedded broker, waits until it is taken, stops it with SIGTERM, and starts it again:
/// returns the alerts the journal holds then (the new start is too young to raise any).
async fn alerts_after_a_stop(topic: &str, payload: String) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let viewer = token(&data, "大屏", "viewer");
    let port = free_port();
    let mut cw = Citywatch::start_with("embedded", Some(port), &data, &[], &[]).await;
    publish_all(port, "device", &[msg(topic, payload)]).await;
    cw.acked(1).await;
    cw.stop();
    let cw = Citywatch::start_with("embedded", Some(port), &data, &[], &[]).await;
    get_as(&cw, &viewer, "/api/v1/alerts").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_raises_no_absence_alert_the_clock_has_not_reached() {
    // The sample district: 60 elevators and 19 cameras registered, one camera heard from; their
    // absence clocks run out in minutes, not at the stop.
    let alerts = alerts_after_a_stop(
        "cw/v1/kitchen/K-S01/camera/C1/heartbeat",
        format!("{{\"ts\":{},\"online\":true}}", now_ms()),
    )
    .await;
    assert_eq!(
        alerts,
        serde_json::json!([]),
        "alerts journaled at the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_taken_just_before_a_clean_stop_is_journaled() {
    // A one-shot critical event from a terminal, acknowledged to the broker, then SIGTERM at
    // once: inside the lateness, before the frontier has passed it.
    let alerts = alerts_after_a_stop(
        "cw/v1/elevator/E0001/event",
        format!("{{\"ts\":{},\"code\":\"trapped\"}}", now_ms()),
    )
    .await;
    let rules = rules_of(&alerts);
    assert_eq!(rules, ["elevator.reported_critical"], "{alerts}");
}
