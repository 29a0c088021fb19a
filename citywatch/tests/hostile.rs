//! citywatch against a hostile world, over the binary: rule text built to overflow the parser's
//! stack, every write of the OpenAPI document tried without a token and with each role, a
//! stranger's request flood, and a message larger than the client's old packet limit.

mod common;

use common::*;
use serde_json::{Value, json};

/// A rule file whose filter is `filter`.
fn rule_with(filter: &str) -> String {
    format!(
        "[[rule]]\nid = \"x.deep\"\ndescription = \"deep\"\nseverity = \"minor\"\n\
         stream = \"elevator_status\"\nfilter = '{filter}'\n"
    )
}

/// The shapes that used to overflow a tokio worker's stack and abort the process, and those
/// the interpreter would panic on (a struct literal, a macro over a scalar) on a worker.
fn hostile_rule_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "a struct literal behind a branch the sample does not take",
            rule_with("event.floor > 100 && Foo{a: 1} == 1"),
        ),
        (
            "a macro over a scalar field",
            rule_with("event.floor.exists(x, x > 1)"),
        ),
        (
            "300 parentheses",
            rule_with(&format!("{}1{} > 0", "(".repeat(300), ")".repeat(300))),
        ),
        (
            "a 1 000-deep list",
            rule_with(&format!(
                "size({}1{}) > 0",
                "[".repeat(1000),
                "]".repeat(1000)
            )),
        ),
        (
            "a 50 000-term sum",
            rule_with(&format!("{} > 0", vec!["1"; 50_000].join("+"))),
        ),
        (
            "a 20 000-link member chain",
            rule_with(&format!("event{} > 0", ".a".repeat(20_000))),
        ),
        (
            "a 100-term sum",
            rule_with(&format!("{} > 0", vec!["event.floor"; 100].join(" + "))),
        ),
        (
            "TOML arrays 10 000 deep",
            format!("x = {}1{}\n", "[".repeat(10_000), "]".repeat(10_000)),
        ),
    ]
}

async fn send(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_text_built_to_overflow_the_parser_is_refused_and_the_process_lives() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::copy(
        default_rules().join("kitchens.toml"),
        rules.join("kitchens.toml"),
    )
    .unwrap();
    let viewer = token(&data, "大屏", "viewer");
    let admin = token(&data, "规则管理员", "admin");
    let cw = Citywatch::start_with(
        "embedded",
        Some(free_port()),
        &data,
        &["--rules", rules.to_str().unwrap()],
        &[],
    )
    .await;
    let validate = cw.url("/api/v1/rules/validate");
    for (what, file) in hostile_rule_files() {
        // A stranger is refused before the body is looked at.
        let (status, err) = send(reqwest::Method::POST, validate.clone(), None, file.clone()).await;
        assert_eq!((what, status), (what, 401), "{err}");
        // A token holder learns which limit it passed.
        let (status, v) = send(
            reqwest::Method::POST,
            validate.clone(),
            Some(&viewer),
            file.clone(),
        )
        .await;
        assert_eq!(
            (what, status, &v["valid"]),
            (what, 200, &json!(false)),
            "{v}"
        );
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("rule_limits.")
                || message.contains("not supported")
                || message.contains("macro"),
            "{what}: {message}"
        );
        // The same through a change of the rules in force.
        let (status, v) = send(
            reqwest::Method::PUT,
            cw.url("/api/v1/rules/x.deep"),
            Some(&admin),
            file,
        )
        .await;
        assert_eq!((what, status), (what, 400), "{v}");
    }
    // Text on which the CEL parser itself fails (found by the fuzzer): a syntax error.
    let found =
        std::fs::read(repo().join("fuzz/regressions/rules/cel-parser-unreachable-unary.toml"))
            .unwrap();
    let (status, v) = send(
        reqwest::Method::POST,
        validate.clone(),
        Some(&viewer),
        found,
    )
    .await;
    assert_eq!((status, &v["valid"]), (200, &json!(false)), "{v}");
    // The same text in a rules directory: refused at start with the limit's name.
    std::fs::write(rules.join("deep.toml"), &hostile_rule_files()[2].1).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citywatch"))
        .args(["rules", "check", rules.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("max_expr_depth"), "{text}");
    // Still alive, and a sound rule is still judged valid.
    let (status, v) = send(
        reqwest::Method::POST,
        validate,
        Some(&viewer),
        rule_with("event.speed_mps > 3.0"),
    )
    .await;
    assert_eq!((status, &v["valid"]), (200, &json!(true)), "{v}");
    assert_eq!(cw.get("/healthz").await["status"], "ok");
}

