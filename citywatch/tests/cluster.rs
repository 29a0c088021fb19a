//! citywatch as a timely cluster over Mosquitto: two and three processes on loopback, fed
//! through a shared subscription, give the counters and alerts of one process, each alert
//! notified once; a cluster restarted as a whole mid-stream loses no message and no alert, nor
//! does one whose process is killed (each process keeps its own input log).

mod common;

use common::{
    Citywatch, Mosquitto, assert_each_alert_once, default_rules, free_port, incidents, msg,
    publish_all,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Event times start here: a whole hour two to three hours ago (so that the stream lies within
/// one local day), the same for every run of a test process (the event clock drives the
/// frontier; devices' clocks may be a day off at most).
static T0: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| (common::now_ms() - 2 * 3_600_000) / 3_600_000 * 3_600_000);

/// After every event of the stream: the tail's time, which closes everything before it.
fn t_end() -> u64 {
    *T0 + 120_000
}

fn frame(elevator: &str, ts: u64, alarm: bool) -> (String, Vec<u8>) {
    let mut f = json!({"ts": ts, "floor": 3, "in_door_zone": !alarm, "speed_mps": if alarm { 0.0 } else { 1.0 },
        "direction": if alarm { "stop" } else { "up" }, "door": "closed", "occupied": true});
    if alarm {
        f["alarm_button"] = json!(true);
    }
    msg(&format!("cw/v1/elevator/{elevator}/status"), f.to_string())
}

/// 60 s of a district in event-time order, with incidents: trapped passengers, a rodent and
/// smoking, sales above the guidance price, a burst of complaints about one merchant (a
/// merchant of O-JFB, complained about at a place in O-CTM's jurisdiction: routed to O-CTM only
/// by a process that has the jurisdictions). Only the part in `from..to` (seconds).
fn stream(from: u64, to: u64) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for tenth in from * 10..to * 10 {
        let ts = *T0 + tenth * 100;
        // Every elevator reports every 6 s.
        let e = tenth % 60 + 1;
        let trapped = matches!((e, tenth / 60), (5, 2) | (17, 5) | (42, 8));
        out.push(frame(&format!("E{e:04}"), ts, trapped));
        match tenth % 50 {
            10 => out.push(msg(
                &format!("cw/v1/kitchen/K-R0{}/camera/C1/detection", tenth / 50 % 3 + 1),
                json!({"ts": ts, "kind": if tenth % 200 == 10 { "rodent" } else { "smoking" }, "confidence": 0.9,
                    "snapshot": format!("snap/{tenth}.jpg")})
                .to_string(),
            )),
            20 => out.push(msg(
                "cw/v1/market/M-DP/scale/SC011/sale",
                json!({"ts": ts, "stall_id": "M-DP-ST01", "goods_code": "pork", "weight_kg": 1.0, "unit_price": 40.0, "total": 40.0})
                    .to_string(),
            )),
            30 => out.push(msg(
                "cw/v1/complaint/new",
                json!({"ts": ts, "complaint_id": format!("C{tenth}"), "merchant_id": "MER002",
                    "merchant_name": "李记禽蛋摊", "category": "price", "lat": 29.55, "lon": 106.58})
                .to_string(),
            )),
            _ => {}
        }
    }
    out
}

/// Heartbeats at `T_END`, enough that every process of the share group receives some, so
/// that every process's frontier passes the stream.
fn tail() -> Vec<(String, Vec<u8>)> {
    (0..12)
        .map(|i| {
            msg(
                &format!("cw/v1/kitchen/K-C01/camera/C{}/heartbeat", i % 2 + 1),
                json!({"ts": t_end(), "online": true}).to_string(),
            )
        })
        .collect()
}

/// A cluster of `n` processes (one process when `n` is 1) on `broker`, each with its data dir
/// under `dir`. The hosts file is written on the first start and read again on a restart, so
/// that a restarted cluster has the same addresses.
fn spawn_cluster(n: usize, broker: u16, dir: &Path) -> Vec<Citywatch> {
    let hosts = dir.join("hosts.txt");
    if !hosts.exists() {
        let lines: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{} http://127.0.0.1:{}", free_port(), free_port()))
            .collect();
        std::fs::write(&hosts, lines.join("\n")).unwrap();
    }
    let https: Vec<SocketAddr> = std::fs::read_to_string(&hosts)
        .unwrap()
        .lines()
        .map(|l| l.split("http://").nth(1).unwrap().parse().unwrap())
        .collect();
    let rules = default_rules();
    let empty = dir.join("no-reference");
    std::fs::create_dir_all(&empty).unwrap();
    (0..n)
        .map(|i| {
            let (processes, index) = (n.to_string(), i.to_string());
            let mut args = vec![
                "--rules",
                rules.to_str().unwrap(),
                "--clock",
                "event",
                "--workers",
                "1",
            ];
            // Only process 0 has the district's reference data: the others judge by what it
            // sends them through the dataflow.
            if i > 0 {
                args.extend(["--reference", empty.to_str().unwrap()]);
            }
            if n > 1 {
                args.extend([
                    "--processes",
                    &processes,
                    "--process-index",
                    &index,
                    "--hosts",
                    hosts.to_str().unwrap(),
                ]);
            }
            Citywatch::spawn(
                https[i],
                &format!("mqtt://127.0.0.1:{broker}"),
                None,
                &dir.join(format!("data-{i}")),
                &args,
                &[],
            )
        })
        .collect()
}

