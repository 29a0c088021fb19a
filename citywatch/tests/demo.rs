//! `citywatch demo`: a newcomer sees counters moving and alerts firing within seconds.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_live_district_with_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let broker = free_port();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_citywatch"))
        .current_dir(&root)
        .args([
            "demo",
            "--http",
            &format!("127.0.0.1:{http}"),
            "--embedded-broker-addr",
            &format!("127.0.0.1:{broker}"),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--incident-every", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{http}{p}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (counters, conditions) = loop {
        let get = |p: String| async move {
            reqwest::get(p)
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
        };
        if let (Some(c), Some(a)) = (
            get(url("/api/v1/counters")).await,
            get(url("/api/v1/conditions")).await,
        ) && c["elevators"]["online"].as_i64() > Some(0)
            && !a["conditions"].as_array().is_none_or(|v| v.is_empty())
        {
            break (c, a);
        }
        assert!(
            Instant::now() < deadline,
            "no live district with alerts within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(counters["elevators"]["registered"], 60);
    let first = &conditions["conditions"][0];
    let truth = std::fs::read_to_string(dir.path().join("data/demo-ground-truth.jsonl")).unwrap();
    // The first incident injected is a rodent in a kitchen; the hazard rule found it.
    assert!(
        truth
            .lines()
            .next()
            .unwrap()
            .contains("\"rule\":\"kitchen.hazard\""),
        "{truth}"
    );
    assert_eq!(first["rule"], "kitchen.hazard", "{conditions}");
    // A diner's food-safety complaint was made beside that kitchen: the two sources are one
    // incident.
    let deadline = Instant::now() + Duration::from_secs(30);
    let incident = loop {
        let list: serde_json::Value = reqwest::get(url("/api/v1/incidents"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(i) = list
            .as_array()
            .and_then(|a| a.iter().find(|i| i["rule"] == "incident.kitchen"))
        {
            break i.clone();
        }
        assert!(Instant::now() < deadline, "no kitchen incident: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = incident["id"].as_str().unwrap();
    let detail: serde_json::Value = reqwest::get(url(&format!("/api/v1/incidents/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = detail["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["alert", "complaint"], "{detail}");
    assert!(
        truth
            .lines()
            .next()
            .unwrap()
            .contains("\"incident\":\"incident.kitchen\""),
        "{truth}"
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());
}