/// A concrete URL for an OpenAPI path.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0000000000000000")
        .replace("{action}", "ack")
        .replace("{table}", "elevators")
        .replace("{name}", "nobody")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_of_the_openapi_document_checks_its_token_and_role_before_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = [
        ("viewer", token(&data, "大屏", "viewer")),
        ("unit", token(&data, "安达维保", "unit:MU-02")),
        ("operator", token(&data, "控制室", "operator")),
        ("admin", token(&data, "管理员", "admin")),
    ];
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let cw = Citywatch::start_with(
        "embedded",
        Some(free_port()),
        &data,
        &["--rules", rules.to_str().unwrap()],
        &[],
    )
    .await;
    let doc = cw.get("/api/v1/openapi.json").await;
    let mut writes = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method == "get" {
                continue;
            }
            writes += 1;
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = cw.url(&concrete(path));
            let what = format!("{method} {path}");
            // A broken body: no token is 401 whatever the body; a role that may not is 403.
            let (status, err) = send(m.clone(), url.clone(), None, "{").await;
            assert_eq!((&what, status), (&what, 401), "{err}");
            assert_eq!(err["error"]["code"], "unauthorized", "{what}: {err}");
            let (status, _) = send(m.clone(), url.clone(), Some("cw_forged"), "{").await;
            assert_eq!((&what, status), (&what, 401));
            let admin_only = ["/api/v1/rules/{", "/api/v1/reference", "/api/v1/tokens"]
                .iter()
                .any(|p| path.starts_with(p));
            // Checking a rule file, or explaining a rule, changes nothing: any role may.
            let validate = path == "/api/v1/rules/validate" || path.ends_with("/explain");
            for (role, t) in &tokens {
                let (status, body) = send(m.clone(), url.clone(), Some(t), "{").await;
                let may = validate
                    || *role == "admin"
                    || (*role == "operator" && !admin_only)
                    || (*role == "unit" && path.starts_with("/api/v1/alerts/"));
                if may {
                    assert!(
                        ![401, 403].contains(&status) && status < 500,
                        "{what} as {role}: {status} {body}"
                    );
                } else {
                    assert_eq!((&what, *role, status), (&what, *role, 403), "{body}");
                }
            }
        }
    }
    assert!(writes >= 10, "the document lists {writes} writes");

    // Token names are checked; a silence that does not exist is named as such.
    let admin = &tokens[3].1;
    for bad in ["", "a\u{7}b", "<script>", &"长".repeat(65)] {
        let (status, err) = send(
            reqwest::Method::POST,
            cw.url("/api/v1/tokens"),
            Some(admin),
            json!({"name": bad, "role": "viewer"}).to_string(),
        )
        .await;
        assert_eq!(
            (status, &err["error"]["field"]),
            (400, &json!("name")),
            "{bad:?}: {err}"
        );
    }
    let (status, err) = send(
        reqwest::Method::DELETE,
        cw.url("/api/v1/silences/nosuch"),
        Some(admin),
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no silence"),
        "{err}"
    );

    // A reference table past its limits is refused as it is read, not parsed whole.
    let (status, err) = send(
        reqwest::Method::PUT,
        cw.url("/api/v1/reference/elevators"),
        Some(admin),
        vec![b' '; (64 << 20) + 1],
    )
    .await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (413, &json!("too_large")),
        "{err}"
    );
    let many = format!(
        "elevator_id,building,district,lat,lon,maintenance_unit,rated_speed_mps,floors\n{}",
        "E1,B,D,0,0,MU,1,2\n".repeat(1_000_001)
    );
    let r = reqwest::Client::new()
        .put(cw.url("/api/v1/reference/elevators"))
        .bearer_auth(admin)
        .header("content-type", "text/csv")
        .body(many)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1000001 rows"),
        "{err}"
    );
    assert_eq!(cw.get("/api/v1/reference").await["tables"][0]["rows"], 60);

    // A stranger's flood is paced per address; a token holder is not slowed by it.
    let client = reqwest::Client::new();
    // Bursts of 200, then 50/s: however slow each request, 2 000 outrun the budget.
    let mut paced = false;
    for _ in 0..2000 {
        let r = client.get(cw.url("/api/v1/counters")).send().await.unwrap();
        if r.status() == 429 {
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["code"], "too_many_requests", "{e}");
            paced = true;
            break;
        }
    }
    assert!(paced, "no request of 2 000 was paced");
    let r = client
        .get(cw.url("/api/v1/counters"))
        .bearer_auth(&tokens[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The probes stay open.
    let r = client.get(cw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_any_limit_is_dead_lettered_and_the_session_goes_on() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let cw = Citywatch::start(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        None,
        &dir.path().join("data"),
    )
    .await;
    let t = now_ms();
    let mut messages = vec![msg(
        "cw/v1/elevator/E0001/status",
        format!("{{\"ts\":{t},\"pad\":\"{}\"}}", "x".repeat(1_150_000)),
    )];
    for i in 0..20u64 {
        messages.push(msg(
            "cw/v1/elevator/E0002/status",
            json!({"ts": t + i, "floor": 3, "in_door_zone": true, "speed_mps": 0.0,
                "direction": "stop", "door": "closed"})
            .to_string(),
        ));
    }
    let big = messages[0].1.len();
    publish_all(broker.port, "big-publisher", &messages).await;
    cw.acked(21).await;
    let dead = cw.get("/api/v1/deadletters?reason=too_large").await;
    let item = &dead["items"][0];
    assert_eq!(item["truncated_from"], big, "{item}");
    assert!(
        item["message"].as_str().unwrap().contains("E0001"),
        "{item}"
    );
    let m = cw.metrics().await;
    assert!(
        m.contains("citywatch_mqtt_connection_changes_total{state=\"connected\"} 1\n"),
        "one connection, no reconnect loop:\n{m}"
    );
    let ready = reqwest::get(cw.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// Connects to `port` as `user` (or anonymously) and returns whether the broker accepted.
async fn broker_accepts(port: u16, user: Option<(&str, &str)>) -> bool {
    let mut opts = testkit::mqtt_options("probe", "127.0.0.1", port);
    if let Some((name, password)) = user {
        opts.set_credentials(name, password);
    }
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)))) => {
                return a.code == rumqttc::ConnectReturnCode::Success;
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return false,
            Err(_) => panic!("no answer from the broker"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_with_users_takes_only_them() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let hash = |p: &str| {
        sha2::Sha256::digest(p.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let users = dir.path().join("mqtt-users");
    std::fs::write(
        &users,
        format!(
            "# citywatch itself, and one terminal\ncitywatch {}\nE0001 {}\n",
            hash("cw-pass"),
            hash("e1-pass")
        ),
    )
    .unwrap();
    let port = free_port();
    // Ready means citywatch's own connection was let in with its credentials.
    let cw = Citywatch::start_with(
        "embedded",
        Some(port),
        &dir.path().join("data"),
        &[
            "--embedded-broker-users",
            users.to_str().unwrap(),
            "--mqtt-username",
            "citywatch",
        ],
        &[("CITYWATCH_MQTT_PASSWORD", "cw-pass")],
    )
    .await;
    assert!(!broker_accepts(port, None).await, "anonymous");
    assert!(
        !broker_accepts(port, Some(("E0001", "guess"))).await,
        "wrong password"
    );
    assert!(broker_accepts(port, Some(("E0001", "e1-pass"))).await);
    assert_eq!(cw.get("/healthz").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_why_the_broker_is_out_of_reach() {
    let dir = tempfile::tempdir().unwrap();
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    // Nothing listens there.
    let mqtt = format!("mqtt://127.0.0.1:{}", free_port());
    let _cw = Citywatch::spawn(http, &mqtt, None, &dir.path().join("data"), &[], &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let body = loop {
        if let Ok(r) = reqwest::get(format!("http://{http}/readyz")).await {
            assert_eq!(r.status(), 503);
            let body: Value = r.json().await.unwrap();
            if body["mqtt_error"].is_object() {
                break body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mqtt_error on /readyz"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(body["mqtt"], "disconnected", "{body}");
    let message = body["mqtt_error"]["message"].as_str().unwrap();
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(body["mqtt_error"]["at_ms"].as_u64().is_some(), "{body}");
}
