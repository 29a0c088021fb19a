//! A stop is not the end of time: a clean stop journals no alert whose time the wall clock
//! has not reached (the absence clocks of a district's devices keep running, they do not all
//! run out at the stop).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_raises_no_absence_alert_the_clock_has_not_reached() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let viewer = token(&data, "大屏", "viewer");
    // The sample district with the built-in rules: 60 elevators and 19 cameras registered, none
    // of them heard from; their absence clocks start now and run out in minutes.
    let port = free_port();
    let mut cw = Citywatch::start_with("embedded", Some(port), &data, &[], &[]).await;
    let t = now_ms();
    publish_all(
        port,
        "camera-C1",
        &[msg(
            "cw/v1/kitchen/K-S01/camera/C1/heartbeat",
            format!("{{\"ts\":{t},\"online\":true}}"),
        )],
    )
    .await;
    cw.acked(1).await;
    cw.stop();
    let log = std::fs::read_to_string(&cw.log).unwrap();
    assert!(!log.contains("alert firing"), "{log}");

    // What the journal holds, read by the next start (itself too young to raise anything).
    let cw = Citywatch::start_with("embedded", Some(port), &data, &[], &[]).await;
    let alerts = get_as(&cw, &viewer, "/api/v1/alerts").await;
    assert_eq!(
        alerts,
        serde_json::json!([]),
        "alerts journaled at the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_taken_just_before_a_clean_stop_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let viewer = token(&data, "大屏", "viewer");
    let port = free_port();
    let mut cw = Citywatch::start_with("embedded", Some(port), &data, &[], &[]).await;
    // A one-shot critical event from a terminal, acknowledged to the broker, then SIGTERM at
    // once: inside the lateness, before the frontier has passed it.
    let t = now_ms();
    publish_all(
        port,
        "elevator-E0001",
        &[msg(
            "cw/v1/elevator/E0001/event",
            format!("{{\"ts\":{t},\"code\":\"trapped\"}}"),
        )],
    )
    .await;
    cw.acked(1).await;
    cw.stop();

    let cw = Citywatch::start_with("embedded", Some(port), &data, &[], &[]).await;
    let alerts = get_as(&cw, &viewer, "/api/v1/alerts").await;
    let rules: Vec<&str> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["elevator.reported_critical"], "{alerts}");
}
