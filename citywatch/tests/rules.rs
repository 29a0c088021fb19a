//! Rules over a real broker: the frames of a trapped passenger, published over MQTT to
//! Mosquitto, produce the `trapped` condition at the right event time, and it resolves when the
//! door opens at a landing.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn frame(ts: u64, speed: f64, zone: bool, door: &str) -> (String, Vec<u8>) {
    testkit::Frame::new("E0007", ts)
        .floor(4)
        .in_door_zone(zone)
        .speed(speed)
        .door(door)
        .occupied(true)
        .message()
}

async fn conditions_until(cw: &Citywatch, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = cw.get("/api/v1/conditions").await;
        if done(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "conditions never matched: {c}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn trapped(c: &Value) -> Option<&Value> {
    c["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "elevator.trapped_outside_zone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_passenger_over_mosquitto() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let viewer = token(&dir.path().join("data"), "值班员", "viewer");
    let mut cw = on_event_clock(&broker, dir.path()).await;
    let log = std::fs::read_to_string(&cw.log).unwrap();
    assert!(log.contains("rules: the built-in default pack"), "{log}");
    // Whole seconds: event times are kept at the 100 ms tick.
    let t = now_ms() - now_ms() % 1000 - 600_000;
    let stuck: Vec<_> = (0..=40)
        .map(|i| frame(t + i * 1000, 0.0, false, "closed"))
        .collect();
    publish_all(broker.port, "elevator-E0007", &stuck).await;
    let c = conditions_until(&cw, |c| trapped(c).is_some()).await;
    let tr = trapped(&c).unwrap();
    assert_eq!(tr["group"], "E0007");
    assert_eq!(tr["severity"], "critical");
    assert_eq!(
        tr["since"],
        t + 30_000,
        "fires 30 s after the car stopped: {tr}"
    );
    assert_eq!(tr["labels"]["elevator_id"], "E0007");
    assert_eq!(tr["annotations"]["summary_zh"], "电梯困人（门区外）");
    check_why_not(&cw, t, &viewer).await;

    // The car levels and the door opens at the landing: resolved.
    let freed = vec![
        frame(t + 44_000, 0.0, true, "closed"),
        frame(t + 45_000, 0.0, true, "open"),
        frame(t + 50_000, 0.0, true, "open"),
    ];
    publish_all(broker.port, "elevator-E0007", &freed).await;
    let c = conditions_until(&cw, |c| {
        c["as_of"].as_u64() > Some(t + 45_000) && trapped(c).is_none()
    })
    .await;
    assert!(trapped(&c).is_none(), "{c}");
    let rules_listed = cw.get("/api/v1/rules").await;
    assert!(rules_listed.as_array().unwrap().len() >= 28);

    // The alert: journaled, firing then resolved, and on the SSE stream from the start.
    let id = {
        let alerts = cw
            .get("/api/v1/alerts?rule=elevator.trapped_outside_zone")
            .await;
        assert_eq!(alerts[0]["state"], "resolved", "{alerts}");
        assert_eq!(alerts[0]["version"], 2);
        alerts[0]["id"].as_str().unwrap().to_owned()
    };
    let detail = cw.get(&format!("/api/v1/alerts/{id}")).await;
    let states: Vec<&str> = detail["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["firing", "resolved"]);
    let first_seq = detail["transitions"][0]["seq"].as_u64().unwrap();
    // Reconnecting after the firing event: the stream resumes with the resolution.
    let resp = reqwest::Client::new()
        .get(cw.url("/api/v1/alerts/stream"))
        .header("last-event-id", first_seq.to_string())
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    use futures_util::StreamExt;
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("event: alert"), "{text}");
    assert!(
        text.contains(&format!("id: {}", first_seq + 1)) || text.contains("\"state\":\"resolved\""),
        "{text}"
    );
    assert!(!text.contains(&format!("id: {first_seq}\n")), "{text}");
    drop(body);

    // Why it fired: the frames of the 30-s `for` period (0 s to 29 s: its timer fires at
    // 30 s, before that second's frame), the latest 16 of them, and the filter over the last.
    let path = format!("/api/v1/alerts/{id}/explain");
    let why = cw.get(&path).await;
    check_trapped_explained(&why, t);
    // Journaled with the start: the same after a restart.
    cw.stop();
    let mut cw = on_event_clock(&broker, dir.path()).await;
    assert_eq!(cw.get(&path).await, why);
    cw.stop();
}

/// Why a rule did not fire, from the input log: 20 s into the 30-s period, and for the rule
/// of a car trapped in the door zone, whose `event.in_door_zone` is false here.
async fn check_why_not(cw: &Citywatch, t: u64, viewer: &str) {
    let ask = |rule: &str, at: u64| format!("/api/v1/rules/{rule}/explain?group=E0007&at={at}");
    // It reads the input log back: any token, none refused.
    let anonymous = reqwest::get(cw.url(&ask("elevator.trapped_in_zone", t))).await;
    assert_eq!(anonymous.unwrap().status().as_u16(), 401);
    let early = get_as(
        cw,
        viewer,
        &ask("elevator.trapped_outside_zone", t + 20_000),
    )
    .await;
    assert_eq!(early["held_since_ms"], t, "{early}");
    assert_eq!(early["events"].as_array().unwrap().len(), 21, "{early}");
    let verdict = early["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("20 s before") && verdict.contains("for 30 s"),
        "{verdict}"
    );
    let near = get_as(cw, viewer, &ask("elevator.trapped_in_zone", t + 40_000)).await;
    let verdict = near["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("its filter did not hold"), "{near}");
    assert_eq!(near["last"]["expressions"][0]["role"], "filter");
    let text = near["last"]["expressions"][0].to_string();
    assert!(
        text.contains(r#"{"outcome":{"is":"value","value":"false"},"text":"event.in_door_zone"}"#),
        "{text}"
    );
}

fn check_trapped_explained(why: &Value, t: u64) {
    let e = &why["episodes"][0];
    assert_eq!(why["episodes"].as_array().unwrap().len(), 1, "{why}");
    assert_eq!(
        (&e["since_ms"], &e["raw_since_ms"], &e["for_ms"]),
        (&json!(t + 30_000), &json!(t), &json!(30_000)),
        "{e}"
    );
    let times: Vec<u64> = e["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["time_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(
        times,
        (14..30).map(|i| t + i * 1000).collect::<Vec<_>>(),
        "{e}"
    );
    assert_eq!(e["earlier"], 14);
    assert_eq!(e["events"][15]["topic"], "cw/v1/elevator/E0007/status");
    assert_eq!(e["events"][15]["payload"]["occupied"], true);
    assert_eq!(e["rule"]["id"], "elevator.trapped_outside_zone");
    let filter = &e["deciding"]["expressions"][0];
    assert_eq!(filter["role"], "filter", "{e}");
    assert_eq!(
        filter["traced"]["outcome"],
        json!({"is": "value", "value": "true"}),
        "{filter}"
    );
    // It ended when the door opened at the landing (45 s): its clear condition held.
    let clear = "(event.speed_mps < 0.05 && event.in_door_zone && event.door == \"open\") \
                 || (has(event.occupied) && !event.occupied)";
    assert_eq!(
        e["ended"],
        json!({"at_ms": t + 45_000, "by": "condition",
               "why": format!("an event of the group matched its clear condition `{clear}`")}),
        "{e}"
    );
}

#[test]
fn rules_test_reports_a_readable_diff_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(rules_dir.join("tests")).unwrap();
    std::fs::write(
        rules_dir.join("k.toml"),
        "[[rule]]\nid = \"k.smoking\"\nseverity = \"major\"\nstream = \"kitchen_detection\"\nfilter = 'event.kind == \"smoking\"'\ngroup_by = [\"kitchen_id\"]\nkeep_firing_for = \"5m\"\n",
    )
    .unwrap();
    std::fs::write(
        rules_dir.join("tests/k.test.toml"),
        "[[input]]\nat = \"1m\"\ntopic = \"cw/v1/kitchen/K1/camera/C1/detection\"\npayload = { kind = \"smoking\" }\n\n[[expect]]\nrule = \"k.smoking\"\ngroup = \"K1\"\nfires = \"2m\"\nresolves = \"7m\"\n",
    )
    .unwrap();
    // A rules command over the directory, expected to fail: its stdout and stderr.
    let failing = |command: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_citywatch"))
            .args(["rules", command])
            .arg(&rules_dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{text}");
        (text, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (text, _) = failing("test");
    assert!(
        text.contains("missing:    k.smoking [K1] fires at 120s, resolves at 420s"),
        "{text}"
    );
    assert!(
        text.contains("unexpected: k.smoking [K1] fires at 60s, resolves at 360s"),
        "{text}"
    );
    assert!(text.contains("0 passed, 1 failed"), "{text}");

    std::fs::write(
        rules_dir.join("k.toml"),
        "[[rule]]\nid = \"k.smoking\"\nseverity = \"major\"\nstream = \"kitchen_detections\"\n",
    )
    .unwrap();
    let (text, _) = failing("check");
    assert!(
        text.contains("k.toml:4:11: unknown stream \"kitchen_detections\""),
        "{text}"
    );

    // A text the parser's grammar gives up on (it panics on `!-x`) is refused at its line,
    // quietly: no panic report.
    std::fs::write(
        rules_dir.join("k.toml"),
        "[[rule]]\nid = \"k.x\"\ndescription = \"x\"\nseverity = \"minor\"\nstream = \"elevator_status\"\nfilter = '!-event.speed_mps'\n",
    )
    .unwrap();
    let (text, err) = failing("check");
    assert!(
        text.contains("k.toml:6:11: syntax error: the expression could not be parsed"),
        "{text}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // An incident rule that names no rule of the directory is refused at its line.
    std::fs::write(
        rules_dir.join("k.toml"),
        "[[rule]]\nid = \"k.x\"\nseverity = \"minor\"\nstream = \"kitchen_detection\"\ngroup_by = [\"kitchen_id\"]\n\n\
         [[incident]]\nid = \"i.k\"\nseverity = \"major\"\nalerts = [\"k.y\"]\non = \"place\"\nwithin_m = 50\n",
    )
    .unwrap();
    let (text, _) = failing("check");
    assert!(
        text.contains("k.toml:7:1: alerts: \"k.y\" names no rule"),
        "{text}"
    );
}

#[test]
fn backtest_lists_alerts_and_the_difference_between_rule_sets() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_795_737_600_000u64;
    let line = |t: u64, kind: &str| {
        format!(
            r#"{{"topic":"cw/v1/kitchen/K1/camera/C1/detection","payload":{{"ts":{t},"kind":"{kind}","confidence":0.9}}}}"#
        )
    };
    let recording = [
        line(t0, "no_mask"),
        line(t0 + 60_000, "no_hat"),
        line(t0 + 120_000, "phone"),
        line(t0 + 180_000, "rodent"),
        "not json".into(),
    ]
    .join("\n");
    let input = dir.path().join("rec.jsonl");
    std::fs::write(&input, recording).unwrap();
    let root = default_rules();
    // A stricter candidate: hygiene needs four violations.
    let candidate = dir.path().join("candidate");
    std::fs::create_dir_all(&candidate).unwrap();
    let kitchens = std::fs::read_to_string(root.join("kitchens.toml")).unwrap();
    assert!(kitchens.contains("condition = \"value >= 3\""));
    std::fs::write(
        candidate.join("kitchens.toml"),
        kitchens.replacen(
            "condition = \"value >= 3\"",
            "condition = \"value >= 4\"",
            1,
        ),
    )
    .unwrap();

    let text = cli(&[
        "rules",
        "backtest",
        "--rules",
        candidate.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(
        text.contains("4 messages (1 rejected), 180 s of event time"),
        "{text}"
    );
    assert!(
        text.contains("kitchen.hazard [K1/C1/rodent] fires at 180s with value 0.9, still firing"),
        "{text}"
    );
    assert!(!text.contains("kitchen.hygiene"), "{text}");
    let diff = cli(&[
        "rules",
        "backtest",
        "--rules",
        candidate.to_str().unwrap(),
        "--against",
        root.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(
        diff.contains("- kitchen.hygiene [K1] fires at 120s with value 3, still firing"),
        "{diff}"
    );
    assert!(diff.contains("0 only with"), "{diff}");

    // Each alert with the event it fired on, part by part.
    let explained = cli(&[
        "rules",
        "backtest",
        "--rules",
        root.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--explain",
    ]);
    // And what the rules' operator kept when each fired, as a live alert keeps it.
    assert!(
        explained.contains("  events kept: 180000ms\nkitchen.hygiene"),
        "{explained}"
    );
    assert!(
        explained
            .contains("  held since 120000ms\n  window items: 0ms, 60000ms, 120000ms\n2 alerts"),
        "{explained}"
    );
    assert!(
        explained.contains(
            "kitchen.hazard [K1/C1/rodent] fires at 180s with value 0.9, still firing
  on cw/v1/kitchen/K1/camera/C1/detection at 180000ms:
  reference rows: {}
  filter:
    event.kind in [\"rodent\", \"fire\"] && has(event.confidence) && event.confidence >= 0.6 = true
      event.kind in [\"rodent\", \"fire\"] && has(event.confidence) = true
        event.kind in [\"rodent\", \"fire\"] = true
          event.kind = \"rodent\"
        has(event.confidence) = true
      event.confidence >= 0.6 = true
        event.confidence = 0.9
  value:
    event.confidence = 0.9
"
        ),
        "{explained}"
    );
    assert!(
        explained.contains(
            "kitchen.hygiene [K1] fires at 120s with value 3, still firing
  on cw/v1/kitchen/K1/camera/C1/detection at 120000ms:"
        ),
        "{explained}"
    );
}

#[test]
fn rules_explain_shows_each_part_of_a_rule_for_an_event() {
    let frame = testkit::Frame::new("E1", 1_795_737_600_000)
        .speed(1.31)
        .direction("up");
    let (topic, payload) = frame.message();
    let line = model::recording::line(&topic, &payload, None);
    let text = cli(&[
        "rules",
        "explain",
        "--rules",
        "rules/default",
        "--rule",
        "elevator.overspeed",
        "--reference",
        "rules/default/tests/reference",
        "--event",
        &line,
    ]);
    assert!(
        text.starts_with(
            "elevator.overspeed (rules/default/elevators.toml:80)\nreference rows: {\"elevator\":{"
        ),
        "{text}"
    );
    assert!(text.contains("\"rated_speed_mps\":1.0"), "{text}");
    assert!(
        text.contains("  event.speed_mps > 1.15 * ref.elevator.rated_speed_mps = true\n    event.speed_mps = 1.31\n    1.15 * ref.elevator.rated_speed_mps = 1.15\n      ref.elevator.rated_speed_mps = 1.0\n"),
        "{text}"
    );
    assert!(text.ends_with("value:\nevent.speed_mps = 1.31\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_explains_a_rule_in_force_for_an_event_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let viewer = token(&data, "值班员", "viewer");
    let pack = default_rules();
    let args = ["--rules", pack.to_str().unwrap()];
    let cw = Citywatch::start_with("embedded", Some(free_port()), &data, &args, &[]).await;
    // E0001 of the sample district is rated 1.0 m/s.
    let (topic, payload) = testkit::Frame::new("E0001", now_ms())
        .speed(1.31)
        .direction("up")
        .message();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    let event = json!({"topic": topic, "payload": payload});
    let client = reqwest::Client::new();
    let post = |id: &str, token: Option<&str>, body: Value| {
        let req = client
            .post(cw.url(&format!("/api/v1/rules/{id}/explain")))
            .json(&body);
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
        .send()
    };
    let ok = post("elevator.overspeed", Some(&viewer), json!({"event": event}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    let expressions = &body["expressions"];
    assert_eq!(
        (&expressions[0]["role"], &expressions[1]["role"]),
        (&json!("filter"), &json!("value"))
    );
    assert_eq!(
        body["reference"]["elevator"]["elevator_id"], "E0001",
        "{body}"
    );
    let filter = &expressions[0]["traced"];
    assert_eq!(
        filter["outcome"],
        json!({"is": "value", "value": "true"}),
        "{body}"
    );
    let speed = &filter["parts"][1];
    assert_eq!(
        speed["text"],
        "event.speed_mps > 1.15 * ref.elevator.rated_speed_mps"
    );
    assert_eq!(speed["parts"][0]["outcome"]["value"], "1.31", "{body}");
    assert_eq!(
        speed["parts"][1]["parts"][0]["outcome"]["value"], "1.0",
        "{body}"
    );

    let status = |r: reqwest::Response| r.status().as_u16();
    let no_token = post("elevator.overspeed", None, json!({"event": event}));
    assert_eq!(status(no_token.await.unwrap()), 401);
    let unknown = post("no.such.rule", Some(&viewer), json!({"event": event}));
    assert_eq!(status(unknown.await.unwrap()), 404);
    let bad = post(
        "elevator.overspeed",
        Some(&viewer),
        json!({"event": {"topic": "cw/v1/nope"}}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let err: Value = bad.json().await.unwrap();
    assert_eq!(err["error"]["field"], "event", "{err}");
    let detection = json!({"topic": "cw/v1/kitchen/K-S01/camera/C1/detection",
        "payload": {"ts": now_ms(), "kind": "rodent"}});
    let other = post(
        "elevator.overspeed",
        Some(&viewer),
        json!({"event": detection}),
    )
    .await
    .unwrap();
    assert_eq!(other.status(), 400);
    let err: Value = other.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reads elevator_status events; this one is kitchen_detection"),
        "{err}"
    );
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rules_none_nothing_is_evaluated_and_rules_cannot_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = token(&data, "规则管理员", "admin");
    let cw = Citywatch::start_with(
        "embedded",
        Some(free_port()),
        &data,
        &["--rules", "none"],
        &[],
    )
    .await;
    assert_eq!(cw.get("/api/v1/rules").await, json!([]));
    let r = reqwest::Client::new()
        .put(cw.url("/api/v1/rules/x"))
        .bearer_auth(&admin)
        .body("[[rule]]\nid = \"x\"\nseverity = \"minor\"\nstream = \"elevator_status\"\nfilter = 'event.speed_mps > 3.0'\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let log = std::fs::read_to_string(&cw.log).unwrap();
    assert!(log.contains("rules: none"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_change_at_run_time_through_the_api_and_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    let rule = |id: &str, kind: &str| {
        format!(
            "[[rule]]\nid = \"{id}\"\nseverity = \"major\"\nstream = \"kitchen_detection\"\nfilter = 'event.kind == \"{kind}\"'\ngroup_by = [\"kitchen_id\"]\nkeep_firing_for = \"10m\"\n"
        )
    };
    std::fs::write(rules_dir.join("a.toml"), rule("t.smoke", "smoking")).unwrap();
    let broker = free_port();
    // Rules are changed by an admin.
    let admin = token(&dir.path().join("data"), "规则管理员", "admin");
    let operator = token(&dir.path().join("data"), "控制室", "operator");
    let mut cw = Citywatch::start_with(
        "embedded",
        Some(broker),
        &dir.path().join("data"),
        &["--rules", rules_dir.to_str().unwrap()],
        &[],
    )
    .await;
    let client = reqwest::Client::new();
    for (who, status) in [(None, 401), (Some(&operator), 403)] {
        let mut req = client
            .put(cw.url("/api/v1/rules/t.rodent"))
            .body(rule("t.rodent", "rodent"));
        if let Some(t) = who {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"]["message"].as_str().unwrap().contains("token") || status == 403,
            "{e}"
        );
    }
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(cw.get("/api/v1/rules").await), ["t.smoke"]);

    // An invalid rule is refused with its position and changes nothing.
    let bad = client
        .put(cw.url("/api/v1/rules/t.rodent"))
        .bearer_auth(&admin)
        .body(rule("t.rodent", "rodent").replace("kitchen_detection", "kitchen"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(
        (
            body["errors"][0]["line"].as_u64(),
            body["errors"][0]["column"].as_u64()
        ),
        (Some(4), Some(11)),
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown stream"),
        "{body}"
    );
    let validate: Value = client
        .post(cw.url("/api/v1/rules/validate"))
        .bearer_auth(&admin)
        .body(rule("x", "fire"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(validate["valid"], true);

    // Added through the API: in force for what comes next.
    let put = client
        .put(cw.url("/api/v1/rules/t.rodent"))
        .bearer_auth(&admin)
        .body(rule("t.rodent", "rodent"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(ids(cw.get("/api/v1/rules").await), ["t.smoke", "t.rodent"]);
    let detection = msg(
        "cw/v1/kitchen/K-S01/camera/C1/detection",
        json!({"ts": now_ms(), "kind": "rodent", "confidence": 0.9}).to_string(),
    );
    publish_all(broker, "camera", &[detection]).await;
    let firing = |c: &Value, rule: &str| {
        c["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["rule"] == rule)
    };
    wait_for("t.rodent to fire", async || {
        firing(&cw.get("/api/v1/conditions").await, "t.rodent")
    })
    .await;

    // Deleted: its condition stops.
    let del = client
        .delete(cw.url("/api/v1/rules/t.rodent"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    wait_for("t.rodent to stop", async || {
        !firing(&cw.get("/api/v1/conditions").await, "t.rodent")
    })
    .await;
    assert_eq!(
        client
            .delete(cw.url("/api/v1/rules/t.rodent"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // A new rule file is picked up; an invalid one is not. This one's filter is a macro,
    // which the compiler leaves to the interpreter: the metric names it once it is in force.
    let stranger = rule("t.stranger", "stranger").replace(
        "filter = 'event.kind == \"stranger\"'",
        "filter = '[\"stranger\"].exists(k, k == event.kind)'",
    );
    assert!(stranger.contains("exists"), "{stranger}");
    std::fs::write(rules_dir.join("b.toml"), stranger).unwrap();
    wait_for("the new file to load", async || {
        ids(cw.get("/api/v1/rules").await).contains(&"t.stranger".to_owned())
    })
    .await;
    wait_for("the interpreted rule in the metrics", async || {
        let text = reqwest::get(cw.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("citywatch_rules_interpreted{rule=\"t.stranger\"} 1")
    })
    .await;
    // The alerts' journal has a queue of its own, empty while the journal keeps up.
    let text = cw.metrics().await;
    for line in [
        "citywatch_alerts_queue 0",
        "citywatch_alerts_queue_capacity 64",
        "citywatch_alerts_backpressure_waits_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
    std::fs::write(rules_dir.join("c.toml"), "[[rule]]\nid = \"broken\"\n").unwrap();
    let log = cw.log.clone();
    wait_for("the invalid file to be reported", async || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("rule files changed but are invalid")
    })
    .await;
    assert_eq!(
        ids(cw.get("/api/v1/rules").await),
        ["t.smoke", "t.stranger"]
    );
    cw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_changed_through_the_api_last_across_restarts_until_the_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let (data, rules_dir) = (dir.path().join("data"), dir.path().join("rules"));
    std::fs::create_dir_all(&rules_dir).unwrap();
    let rule = |id: &str, kind: &str| {
        format!(
            "[[rule]]\nid = \"{id}\"\nseverity = \"major\"\nstream = \"kitchen_detection\"\nfilter = 'event.kind == \"{kind}\"'\ngroup_by = [\"kitchen_id\"]\n"
        )
    };
    std::fs::write(rules_dir.join("a.toml"), rule("t.smoke", "smoking")).unwrap();
    let admin = token(&data, "规则管理员", "admin");
    let start = async || {
        Citywatch::start_with(
            "embedded",
            Some(free_port()),
            &data,
            &["--rules", rules_dir.to_str().unwrap()],
            &[],
        )
        .await
    };
    let in_force = async |cw: &Citywatch| -> Vec<(String, bool)> {
        cw.get("/api/v1/rules")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_str().unwrap().to_owned(), r["enabled"] == true))
            .collect()
    };
    let client = reqwest::Client::new();

    // Changed through the API: a rule added, another switched off.
    let mut cw = start().await;
    let put = client
        .put(cw.url("/api/v1/rules/t.rodent"))
        .bearer_auth(&admin)
        .body(rule("t.rodent", "rodent"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let off = client
        .put(cw.url("/api/v1/rules/t.smoke/enabled"))
        .bearer_auth(&admin)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    let changed = vec![("t.smoke".to_owned(), false), ("t.rodent".to_owned(), true)];
    assert_eq!(in_force(&cw).await, changed);
    cw.stop();

    // After a restart, as changed, with who changed what.
    let mut cw = start().await;
    assert_eq!(in_force(&cw).await, changed);
    let log = std::fs::read_to_string(&cw.log).unwrap();
    assert!(log.contains("as last changed through the API"), "{log}");
    let smoke = cw.get("/api/v1/rules/t.smoke").await;
    assert_eq!(smoke["version"], 2, "{smoke}");
    assert_eq!(smoke["changed_by"], "规则管理员");
    assert_eq!(smoke["enabled"], false);
    assert_eq!(smoke["thresholds"][0]["key"], "filter");
    assert_eq!(smoke["source"]["group_by"], json!(["kitchen_id"]));
    let rodent = cw.get("/api/v1/rules/t.rodent").await;
    assert_eq!(
        (rodent["version"].clone(), rodent["versions"].clone()),
        (json!(1), json!(1))
    );
    // The rule as a file, edited and put back: a third version, the history whole.
    let edited = smoke["toml"]
        .as_str()
        .unwrap()
        .replace("severity = \"major\"", "severity = \"critical\"");
    // Made against the version read (2): applied. A second edit made against the same
    // version, as by another operator who read it at the same time, is refused and changes
    // nothing; so is creating (version 0) a rule that exists, or deleting an older version.
    let put_against = async |version: u64, body: String| {
        client
            .put(cw.url(&format!("/api/v1/rules/t.smoke?version={version}")))
            .bearer_auth(&admin)
            .body(body)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(put_against(2, edited.clone()).await.status(), 200);
    let stale = put_against(2, edited.replace("critical", "minor")).await;
    assert_eq!(stale.status(), 409);
    let why: Value = stale.json().await.unwrap();
    assert!(
        why["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is at version 3, not 2"),
        "{why}"
    );
    assert_eq!(put_against(0, edited).await.status(), 409);
    let delete_stale = client
        .delete(cw.url("/api/v1/rules/t.smoke?version=2"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(delete_stale.status(), 409);
    let history = cw.get("/api/v1/rules/t.smoke/history").await;
    let seen: Vec<(u64, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, vec![(2, "disabled"), (3, "changed")]);
    assert_eq!(history[1]["source"]["severity"], "critical", "{history}");
    assert_eq!(history[1]["by"], "规则管理员");
    let none = reqwest::get(cw.url("/api/v1/rules/t.none/history"))
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
    cw.stop();

    // The files changed while it was down: they win, and say so.
    std::fs::write(rules_dir.join("b.toml"), rule("t.stranger", "stranger")).unwrap();
    let cw = start().await;
    assert_eq!(
        in_force(&cw).await,
        [
            ("t.smoke".to_owned(), true),
            ("t.stranger".to_owned(), true)
        ]
    );
    let log = std::fs::read_to_string(&cw.log).unwrap();
    assert!(log.contains("the files win"), "{log}");
    assert!(data.join("rules-changed.json.superseded").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_added_at_once_through_the_api_are_all_kept() {
    // Each change reads the rules in force and replaces them: done at the same time, none
    // may be lost.
    let dir = tempfile::tempdir().unwrap();
    let (data, rules_dir) = (dir.path().join("data"), dir.path().join("rules"));
    std::fs::create_dir_all(&rules_dir).unwrap();
    let rule = |id: &str| {
        format!(
            "[[rule]]\nid = \"{id}\"\nseverity = \"minor\"\nstream = \"kitchen_detection\"\nfilter = 'event.kind == \"smoking\"'\ngroup_by = [\"kitchen_id\"]\n"
        )
    };
    std::fs::write(rules_dir.join("a.toml"), rule("t.first")).unwrap();
    let admin = token(&data, "规则管理员", "admin");
    let cw = Citywatch::start_with(
        "embedded",
        Some(free_port()),
        &data,
        &["--rules", rules_dir.to_str().unwrap()],
        &[],
    )
    .await;
    let client = reqwest::Client::new();
    let puts: Vec<_> = (0..16)
        .map(|i| {
            let id = format!("t.at_once_{i:02}");
            let request = client
                .put(cw.url(&format!("/api/v1/rules/{id}")))
                .bearer_auth(&admin)
                .body(rule(&id));
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    for put in puts {
        assert_eq!(put.await.unwrap(), 201);
    }
    let ids: Vec<String> = cw
        .get("/api/v1/rules")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 17, "{ids:?}");
    assert!((0..16).all(|i| ids.contains(&format!("t.at_once_{i:02}"))));
}
