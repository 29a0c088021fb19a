//! Reference data changed at run time through the API, against the binary with its embedded
//! broker: the registries (counters), `ref` in rules (a lower guidance price), alert routing
//! (an elevator's new maintenance unit) all follow without a restart, a bad table changes
//! nothing and says where it is wrong, and the change is still there after a restart.

mod common;

use common::{
    Citywatch, default_rules, free_port, msg, now_ms, poll_until, publish_all, token, trapped,
};
use serde_json::{Value, json};

async fn put(
    cw: &Citywatch,
    path: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .put(cw.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn registered(counters: &Value) -> i64 {
    counters["elevators"]["registered"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_change_at_run_time_and_stay_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let rules = default_rules();
    let args = ["--rules", rules.to_str().unwrap()];
    let mut cw = Citywatch::start_with("embedded", Some(port), &data, &args, &[]).await;
    let admin = token(&data, "管理员", "admin");
    let viewer = token(&data, "大屏", "viewer");

    let before = poll_until(&cw, "/api/v1/counters", |c| registered(c) > 0).await;
    let n = registered(&before);
    let tables = cw.get("/api/v1/reference").await;
    let elevators_row = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "elevators")
        .unwrap()
        .clone();
    assert_eq!(elevators_row["rows"], n);

    // The registry, with E0001 moved to maintenance unit MU-09 and one elevator added.
    let original =
        std::fs::read_to_string(common::repo().join("examples/reference/elevators.csv")).unwrap();
    let moved = original.replacen(",MU-02,", ",MU-09,", 1);
    assert!(moved.lines().nth(1).unwrap().starts_with("E0001,") && moved.contains("MU-09"));
    let grown = format!("{moved}E9001,新楼,yuzhong,29.55,106.56,MU-01,1.5,18\n");

    // Only an admin may change it; a bad table changes nothing and says where and why.
    let (status, _) = put(
        &cw,
        "/api/v1/reference/elevators",
        &viewer,
        "text/csv",
        grown.clone(),
    )
    .await;
    assert_eq!(status, 403);
    let broken = format!("{moved}E9002,缺列的楼,yuzhong\n");
    let (status, body) = put(
        &cw,
        "/api/v1/reference/elevators",
        &admin,
        "text/csv",
        broken,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let line = original.lines().count() + 1;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("elevators.csv:{line}")),
        "{message}"
    );
    let (status, body) = put(
        &cw,
        "/api/v1/reference/lifts",
        &admin,
        "text/csv",
        grown.clone(),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = put(
        &cw,
        "/api/v1/reference/elevators",
        &admin,
        "text/csv",
        grown,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"table": "elevators", "rows": n + 1, "kept": true})
    );

    // The registry counter follows.
    poll_until(&cw, "/api/v1/counters", |c| registered(c) == n + 1).await;
    let e = cw.get("/api/v1/reference/elevators").await;
    assert_eq!(e.as_array().unwrap().len() as i64, n + 1);

    // Alert routing follows: E0001's trapped passenger goes to its new unit.
    publish_all(port, "reference", &[trapped("E0001", now_ms())]).await;
    let alerts = poll_until(&cw, "/api/v1/alerts?rule=elevator.trapped_alarm", |a| {
        !a.as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        alerts[0]["body"]["labels"]["maintenance_unit"], "MU-09",
        "{alerts}"
    );

    // `ref` in rules follows: pork's guidance price in M-JFB drops from 30 to 10, so three sales at 12
    // (under the old price, 20 % over the new one) are selling above guidance.
    let prices =
        std::fs::read_to_string(common::repo().join("examples/reference/guidance_prices.csv"))
            .unwrap()
            .replace("M-JFB,pork,30.0", "M-JFB,pork,10.0");
    let (status, body) = put(
        &cw,
        "/api/v1/reference/guidance_prices",
        &admin,
        "text/csv",
        prices,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // In force from the dataflow's input time when the change reaches it (the PUT has
    // returned by then); sales published after it are judged by the new price.
    let t = now_ms();
    let sales: Vec<_> = (0..3)
        .map(|i| {
            msg(
                "cw/v1/market/M-JFB/scale/SC001/sale",
                json!({"ts": t + i, "stall_id": "M-JFB-ST01", "goods_code": "pork", "weight_kg": 1.0, "unit_price": 12.0, "total": 12.0})
                    .to_string(),
            )
        })
        .collect();
    publish_all(port, "reference-sales", &sales).await;
    poll_until(&cw, "/api/v1/conditions", |c| {
        c["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["rule"] == "market.over_guidance")
    })
    .await;

    // After a restart the changed tables are loaded over the --reference directory.
    cw.stop();
    let cw = Citywatch::start_with("embedded", Some(free_port()), &data, &args, &[]).await;
    poll_until(&cw, "/api/v1/counters", |c| registered(c) == n + 1).await;
    let prices = cw.get("/api/v1/reference/guidance_prices").await;
    assert!(
        prices
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["market_id"] == "M-JFB" && p["goods_code"] == "pork" && p["price"] == 10.0),
        "{prices}"
    );
}
