//! citywatch as a timely cluster over Mosquitto: two and three processes on loopback, fed
//! through a shared subscription, give the counters and alerts of one process, each alert
//! notified once; a cluster restarted as a whole mid-stream loses no message and no alert, nor
//! does one whose process is killed (each process keeps its own input log and its part of
//! every checkpoint), and its rules' state goes on across a kill and a stop.

mod common;

use common::{
    Citywatch, Mosquitto, STUCK_RULE, assert_each_alert_once, default_rules, free_port, incidents,
    messages_counted, msg, now_ms, publish_all, rules_of, stuck,
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
    let f = testkit::Frame::new(elevator, ts)
        .floor(3)
        .in_door_zone(!alarm)
        .speed(if alarm { 0.0 } else { 1.0 })
        .direction(if alarm { "stop" } else { "up" })
        .occupied(true);
    if alarm {
        f.with("alarm_button", true)
    } else {
        f
    }
    .message()
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
        // Someone at E0005's landing complains while its passenger is trapped: an incident.
        if tenth == 141 {
            out.push(msg(
                "cw/v1/complaint/new",
                json!({"ts": ts, "complaint_id": "C-LIFT", "merchant_name": "化龙桥小区物业",
                    "category": "service", "lat": 29.5432, "lon": 106.53063})
                .to_string(),
            ));
        }
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
    spawn_cluster_with(n, broker, dir, "event", &default_rules(), &[])
}

