//! Real parts for end-to-end tests: the citywatch binary on free ports, stopped when dropped
//! (the servers it talks to come from `testkit`), and an MQTT publisher that waits for every
//! PUBACK.

#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use model::time::now_ms;

#[allow(unused_imports)]
pub use testkit::{Mosquitto, free_port};

/// A running citywatch process.
pub struct Citywatch {
    child: Option<Child>,
    pub http: SocketAddr,
    pub log: PathBuf,
}

impl Citywatch {
    /// Starts `citywatch run` with the sample reference data, `mqtt` as its broker, and
    /// `data_dir` as its state, without rules (ingest and counters only: no alerts, no
    /// notifications of its own on the broker); returns once `/readyz` says ready.
    pub async fn start(mqtt: &str, embedded_port: Option<u16>, data_dir: &Path) -> Citywatch {
        Citywatch::start_with(mqtt, embedded_port, data_dir, &["--rules", "none"], &[]).await
    }

    /// As `start`, with extra flags and environment variables.
    pub async fn start_with(
        mqtt: &str,
        embedded_port: Option<u16>,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Citywatch {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cw = Citywatch::spawn(http, mqtt, embedded_port, data_dir, args, env);
        cw.ready().await;
        cw
    }

    /// Starts `citywatch run` with its API on `http`, without waiting for it to be ready.
    pub fn spawn(
        http: SocketAddr,
        mqtt: &str,
        embedded_port: Option<u16>,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Citywatch {
        let log = data_dir.with_extension(format!("{}.log", http.port()));
        let reference = repo().join("examples/reference");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_citywatch"));
        cmd.arg("run")
            .arg("--http")
            .arg(http.to_string())
            .arg("--mqtt")
            .arg(mqtt)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if !args.contains(&"--lateness-ms") {
            cmd.arg("--lateness-ms").arg("300");
        }
        if !args.contains(&"--reference") {
            cmd.arg("--reference").arg(reference);
        }
        cmd.args(args).envs(env.iter().copied());
        if let Some(p) = embedded_port {
            cmd.arg("--embedded-broker-addr")
                .arg(format!("127.0.0.1:{p}"));
        }
        let child = cmd.spawn().unwrap();
        Citywatch {
            child: Some(child),
            http,
            log,
        }
    }

    /// Waits until `/readyz` says ready.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(self.url("/readyz")).await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "citywatch not ready: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the published counters are complete past `t` (event time, ms).
    pub async fn counters_after(&self, t: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.get("/api/v1/counters").await;
            if c["as_of"].as_u64().unwrap_or(0) > t {
                return c;
            }
            assert!(Instant::now() < deadline, "counters never passed {t}: {c}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The Prometheus exposition.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until this process has acknowledged `n` messages to the broker (each one
    /// decoded and handed to the dataflow or kept as a dead letter), and returns the time then.
    pub async fn acked(&self, n: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.metrics().await;
            let acked: u64 = m
                .lines()
                .find_map(|l| l.strip_prefix("citywatch_mqtt_acks_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if acked >= n {
                return now_ms();
            }
            assert!(
                Instant::now() < deadline,
                "only {acked} of {n} acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            let _ = child.wait();
        }
    }

    /// Stops with SIGTERM (a clean, draining shutdown) and waits for the exit.
    pub fn stop(&mut self) {
        self.signal_term();
        self.wait_success();
    }

    /// Sends SIGTERM: a clean, draining shutdown.
    pub fn signal_term(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Waits for the process to exit (at most 30 s) and returns its exit code.
    pub fn wait_code(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                None
            }
        }
    }

    /// Waits for the process to exit, and checks that it exited cleanly.
    pub fn wait_success(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "citywatch exited with {status}: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Citywatch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test shows what every process it started said last (a cluster's peer
        // that went away tells why only in its own log).
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- last lines of {} ---\n{tail}", self.log.display());
        }
    }
}

/// Publishes every (topic, payload) with QoS 1 and returns once the broker acknowledged all.
pub async fn publish_all(port: u16, client_id: &str, messages: &[(String, Vec<u8>)]) {
    let opts = testkit::mqtt_options(client_id, "127.0.0.1", port);
    let (client, mut eventloop) = AsyncClient::new(opts, messages.len() + 10);
    for (topic, payload) in messages {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked < messages.len() {
        let ev = tokio::time::timeout_at(deadline.into(), eventloop.poll())
            .await
            .expect("all PUBACKs in time");
        if let Ok(Event::Incoming(Packet::PubAck(_))) = ev {
            acked += 1;
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
}

pub fn msg(topic: &str, payload: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (topic.to_owned(), payload.into())
}

/// The repository's root, where `examples/` and `rules/` are.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The default rule pack.
pub fn default_rules() -> PathBuf {
    repo().join("rules/default")
}

/// A copy of the sample district's reference data in `dir/reference`, for a test to change.
pub fn reference_copy(dir: &Path) -> PathBuf {
    let dst = dir.join("reference");
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(repo().join("examples/reference")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
    dst
}

/// Runs the citywatch binary from the repository's root and returns what it printed, after
/// checking that it succeeded.
pub fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_citywatch"))
        .current_dir(repo())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "citywatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates an API token with `citywatch token create` in `data_dir`; returns it.
pub fn token(data_dir: &Path, name: &str, role: &str) -> String {
    let dir = data_dir.to_str().unwrap();
    cli(&[
        "token",
        "create",
        "--name",
        name,
        "--role",
        role,
        "--data-dir",
        dir,
    ])
    .trim()
    .to_owned()
}

/// A status frame of `elevator` at `ts` with a passenger pressing the alarm button between
/// floors: the trapped-passenger rule fires on it.
pub fn trapped(elevator: &str, ts: u64) -> (String, Vec<u8>) {
    msg(
        &format!("cw/v1/elevator/{elevator}/status"),
        serde_json::json!({"ts": ts, "floor": 3, "in_door_zone": false, "speed_mps": 0.0,
            "direction": "stop", "door": "closed", "occupied": true, "alarm_button": true})
        .to_string(),
    )
}

/// The alerts `GET path` shows to the holder of `token`.
pub async fn get_as(cw: &Citywatch, token: &str, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(cw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `GET path` until `done` holds (30 s at most), and returns what it answered then.
pub async fn poll_until(
    cw: &Citywatch,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = cw.get(path).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} never matched: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A message: its topic and payload.
pub type Message = (String, Vec<u8>);

const CODES: [&str; 6] = [
    "trapped",
    "top_overrun",
    "bottom_overrun",
    "overspeed",
    "door_open_while_moving",
    "safety_circuit_open",
];

/// 60 elevators × 6 one-shot critical codes (each its own alert), among ten ordinary frames
/// per elevator, a round every `round_ms` from `t0`; and the since each alert must have.
pub fn incidents(t0: u64, round_ms: u64) -> (Vec<Message>, Vec<(String, u64)>) {
    let elevators: Vec<String> = (1..=60).map(|i| format!("E{i:04}")).collect();
    let (mut messages, mut expected) = (Vec::new(), Vec::new());
    for round in 0..10u64 {
        for (i, e) in elevators.iter().enumerate() {
            let ts = t0 + round * round_ms + i as u64;
            messages.push(msg(
                &format!("cw/v1/elevator/{e}/status"),
                serde_json::json!({"ts": ts, "floor": 1, "in_door_zone": true, "speed_mps": 0.0,
                    "direction": "stop", "door": "closed", "occupied": false})
                .to_string(),
            ));
            if let Some(code) = CODES.get(round as usize) {
                messages.push(msg(
                    &format!("cw/v1/elevator/{e}/event"),
                    format!("{{\"ts\":{ts},\"code\":\"{code}\"}}"),
                ));
                expected.push((format!("{e}/{code}"), ts - ts % 100));
            }
        }
    }
    (messages, expected)
}

/// Checks that `alerts` (a list from `/api/v1/alerts`) holds exactly one alert per expected
/// `(group, since)`, opened once (version 1: one notification per receiver), each at its
/// expected since or up to `late_ms` after it.
pub fn assert_each_alert_once(
    alerts: &serde_json::Value,
    expected: &[(String, u64)],
    late_ms: u64,
) {
    let mut got: Vec<(String, u64, u64)> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["group"].as_str().unwrap().to_owned(),
                a["since_ms"].as_u64().unwrap(),
                a["version"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, u64, u64)> = expected
        .iter()
        .map(|(g, since)| (g.clone(), *since, 1))
        .collect();
    want.sort();
    for (g, w) in got.iter_mut().zip(&want) {
        if g.0 == w.0 && g.1 > w.1 && g.1 <= w.1 + late_ms {
            g.1 = w.1;
        }
    }
    assert_eq!(got, want);
}

/// A rule like the trapped-passenger one, with a `for` short enough for a test.
pub const STUCK_RULE: &str = r#"
[[rule]]
id = "test.stuck"
description = "Stopped outside the door zone with the doors closed, for 6 s"
severity = "critical"
stream = "elevator_status"
mode = "state"
filter = 'event.speed_mps < 0.05 && event.door == "closed" && !event.in_door_zone'
clear_condition = 'event.in_door_zone && event.door == "open"'
for = "6s"
group_by = ["elevator_id"]
"#;

/// A frame of E0007 stopped between floors with its doors closed.
pub fn stuck(ts: u64) -> Message {
    msg(
        "cw/v1/elevator/E0007/status",
        serde_json::json!({"ts": ts, "floor": 3, "in_door_zone": false, "speed_mps": 0.0,
            "direction": "stop", "door": "closed", "occupied": true})
        .to_string(),
    )
}

/// The messages the counters (`/api/v1/counters`) counted, over every stream and minute.
pub fn messages_counted(counters: &serde_json::Value) -> i64 {
    counters["messages"]["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["count"].as_i64().unwrap())
        .sum()
}

/// The rule of each alert of a list from `/api/v1/alerts`.
pub fn rules_of(alerts: &serde_json::Value) -> Vec<&str> {
    alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect()
}

/// citywatch on `broker` with the default pack built into the binary (no --rules) and the
/// event-time clock: the periods rules wait pass in the data, not on the wall.
pub async fn on_event_clock(broker: &Mosquitto, dir: &Path) -> Citywatch {
    Citywatch::start_with(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        None,
        &dir.join("data"),
        &["--clock", "event"],
        &[],
    )
    .await
}
