//! Every role boundary of the HTTP API, against the binary with its embedded broker: who may
//! read and write what, what a maintenance unit can see (its own alerts only, in the list,
//! the detail, the notifications and the live stream), and `auth = "all"`.

mod common;

use common::{Citywatch, default_rules, free_port, now_ms, publish_all, token, trapped};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// (status, JSON body) of a call with an optional token.
async fn call(
    cw: &Citywatch,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), cw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The firing trapped-passenger alert of `elevator`.
async fn alert_of(cw: &Citywatch, elevator: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = cw.get("/api/v1/alerts?state=firing").await;
        if let Some(a) = all
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["body"]["labels"]["elevator_id"] == elevator)
        {
            return a["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no alert for {elevator}: {all}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_hold_at_every_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let cw = Citywatch::start_with(
        "embedded",
        Some(port),
        &data,
        &["--rules", default_rules().to_str().unwrap()],
        &[],
    )
    .await;
    let viewer = token(&data, "大屏", "viewer");
    let operator = token(&data, "值班员", "operator");
    let admin = token(&data, "管理员", "admin");
    let mu01 = token(&data, "江北维保", "unit:MU-01");
    let mu02 = token(&data, "安达维保", "unit:MU-02");

    // E0001 is maintained by MU-02, E0003 by MU-01 (examples/reference/elevators.csv).
    let ts = now_ms();
    publish_all(port, "roles", &[trapped("E0001", ts), trapped("E0003", ts)]).await;
    let a02 = alert_of(&cw, "E0001").await;
    let a01 = alert_of(&cw, "E0003").await;
    let ack = |id: &str| format!("/api/v1/alerts/{id}/ack");

    // Who is calling.
    assert_eq!(
        call(&cw, "GET", "/api/v1/me", Some(&mu01), None).await.1,
        json!({"name": "江北维保", "role": "unit:MU-01", "auth": "writes"})
    );
    assert_eq!(
        call(&cw, "GET", "/api/v1/me", None, None).await.1["role"],
        Value::Null
    );
    let (status, e) = call(&cw, "GET", "/api/v1/me", Some("cw_nobody"), None).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // Writes: no token 401, a viewer 403, another unit 403; the right unit and operators may.
    let (status, e) = call(&cw, "POST", &ack(&a02), None, Some(json!({}))).await;
    assert_eq!(status, 401, "{e}");
    let (status, e) = call(&cw, "POST", &ack(&a02), Some(&viewer), Some(json!({}))).await;
    assert_eq!(status, 403, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("viewer"));
    let (status, e) = call(&cw, "POST", &ack(&a02), Some(&mu01), Some(json!({}))).await;
    assert_eq!(status, 403, "{e}");
    let (status, a) = call(&cw, "POST", &ack(&a02), Some(&mu02), Some(json!({}))).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["body"]["ops"]["acked_by"], "安达维保");
    let (status, _) = call(
        &cw,
        "POST",
        &format!("/api/v1/alerts/{a01}/comment"),
        Some(&operator),
        Some(json!({"text": "已通知"})),
    )
    .await;
    assert_eq!(status, 200);

    // A unit reads only its own alerts: list, detail, notifications, conditions.
    let (_, list) = call(&cw, "GET", "/api/v1/alerts", Some(&mu01), None).await;
    let list = list.as_array().unwrap();
    assert!(!list.is_empty());
    assert!(
        list.iter()
            .all(|a| a["body"]["labels"]["maintenance_unit"] == "MU-01"),
        "{list:?}"
    );
    let (status, _) = call(
        &cw,
        "GET",
        &format!("/api/v1/alerts/{a02}"),
        Some(&mu01),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, d) = call(
        &cw,
        "GET",
        &format!("/api/v1/alerts/{a01}"),
        Some(&mu01),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(d["alert"]["id"], a01.as_str());
    let (status, _) = call(
        &cw,
        "GET",
        &format!("/api/v1/notifications?alert={a02}"),
        Some(&mu01),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, e) = call(&cw, "GET", "/api/v1/notifications", Some(&mu01), None).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("alert")));
    let (status, n) = call(
        &cw,
        "GET",
        &format!("/api/v1/notifications?alert={a01}"),
        Some(&mu01),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(!n.as_array().unwrap().is_empty(), "MU-01 was notified");
    // The summary: a unit counts its own alerts only.
    let (_, all) = call(&cw, "GET", "/api/v1/alerts/summary", Some(&operator), None).await;
    let (_, own) = call(&cw, "GET", "/api/v1/alerts/summary", Some(&mu01), None).await;
    assert_eq!(
        (all["trapped_now"].as_u64(), own["trapped_now"].as_u64()),
        (Some(2), Some(1))
    );
    let units: Vec<&str> = own["units_today"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["unit"].as_str())
        .collect();
    assert_eq!(units, ["MU-01"], "{own}");
    let (_, c) = call(&cw, "GET", "/api/v1/conditions", Some(&mu01), None).await;
    let c = c["conditions"].as_array().unwrap();
    assert!(!c.is_empty());
    assert!(c.iter().all(|c| c["labels"]["maintenance_unit"] == "MU-01"));
    // The map shows a unit its own elevators only; the registries are not for it.
    let (_, map) = call(&cw, "GET", "/api/v1/map", Some(&mu01), None).await;
    let lifts = map["elevators"].as_array().unwrap();
    assert!(
        !lifts.is_empty() && lifts.iter().all(|e| e["unit"] == "MU-01"),
        "{map}"
    );
    assert_eq!(map["kitchens"], json!([]));
    let (_, all) = call(&cw, "GET", "/api/v1/map", Some(&viewer), None).await;
    assert!(all["elevators"].as_array().unwrap().len() > lifts.len());
    for path in ["/api/v1/reference", "/api/v1/reference/elevators"] {
        assert_eq!(
            call(&cw, "GET", path, Some(&mu01), None).await.0,
            403,
            "{path}"
        );
        assert_eq!(
            call(&cw, "GET", path, Some(&viewer), None).await.0,
            200,
            "{path}"
        );
    }

    // Silences need an operator; rules need an admin.
    let silence = json!({"matchers": ["rule=elevator.offline"], "ends_ms": now_ms() + 60_000,
                         "author": "x", "reason": "test"});
    for t in [&viewer, &mu01] {
        let (status, _) = call(
            &cw,
            "POST",
            "/api/v1/silences",
            Some(t),
            Some(silence.clone()),
        )
        .await;
        assert_eq!(status, 403);
    }
    let (status, s) = call(
        &cw,
        "POST",
        "/api/v1/silences",
        Some(&operator),
        Some(silence),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    let expire = format!("/api/v1/silences/{}", s["id"].as_str().unwrap());
    assert_eq!(call(&cw, "DELETE", &expire, Some(&mu01), None).await.0, 403);
    assert_eq!(
        call(&cw, "DELETE", &expire, Some(&operator), None).await.0,
        204
    );
    let off = Some(json!({"enabled": false}));
    let enabled = "/api/v1/rules/elevator.high_vibration/enabled";
    for t in [&viewer, &operator, &mu01] {
        assert_eq!(call(&cw, "PUT", enabled, Some(t), off.clone()).await.0, 403);
    }
    let (status, r) = call(&cw, "PUT", enabled, Some(&admin), off).await;
    assert_eq!((status, &r["enabled"]), (200, &json!(false)), "{r}");
    let (_, r) = call(
        &cw,
        "GET",
        "/api/v1/rules/elevator.high_vibration",
        None,
        None,
    )
    .await;
    assert_eq!(r["enabled"], false);
    let (status, e) = call(&cw, "PUT", enabled, Some(&admin), Some(json!({"on": 1}))).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("enabled"))
    );
    assert_eq!(
        call(
            &cw,
            "DELETE",
            "/api/v1/rules/elevator.high_vibration",
            Some(&operator),
            None
        )
        .await
        .0,
        403
    );

    // Tokens: an admin creates and revokes them; nobody else may, and no hash is ever shown.
    for t in [&viewer, &operator, &mu01] {
        assert_eq!(
            call(&cw, "GET", "/api/v1/tokens", Some(t), None).await.0,
            403
        );
    }
    let new = json!({"name": "夜班", "role": "operator"});
    assert_eq!(
        call(
            &cw,
            "POST",
            "/api/v1/tokens",
            Some(&operator),
            Some(new.clone())
        )
        .await
        .0,
        403
    );
    let (status, created) = call(&cw, "POST", "/api/v1/tokens", Some(&admin), Some(new)).await;
    assert_eq!(status, 201, "{created}");
    let night = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&cw, "GET", "/api/v1/me", Some(&night), None).await.1["name"],
        "夜班"
    );
    let (_, listed) = call(&cw, "GET", "/api/v1/tokens", Some(&admin), None).await;
    assert!(listed.to_string().contains("夜班"));
    assert!(!listed.to_string().contains("sha256"), "{listed}");
    let bad = json!({"name": "x", "role": "mayor"});
    let (status, e) = call(&cw, "POST", "/api/v1/tokens", Some(&admin), Some(bad)).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("role")));
    let revoke = "/api/v1/tokens/%E5%A4%9C%E7%8F%AD";
    assert_eq!(
        call(&cw, "DELETE", revoke, Some(&operator), None).await.0,
        403
    );
    assert_eq!(call(&cw, "DELETE", revoke, Some(&admin), None).await.0, 204);
    assert_eq!(
        call(&cw, "GET", "/api/v1/me", Some(&night), None).await.0,
        401
    );
    assert_eq!(call(&cw, "DELETE", revoke, Some(&admin), None).await.0, 404);

    // The live stream of a unit carries its own alerts only: both alerts change now, MU-02's
    // first; once MU-01's change arrives, MU-02's would have come before it.
    let stream = reqwest::Client::new()
        .get(cw.url("/api/v1/alerts/stream"))
        .bearer_auth(&mu01)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    for (id, text) in [(&a02, "MU-02 的"), (&a01, "MU-01 的")] {
        let (status, _) = call(
            &cw,
            "POST",
            &format!("/api/v1/alerts/{id}/comment"),
            Some(&operator),
            Some(json!({"text": text})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let mut body = stream.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(&a01) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("MU-01's change on its stream in time")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains(&a02), "MU-01's stream carried MU-02's alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_all_every_read_needs_a_token_but_the_page_and_probes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cw = Citywatch::start_with(
        "embedded",
        Some(free_port()),
        &data,
        &["--auth", "all"],
        &[],
    )
    .await;
    let viewer = token(&data, "大屏", "viewer");
    for path in [
        "/api/v1/counters",
        "/api/v1/tiles",
        "/api/v1/map",
        "/metrics",
    ] {
        let (status, e) = call(&cw, "GET", path, None, None).await;
        assert_eq!(status, 401, "{path}: {e}");
        assert_eq!(call(&cw, "GET", path, Some("cw_nobody"), None).await.0, 401);
        let r = reqwest::Client::new()
            .get(cw.url(path))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with a viewer's token");
    }
    for path in [
        "/",
        "/app.js",
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
    ] {
        let r = reqwest::get(cw.url(path)).await.unwrap();
        assert_eq!(r.status(), 200, "{path} is open");
    }
    assert_eq!(
        call(&cw, "GET", "/api/v1/me", Some(&viewer), None).await.1["auth"],
        "all"
    );
    // The guard and the handler identify a caller once: a request costs one from the budget
    // (a burst of 100; the calls above spent some, the rate refills 20/s).
    let fresh = token(&data, "第二块大屏", "viewer");
    for n in 0..100 {
        let (status, e) = call(&cw, "GET", "/api/v1/me", Some(&fresh), None).await;
        assert_eq!(status, 200, "request {n}: {e}");
    }
}
