//! Alerts end to end over real transports: elevator frames through Mosquitto fire an alert;
//! the maintenance unit is pushed over MQTT and answers over MQTT, the office gets a signed
//! webhook; operators act and silence through the API; and a `kill -9` in the middle of
//! deliveries loses no alert and repeats only what was in flight.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use common::*;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A webhook receiver: every request as (idempotency key, body), recorded on arrival, answered
/// after `delay`.
#[derive(Clone, Default)]
struct Hook {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    delay: Duration,
}

async fn receive(State(h): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers["x-citywatch-signature"].to_str().unwrap();
    if sig != alerts::deliver::signature("hook-secret", &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    h.got
        .lock()
        .unwrap()
        .push((key, serde_json::from_slice(&body).unwrap()));
    tokio::time::sleep(h.delay).await;
    StatusCode::NO_CONTENT
}

async fn serve_hook(delay: Duration) -> (Hook, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hook = Hook {
        delay,
        ..Hook::default()
    };
    let app = Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(hook.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (hook, port)
}

/// The sample district with a receivers table.
fn reference_with(dir: &Path, receivers: &str) -> PathBuf {
    let dst = reference_copy(dir);
    std::fs::write(
        dst.join("receivers.csv"),
        format!("receiver_id,kind,target,secret,owner\n{receivers}"),
    )
    .unwrap();
    dst
}

async fn start(broker: &Mosquitto, data: &Path, reference: &Path) -> Citywatch {
    Citywatch::start_with(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        None,
        data,
        &[
            "--rules",
            default_rules().to_str().unwrap(),
            "--clock",
            "event",
            "--reference",
            reference.to_str().unwrap(),
        ],
        &[],
    )
    .await
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A maintenance unit's MQTT client: what arrives on its topic, and a way to answer.
struct Unit {
    client: AsyncClient,
    got: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Unit {
    /// Connects and subscribes; a broker that has just started may drop the first
    /// connection, so a connection that fails before its subscription is acknowledged is
    /// made again (a few times).
    async fn connect(port: u16, topic: &str) -> Unit {
        for _ in 0..5 {
            if let Some(unit) = Unit::try_connect(port, topic).await {
                return unit;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("cannot subscribe to {topic} on port {port}");
    }

    async fn try_connect(port: u16, topic: &str) -> Option<Unit> {
        let opts = testkit::mqtt_options(format!("unit-{topic}"), "127.0.0.1", port);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        let (tx, got) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        let mut subscribed = Some(subscribed);
        tokio::spawn(async move {
            while let Ok(ev) = eventloop.poll().await {
                match ev {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(s) = subscribed.take() {
                            let _ = s.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let _ = tx.send(serde_json::from_slice(&p.payload).unwrap());
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .ok()?
            .ok()?;
        Some(Unit { client, got })
    }

    async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.got.recv())
            .await
            .expect("a push notification in time")
            .unwrap()
    }

    async fn say(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }
}

/// A unit's answer, signed as docs/alerts.md says.
fn signed_ack(secret: &str, topic: &str, id: &str, action: &str, by: Option<&str>) -> String {
    let signed = alerts::ack_signature::Signed {
        alert_id: id,
        action,
        by,
        comment: None,
        sig: None,
    };
    let sig = alerts::ack_signature::sign(secret, topic, &signed);
    json!({"alert_id": id, "action": action, "by": by, "sig": sig}).to_string()
}

async fn post(cw: &Citywatch, token: &str, path: &str, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(cw.url(path)).json(&body);
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn metric(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_is_pushed_over_mqtt_answers_over_mqtt_and_operators_act_through_the_api() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (office, hook_port) = serve_hook(Duration::ZERO).await;
    // E0001 and E0004 are maintained by MU-02; yuzhong's offices include O-JFB.
    let reference = reference_with(
        dir.path(),
        &format!(
            "R-MU02,mqtt,cw/v1/notify/R-MU02,mu02-secret,MU-02\n\
             R-MU03,mqtt,cw/v1/notify/R-MU03,mu03-secret,MU-03\n\
             R-JFB,webhook,http://127.0.0.1:{hook_port}/hook,hook-secret,O-JFB\n"
        ),
    );
    let mut unit = Unit::connect(broker.port, "cw/v1/notify/R-MU02").await;
    let data = dir.path().join("data");
    let op = token(&data, "控制室", "operator");
    let viewer = token(&data, "大屏", "viewer");
    let mu02 = token(&data, "安达维保", "unit:MU-02");
    let mu03 = token(&data, "山城电梯", "unit:MU-03");
    let mut cw = start(&broker, &data, &reference).await;

    let t = now_ms() - now_ms() % 1000 - 60_000;
    publish_all(
        broker.port,
        "elevator-E0001",
        &[trapped("E0001", t), trapped("E0001", t + 1000)],
    )
    .await;

    // The unit is pushed (QoS 1), with the idempotency key in the payload.
    let firing = unit.next().await;
    assert_eq!(firing["state"], "firing", "{firing}");
    assert_eq!(firing["rule"], "elevator.trapped_alarm");
    assert_eq!(firing["labels"]["elevator_id"], "E0001");
    assert_eq!(firing["labels"]["maintenance_unit"], "MU-02");
    assert_eq!(firing["receiver_id"], "R-MU02");
    let id = firing["id"].as_str().unwrap().to_owned();
    assert_eq!(firing["idempotency_key"], format!("{id}-1-R-MU02"));
    // The office, by a signed webhook.
    wait_for("the office's webhook", async || {
        (office.got.lock().unwrap().len() == 1).then_some(())
    })
    .await;

    // The unit answers over MQTT, signed with its receiver's secret: on site (到场), which
    // also acknowledges.
    let to_mu02 = "cw/v1/notify/MU-02/ack";
    unit.say(
        to_mu02,
        signed_ack("mu02-secret", to_mu02, &id, "on_site", Some("王师傅")),
    )
    .await;
    // Another unit may not answer for it, even signed; a stranger on the broker cannot sign
    // as the unit (a wrong secret, no signature); nonsense is refused. Each is kept.
    let to_mu03 = "cw/v1/notify/MU-03/ack";
    unit.say(
        to_mu03,
        signed_ack("mu03-secret", to_mu03, &id, "done", None),
    )
    .await;
    unit.say(to_mu02, signed_ack("guessed", to_mu02, &id, "done", None))
        .await;
    unit.say(
        to_mu02,
        json!({"alert_id": id, "action": "done"}).to_string(),
    )
    .await;
    unit.say(to_mu02, "on my way").await;
    let detail = wait_for("the unit's answer applied", async || {
        let d = cw.get(&format!("/api/v1/alerts/{id}")).await;
        (d["alert"]["body"]["ops"]["field_state"] == "on_site").then_some(d)
    })
    .await;
    assert_eq!(detail["alert"]["body"]["ops"]["acked_by"], "王师傅");
    assert!(detail["alert"]["acked_ms"].as_u64().is_some());
    let m = wait_for("four rejected answers", async || {
        let m = cw.metrics().await;
        (metric(&m, "citywatch_unit_acks_total{outcome=\"rejected\"} ") == 4).then_some(m)
    })
    .await;
    assert_eq!(
        metric(&m, "citywatch_unit_acks_total{outcome=\"applied\"} "),
        1
    );
    let dead = cw.get("/api/v1/deadletters").await.to_string();
    assert!(
        dead.contains("cw/v1/notify/MU-03/ack") && dead.contains("was not notified"),
        "{dead}"
    );
    let forged = cw.get("/api/v1/deadletters?reason=unauthorized").await;
    let forged = forged["items"].as_array().unwrap();
    assert_eq!(forged.len(), 2, "{forged:?}");
    assert!(
        forged
            .iter()
            .any(|d| d["message"].as_str().unwrap().contains("unsigned"))
    );
    assert!(forged.iter().any(|d| {
        d["message"]
            .as_str()
            .unwrap()
            .contains("not signed by unit")
    }));
    assert!(
        !dead.contains("unknown_topic"),
        "notify topics are not device input: {dead}"
    );

    // Roles: no token, a viewer, another unit: refused; the unit sees only its own alerts.
    let ack = format!("/api/v1/alerts/{id}/ack");
    assert_eq!(post(&cw, "", &ack, json!({})).await.0, 401);
    assert_eq!(post(&cw, &viewer, &ack, json!({})).await.0, 403);
    let (status, err) = post(&cw, &mu03, &ack, json!({})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{err}"
    );
    let theirs = get_as(&cw, &mu03, "/api/v1/alerts").await;
    assert_eq!(theirs.as_array().unwrap().len(), 0, "{theirs}");
    let (status, assigned) = post(
        &cw,
        &mu02,
        &format!("/api/v1/alerts/{id}/assign"),
        json!({"to": "王师傅", "by": "调度员"}),
    )
    .await;
    assert_eq!(status, 200, "{assigned}");
    let history = cw.get(&format!("/api/v1/alerts/{id}")).await;
    assert!(
        history.to_string().contains("调度员 (安达维保)"),
        "the actor is recorded: {history}"
    );

    // A body over the limit (1 MiB) is refused with a JSON error, not read whole.
    let huge = reqwest::Client::new()
        .post(cw.url(&format!("/api/v1/alerts/{id}/comment")))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    let err: Value = huge.json().await.unwrap();
    assert_eq!(err["error"]["code"], "too_large", "{err}");

    // Operators: bad requests are refused with the field at fault.
    let (status, err) = post(
        &cw,
        &op,
        &format!("/api/v1/alerts/{id}/state"),
        json!({"by": "x", "state": "flying"}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("state"))
    );
    let (status, _) = post(&cw, &op, "/api/v1/alerts/0000/ack", json!({"by": "x"})).await;
    assert_eq!(status, 404);
    let (status, err) = post(&cw, &op, &format!("/api/v1/alerts/{id}/ack"), json!([])).await;
    assert_eq!(status, 400, "{err}");
    // Done (完成): resolved; the unit and the office hear of it.
    let (status, done) = post(
        &cw,
        &op,
        &format!("/api/v1/alerts/{id}/state"),
        json!({"by": "王师傅", "state": "done"}),
    )
    .await;
    assert_eq!(
        (status, done["state"].as_str()),
        (200, Some("resolved")),
        "{done}"
    );
    let resolved = unit.next().await;
    assert_eq!(resolved["state"], "resolved", "{resolved}");
    assert!(resolved["version"].as_u64() > firing["version"].as_u64());
    wait_for("the office hears the end", async || {
        let got = office.got.lock().unwrap();
        got.iter()
            .any(|(_, b)| b["state"] == "resolved")
            .then_some(())
    })
    .await;
    let (status, _) = post(
        &cw,
        &op,
        &format!("/api/v1/alerts/{id}/ack"),
        json!({"by": "x"}),
    )
    .await;
    assert_eq!(status, 409, "a resolved alert cannot be acknowledged");

    // A silence for E0004 (MU-02 too): its alert fires, held; expiring it releases the push.
    let (status, silence) = post(
        &cw,
        &op,
        "/api/v1/silences",
        json!({"matchers": ["elevator_id=E0004"], "ends_ms": now_ms() + 3_600_000,
               "author": "控制室", "reason": "年检"}),
    )
    .await;
    assert_eq!(status, 201, "{silence}");
    let (status, _) = post(
        &cw,
        &op,
        "/api/v1/silences",
        json!({"matchers": ["elevator_id"], "ends_ms": 1, "author": "a", "reason": "b"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        cw.get("/api/v1/silences").await.as_array().unwrap().len(),
        1
    );
    publish_all(
        broker.port,
        "elevator-E0004",
        &[trapped("E0004", t + 2000), trapped("E0004", t + 3000)],
    )
    .await;
    let held = wait_for("the silenced alert", async || {
        let a = cw
            .get("/api/v1/alerts?state=firing&rule=elevator.trapped_alarm")
            .await;
        a.as_array()
            .unwrap()
            .iter()
            .find(|a| a["body"]["labels"]["elevator_id"] == "E0004")
            .cloned()
    })
    .await;
    assert_eq!(
        held["suppressed"],
        format!("silence:{}", silence["id"].as_str().unwrap())
    );
    let notes = cw
        .get(&format!(
            "/api/v1/notifications?alert={}",
            held["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        notes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "held"),
        "{notes}"
    );
    let r = reqwest::Client::new()
        .delete(cw.url(&format!(
            "/api/v1/silences/{}",
            silence["id"].as_str().unwrap()
        )))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let released = unit.next().await;
    assert_eq!(released["labels"]["elevator_id"], "E0004", "{released}");
    assert_eq!(released["state"], "firing");

    let summary = cw.get("/api/v1/alerts/summary").await;
    assert!(summary["firing"].as_array().is_some(), "{summary}");
    assert_eq!(summary["trapped_now"], 1, "E0004's alarm: {summary}");
    assert_eq!(summary["units_today"][0]["unit"], "MU-02", "{summary}");
    assert_eq!(summary["units_today"][0]["acknowledged"], 1, "{summary}");
    cw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_no_alert_and_repeats_only_what_was_in_flight() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    // A slow receiver: each request takes a second to answer.
    let (hook, port) = serve_hook(Duration::from_secs(1)).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let reference = reference_with(
        dir.path(),
        &format!(
            "R-MU01,webhook,{url},hook-secret,MU-01\nR-MU02,webhook,{url},hook-secret,MU-02\n\
             R-MU03,webhook,{url},hook-secret,MU-03\nR-JFB,webhook,{url},hook-secret,O-JFB\n"
        ),
    );
    let data = dir.path().join("data");
    let mut cw = start(&broker, &data, &reference).await;
    let t = now_ms() - now_ms() % 1000 - 60_000;
    let elevators: Vec<String> = (1..=20).map(|i| format!("E{i:04}")).collect();
    // In time order: event time is the clock here, and a frame behind it would be late.
    let frames: Vec<_> = [t, t + 1000]
        .iter()
        .flat_map(|ts| elevators.iter().map(|e| trapped(e, *ts)))
        .collect();
    publish_all(broker.port, "elevators", &frames).await;
    // Twenty alerts, each for its unit and the office: forty notifications.
    let ids: Vec<String> = wait_for("twenty alerts journaled", async || {
        let a = cw.get("/api/v1/alerts?state=firing&limit=100").await;
        let a = a.as_array().unwrap();
        (a.len() == 20).then(|| {
            a.iter()
                .map(|a| a["id"].as_str().unwrap().to_owned())
                .collect()
        })
    })
    .await;
    wait_for("a few deliveries under way", async || {
        (hook.got.lock().unwrap().len() >= 4).then_some(())
    })
    .await;
    cw.kill_9();
    let at_kill = hook.got.lock().unwrap().len();
    assert!(
        at_kill < 40,
        "the kill came after every delivery ({at_kill})"
    );

    let cw = start(&broker, &data, &reference).await;
    wait_for(
        "every notification delivered after the restart",
        async || {
            let notes = cw.get("/api/v1/notifications?limit=1000").await;
            let notes = notes.as_array().unwrap();
            (notes.len() == 40 && notes.iter().all(|n| n["status"] == "delivered")).then_some(())
        },
    )
    .await;
    let got = hook.got.lock().unwrap().clone();
    let keys: std::collections::BTreeSet<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 40, "every notification arrived: {keys:?}");
    for id in &ids {
        assert_eq!(
            keys.iter().filter(|k| k.starts_with(id.as_str())).count(),
            2,
            "alert {id}: its unit and the office"
        );
    }
    // Repeats are the deliveries in flight at the kill, which the receiver drops by key.
    let repeats = got.len() - keys.len();
    eprintln!("{at_kill} requests before the kill, {repeats} repeated after it");
    assert!(
        repeats <= 16,
        "{repeats} repeats: more than could be in flight"
    );
    let alerts = cw.get("/api/v1/alerts?state=firing&limit=100").await;
    assert_eq!(
        alerts.as_array().unwrap().len(),
        20,
        "every alert still there"
    );
}

/// A frame of a car stopped between floors with its doors closed and a passenger inside, or
/// (`stuck` false) moving.
fn buffered(elevator: &str, ts: u64, stuck: bool) -> (String, Vec<u8>) {
    let speed = if stuck { 0.0 } else { 1.0 };
    msg(
        &format!("cw/v1/elevator/{elevator}/status"),
        json!({"ts": ts, "floor": 3, "in_door_zone": false, "speed_mps": speed,
            "direction": if stuck { "stop" } else { "up" }, "door": "closed", "occupied": true})
        .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_passenger_in_a_terminals_backlog_reaches_the_unit_with_its_true_time() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let reference = reference_with(
        dir.path(),
        "R-MU02,mqtt,cw/v1/notify/R-MU02,mu02-secret,MU-02\n",
    );
    let mut unit = Unit::connect(broker.port, "cw/v1/notify/R-MU02").await;
    let data = dir.path().join("data");
    let op = token(&data, "控制室", "operator");
    // The live clock: the frontier is the wall clock's, so the backlog is behind it.
    let cw = Citywatch::start_with(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        None,
        &data,
        &[
            "--rules",
            default_rules().to_str().unwrap(),
            "--reference",
            reference.to_str().unwrap(),
        ],
        &[],
    )
    .await;

    // A terminal reconnects and delivers what it buffered over the last two minutes: 45 s of
    // frames, the car stuck outside the door zone with a passenger from the 5th second.
    let t = now_ms() - now_ms() % 1000 - 120_000;
    let frames: Vec<_> = (0..45)
        .map(|s| buffered("E0001", t + s * 1000, s >= 5))
        .collect();
    publish_all(broker.port, "elevator-E0001", &frames).await;

    let firing = loop {
        let push = unit.next().await;
        if push["rule"] == "elevator.trapped_outside_zone" {
            break push;
        }
    };
    assert_eq!(firing["state"], "firing", "{firing}");
    assert_eq!(firing["labels"]["elevator_id"], "E0001");
    // 30 s after the car stopped, on the terminal's own time; known when the backlog arrived,
    // 85 s later less the lateness the frontier trails the clock by.
    assert_eq!(firing["since_ms"], t + 35_000, "{firing}");
    let late = firing["late_by_ms"].as_u64().expect("marked late");
    assert!((80_000..120_000).contains(&late), "{firing}");
    // The control room sees the same.
    let id = firing["id"].as_str().unwrap();
    let alert = get_as(&cw, &op, &format!("/api/v1/alerts/{id}")).await;
    assert_eq!(alert["alert"]["since_ms"], t + 35_000, "{alert}");
    assert_eq!(alert["alert"]["body"]["late_by_ms"], late, "{alert}");
    let metrics = cw.metrics().await;
    assert!(
        metric(&metrics, "citywatch_backlog_events_total ") >= 45,
        "{metrics}"
    );
}