/// The same on `clock` with the rules of `rules` and environment variables for every process.
fn spawn_cluster_with(
    n: usize,
    broker: u16,
    dir: &Path,
    clock: &str,
    rules: &Path,
    env: &[(&str, &str)],
) -> Vec<Citywatch> {
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
    let empty = dir.join("no-reference");
    std::fs::create_dir_all(&empty).unwrap();
    (0..n)
        .map(|i| {
            let (processes, index) = (n.to_string(), i.to_string());
            let mut args = vec![
                "--rules",
                rules.to_str().unwrap(),
                "--clock",
                clock,
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
                env,
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
/// evidence images, the notifications per (rule, group, receiver, version), and what made
/// each alert's episodes fire (the events and window items kept with them).
#[derive(Debug, PartialEq)]
struct Outcome {
    counters: Value,
    alerts: BTreeSet<(String, String, String)>,
    evidence: BTreeMap<(String, String), String>,
    notifications: BTreeMap<(String, String, String, u64), usize>,
    causes: BTreeMap<(String, String), Vec<Value>>,
    incidents: BTreeSet<IncidentSeen>,
}

/// What made each episode of `alerts` fire, as the API explains it: the kept events and
/// window items, since when the filter held, and the rule's parts over the deciding event.
async fn causes(
    leader: &Citywatch,
    by_id: &BTreeMap<String, (String, String)>,
) -> BTreeMap<(String, String), Vec<Value>> {
    let mut out = BTreeMap::new();
    for (id, key) in by_id {
        let why = leader
            .get(&format!("/api/v1/alerts/{id}/explain?limit=100"))
            .await;
        let episodes = why["episodes"].as_array().unwrap().iter();
        // Each event as it was sent (its arrival time is this run's own).
        let sent = |e: &Value| -> Vec<Value> {
            let events = e["events"].as_array().unwrap().iter();
            events
                .map(|x| json!([x["time_ms"], x["topic"], x["payload"]]))
                .collect()
        };
        let kept = episodes
            .map(|e| {
                json!([
                    e["since_ms"],
                    e["raw_since_ms"],
                    sent(e),
                    e["items"],
                    e["earlier"],
                    e["deciding"]
                ])
            })
            .collect();
        out.insert(key.clone(), kept);
    }
    out
}

/// An incident's rule, subject, state and members (kind, member).
type IncidentSeen = (String, String, String, Vec<(String, String)>);

/// Every incident with its members, as the API lists them.
async fn incidents_of(leader: &Citywatch) -> BTreeSet<IncidentSeen> {
    let mut out = BTreeSet::new();
    for i in leader.get("/api/v1/incidents").await.as_array().unwrap() {
        let d = leader
            .get(&format!("/api/v1/incidents/{}", i["id"].as_str().unwrap()))
            .await;
        let field = |v: &Value, k: &str| v[k].as_str().unwrap().to_owned();
        let members = d["members"].as_array().unwrap().iter();
        out.insert((
            field(i, "rule"),
            field(i, "subject"),
            field(i, "state"),
            members
                .map(|m| (field(m, "kind"), field(m, "member")))
                .collect(),
        ));
    }
    out
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
        incidents: incidents_of(leader).await,
        causes: causes(leader, &by_id).await,
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
            "decided_on_time": 0, "on_time_rate": null},
            {"office": "O-DP", "received_today": 1, "open": 1, "decided": 0,
            "decided_on_time": 0, "on_time_rate": null}]),
        "complaints are routed by the jurisdiction of their place"
    );
    assert_eq!(
        one.evidence.len(),
        6,
        "every kitchen alert shows its image: {:?}",
        one.evidence
    );
    // Causes kept: the events of event and state rules, the items of windows.
    let kept = |at: usize| {
        let nonempty = |e: &Value| e[at].as_array().is_some_and(|a| !a.is_empty());
        one.causes
            .values()
            .flatten()
            .filter(|e| nonempty(e))
            .count()
    };
    assert!(kept(2) > 0 && kept(3) > 0, "{:?}", one.causes);
    let lift = one
        .incidents
        .iter()
        .find(|i| i.1 == "elevator/E0005")
        .unwrap_or_else(|| panic!("no incident of E0005: {:?}", one.incidents));
    assert_eq!(
        lift.3.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        // The alarm button's alert, the complaint, then the 30 s outside the zone's alert.
        ["alert", "complaint", "alert"],
        "{lift:?}"
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

/// A gauge or counter of a process's `/metrics`.
async fn metric(p: &Citywatch, name: &str) -> u64 {
    p.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// 60 elevators' frames and 360 one-shot critical events, on the wall clock, with
/// checkpoints every 200 ms: the first half is acknowledged and every process's replay mark
/// has moved to a checkpoint the journal passed; then, with the second half under way,
/// process `killed` is killed with SIGKILL (the other then exits, 70) and both start again.
/// Every alert is journaled once (version 1: one notification per receiver), at its own time
/// or, for a message the broker redelivered behind the restored checkpoint, within the
/// lateness of it; every message is counted once (restored from the checkpoint both
/// processes restored, the rest fed again from each one's log, redeliveries recognised).
async fn a_process_killed_mid_stream(killed: usize) {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let env = [("CITYWATCH_CHECKPOINT_EVERY_MS", "200")];
    let mut cluster =
        spawn_cluster_with(2, broker.port, dir.path(), "wall", &default_rules(), &env);
    ready(&cluster).await;
    let (messages, expected) = incidents(now_ms(), 200);
    let published = messages.len() as i64;
    let (first, rest) = messages.split_at(messages.len() / 2);
    publish_all(broker.port, "terminals", first).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut moved = 0;
        for p in &cluster {
            moved += usize::from(metric(p, "citywatch_input_log_replay_from").await > 0);
        }
        if acked(&cluster).await >= first.len() as u64 && moved == cluster.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the replay marks never moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let publisher = tokio::spawn({
        let (port, rest) = (broker.port, rest.to_vec());
        async move { publish_all(port, "terminals-2", &rest).await }
    });
    while acked(&cluster).await < first.len() as u64 + 120 {
        assert!(
            Instant::now() < deadline,
            "the cluster acknowledges no more"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster[killed].kill_9();
    assert_eq!(cluster[1 - killed].wait_code(), Some(70));
    let cluster = spawn_cluster_with(2, broker.port, dir.path(), "wall", &default_rules(), &env);
    ready(&cluster).await;
    publisher.await.unwrap();
    let path = "/api/v1/alerts?rule=elevator.reported_critical&limit=1000";
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster[0].get(path).await.as_array().map_or(0, Vec::len) < expected.len() {
        assert!(Instant::now() < deadline, "alerts missing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past everything fed again and everything redelivered: a duplicate would show now.
    let counters = cluster[0].counters_after(now_ms()).await;
    assert_each_alert_once(&cluster[0].get(path).await, &expected, 2_000);
    let out = outcome(&cluster[0]).await;
    assert!(
        out.notifications.values().all(|&n| n == 1),
        "a notification sent twice: {:?}",
        out.notifications
    );
    assert_eq!(messages_counted(&counters), published, "{counters}");
    // Both processes restored the same checkpoint.
    for p in &cluster {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(log.contains("restoring the dataflow's state"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_mid_stream_loses_no_alert_and_doubles_none() {
    a_process_killed_mid_stream(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_stream_loses_no_alert_and_doubles_none() {
    a_process_killed_mid_stream(0).await;
}

/// The default pack and a rule with a short `for` (`test.stuck`).
fn rules_with_stuck(dir: &Path) -> std::path::PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for f in std::fs::read_dir(default_rules()).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&f, rules.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(rules.join("stuck.toml"), STUCK_RULE).unwrap();
    rules
}

/// Waits until every logged message of every process is accounted for by a checkpoint: the
/// state they made is in it, and a restart does not feed them again.
async fn all_checkpointed(cluster: &[Citywatch]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut behind = 0;
        for p in cluster {
            let logged = metric(p, "citywatch_input_log_records_total").await;
            behind += usize::from(metric(p, "citywatch_input_log_replay_from").await < logged);
        }
        if behind == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the replay marks never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A car stuck for 3.5 s under a 6-s `for` and a camera beating, all of it in a checkpoint of
/// both processes (the logs will not feed it again); process 1 killed, both started again, the
/// car still stuck: `test.stuck` fires with its true since (the pending `for` came back from
/// the checkpoints). Then a clean stop of both and a start: the camera, silent meanwhile but
/// far from its 180 s, raised nothing (a stop fires no timer the clock has not reached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeps_its_rules_state_across_a_kill_and_a_stop() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with_stuck(dir.path());
    let env = [("CITYWATCH_CHECKPOINT_EVERY_MS", "200")];
    let spawn = || spawn_cluster_with(2, broker.port, dir.path(), "wall", &rules, &env);
    let mut cluster = spawn();
    ready(&cluster).await;
    let t0 = now_ms();
    let beat = msg(
        "cw/v1/kitchen/K-S01/camera/C1/heartbeat",
        format!("{{\"ts\":{t0},\"online\":true}}"),
    );
    let mut messages = vec![beat];
    messages.extend((0..8u64).map(|i| stuck(t0 + i * 500)));
    publish_all(broker.port, "terminal", &messages).await;
    while acked(&cluster).await < messages.len() as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    all_checkpointed(&cluster).await;
    cluster[1].kill_9();
    assert_eq!(cluster[0].wait_code(), Some(70));
    let mut cluster = spawn();
    ready(&cluster).await;
    publish_all(broker.port, "terminal", &[stuck(now_ms().max(t0 + 6_500))]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let is_stuck = |a: &serde_json::Value| a["rule"] == "test.stuck";
    let alerts = loop {
        let a = cluster[0].get("/api/v1/alerts").await;
        if a.as_array().is_some_and(|a| a.iter().any(is_stuck)) {
            break a;
        }
        assert!(Instant::now() < deadline, "no alert");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let alerts = alerts.as_array().unwrap();
    let stuck: Vec<_> = alerts.iter().filter(|a| is_stuck(a)).collect();
    assert_eq!(stuck.len(), 1, "{alerts:?}");
    assert_eq!(stuck[0]["since_ms"], t0 - t0 % 100 + 6000, "{alerts:?}");
    // The pack's own rules watch the same car: once it has been stuck for 10 s (a slow
    // restart on a busy machine), `elevator.stopped_outside_door_zone` fires too. Nothing
    // about any other device may.
    let the_car = |a: &serde_json::Value| a["group"] == "E0007";
    assert!(alerts.iter().all(the_car), "{alerts:?}");
    stop_all(&mut cluster);
    let mut cluster = spawn();
    ready(&cluster).await;
    let alerts = cluster[0].get("/api/v1/alerts").await;
    assert!(rules_of(&alerts).contains(&"test.stuck"), "{alerts}");
    let raised = alerts.as_array().unwrap();
    assert!(raised.iter().all(the_car), "raised at the stop: {alerts}");
    stop_all(&mut cluster);
}