/// Messages a process has received since it started (its `/metrics`).
async fn received(p: &Citywatch) -> u64 {
    p.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("citywatch_messages_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Messages the cluster has acknowledged to the broker.
async fn acked(cluster: &[Citywatch]) -> u64 {
    let mut sum = 0;
    for p in cluster {
        sum += p
            .metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix("citywatch_mqtt_acks_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    sum
}

/// Stops every process together, as a service manager stops a cluster: each exits cleanly.
fn stop_all(cluster: &mut [Citywatch]) {
    for p in cluster.iter_mut() {
        p.signal_term();
    }
    for p in cluster.iter_mut() {
        p.wait_success();
    }
}

async fn ready(cluster: &[Citywatch]) {
    for p in cluster {
        p.ready().await;
    }
}

/// What a run ends with: the counters, every alert (rule, group, state), the kitchen alerts'
/// evidence images, and the notifications per (rule, group, receiver, version).
#[derive(Debug, PartialEq)]
struct Outcome {
    counters: Value,
    alerts: BTreeSet<(String, String, String)>,
    evidence: BTreeMap<(String, String), String>,
    notifications: BTreeMap<(String, String, String, u64), usize>,
}

async fn outcome(leader: &Citywatch) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counters = loop {
        let c = leader.get("/api/v1/counters").await;
        if c["as_of"].as_u64().unwrap_or(0) >= t_end() - 1000 {
            break c;
        }
        assert!(Instant::now() < deadline, "the stream never closed: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    counters.as_object_mut().unwrap().remove("as_of");
    let alerts: Vec<Value> =
        serde_json::from_value(leader.get("/api/v1/alerts?limit=1000").await).unwrap();
    let by_id: BTreeMap<String, (String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                (
                    a["rule"].as_str().unwrap().to_owned(),
                    a["group"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    // Every notification is written with its transition: by the time the alerts are read,
    // those of the closed stream are all there.
    let rows: Vec<Value> =
        serde_json::from_value(leader.get("/api/v1/notifications?limit=1000").await).unwrap();
    let mut notifications = BTreeMap::new();
    for n in &rows {
        let (rule, group) = by_id[n["alert_id"].as_str().unwrap()].clone();
        let key = (
            rule,
            group,
            n["receiver_id"].as_str().unwrap().to_owned(),
            n["version"].as_u64().unwrap(),
        );
        *notifications.entry(key).or_default() += 1;
    }
    let evidence = alerts
        .iter()
        .filter_map(|a| {
            let snapshot = a["body"]["evidence"]["snapshot"].as_str()?;
            Some((
                (
                    a["rule"].as_str()?.to_owned(),
                    a["group"].as_str()?.to_owned(),
                ),
                snapshot.to_owned(),
            ))
        })
        .collect();
    Outcome {
        counters,
        evidence,
        alerts: alerts
            .iter()
            .map(|a| {
                (
                    a["rule"].as_str().unwrap().to_owned(),
                    a["group"].as_str().unwrap().to_owned(),
                    a["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        notifications,
    }
}

async fn run(n: usize, messages: &[(String, Vec<u8>)]) -> Outcome {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = spawn_cluster(n, broker.port, dir.path());
    ready(&cluster).await;
    publish_all(broker.port, "devices", messages).await;
    publish_all(broker.port, "devices-tail", &tail()).await;
    let out = outcome(&cluster[0]).await;
    if n > 1 {
        // Another process sends API calls to process 0 and shows the cluster in its probes.
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(cluster[n - 1].url("/api/v1/alerts"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 307);
        assert_eq!(
            r.headers()["location"].to_str().unwrap(),
            cluster[0].url("/api/v1/alerts")
        );
        let ready = cluster[n - 1].get("/readyz").await;
        assert_eq!(
            ready["cluster"],
            json!({"processes": n, "index": n - 1, "formed": true})
        );
    }
    stop_all(&mut cluster);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_three_processes_give_the_results_of_one() {
    let messages = stream(0, 60);
    let one = run(1, &messages).await;
    // The stream did what it should, so the comparison means something.
    let rules: BTreeSet<&str> = one.alerts.iter().map(|a| a.0.as_str()).collect();
    for rule in [
        "elevator.trapped_alarm",
        "kitchen.hazard",
        "kitchen.smoking",
        "market.over_guidance",
        "complaint.group_risk",
    ] {
        assert!(rules.contains(rule), "no {rule} alert: {:?}", one.alerts);
    }
    assert_eq!(
        one.counters["complaints"]["by_office"],
        json!([{"office": "O-CTM", "received_today": 12, "open": 12, "decided": 0,
            "decided_on_time": 0, "on_time_rate": null}]),
        "complaints are routed by the jurisdiction of their place"
    );
    assert_eq!(
        one.evidence.len(),
        6,
        "every kitchen alert shows its image: {:?}",
        one.evidence
    );
    assert!(!one.notifications.is_empty());
    assert!(
        one.notifications.values().all(|&n| n == 1),
        "a notification sent twice: {:?}",
        one.notifications
    );
    let two = run(2, &messages).await;
    assert_eq!(two, one, "two processes differ from one");
    let three = run(3, &messages).await;
    assert_eq!(three, one, "three processes differ from one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_restarted_mid_stream_loses_nothing() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    // The first 30 s, then the cluster stops; the next 30 s are published while it is down
    // (they wait in the processes' sessions); it starts again on the same state.
    let mut cluster = spawn_cluster(2, broker.port, dir.path());
    ready(&cluster).await;
    let (before, during, tail) = (stream(0, 30), stream(30, 60), tail());
    publish_all(broker.port, "devices", &before).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_life = 0;
    while first_life < before.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "{first_life} of {} received",
            before.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        first_life = received(&cluster[0]).await + received(&cluster[1]).await;
    }
    stop_all(&mut cluster);
    publish_all(broker.port, "devices", &during).await;
    let mut cluster = spawn_cluster(2, broker.port, dir.path());
    ready(&cluster).await;
    publish_all(broker.port, "devices-tail", &tail).await;
    let out = outcome(&cluster[0]).await;

    // Every message reached one process: those of the first life, and those published while
    // the cluster was down, from the sessions the broker kept.
    let second_life = received(&cluster[0]).await + received(&cluster[1]).await;
    assert_eq!(
        first_life + second_life,
        (before.len() + during.len() + tail.len()) as u64
    );
    // Every trapped passenger has one alert: the one before the stop, and the two while the
    // cluster was down.
    let trapped: Vec<&str> = out
        .alerts
        .iter()
        .filter(|a| a.0 == "elevator.trapped_alarm")
        .map(|a| a.1.as_str())
        .collect();
    assert_eq!(trapped, ["E0005", "E0017", "E0042"], "{:?}", out.alerts);
    assert!(
        out.notifications.values().all(|&n| n == 1),
        "a notification sent twice: {:?}",
        out.notifications
    );
    stop_all(&mut cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_process_ends_the_others_for_a_restart() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = spawn_cluster(2, broker.port, dir.path());
    ready(&cluster).await;
    cluster[1].kill_9();
    // Process 0 cannot go on without process 1's worker: it exits with 70 for its service
    // manager to restart it, rather than looking alive without a dataflow.
    assert_eq!(cluster[0].wait_code(), Some(70));
    let log = std::fs::read_to_string(&cluster[0].log).unwrap();
    assert!(log.contains("the dataflow failed"), "{log}");
}

/// One-shot incidents among frames over 20 s of event time; process `killed` is killed with
/// SIGKILL once the cluster has acknowledged 300 messages (the other then exits, 70), both
/// start again: every alert journaled once (version 1: one notification per receiver), at its
/// own time or, for a message the broker redelivered behind the restarted frontier, within
/// the lateness of it.
async fn a_process_killed_mid_stream(killed: usize) {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = spawn_cluster(2, broker.port, dir.path());
    ready(&cluster).await;
    let (messages, expected) = incidents(*T0, 2_000);
    let publisher = tokio::spawn({
        let port = broker.port;
        async move { publish_all(port, "terminals", &messages).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked(&cluster).await < 300 {
        assert!(
            Instant::now() < deadline,
            "the cluster acknowledges nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster[killed].kill_9();
    assert_eq!(cluster[1 - killed].wait_code(), Some(70));
    let cluster = spawn_cluster(2, broker.port, dir.path());
    ready(&cluster).await;
    publisher.await.unwrap();
    publish_all(broker.port, "devices-tail", &tail()).await;
    let out = outcome(&cluster[0]).await;
    let alerts = cluster[0]
        .get("/api/v1/alerts?rule=elevator.reported_critical&limit=1000")
        .await;
    assert_each_alert_once(&alerts, &expected, 2_000);
    assert!(
        out.notifications.values().all(|&n| n == 1),
        "a notification sent twice: {:?}",
        out.notifications
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_mid_stream_loses_no_alert_and_doubles_none() {
    a_process_killed_mid_stream(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_stream_loses_no_alert_and_doubles_none() {
    a_process_killed_mid_stream(0).await;
}
