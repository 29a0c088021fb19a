//! Incidents over the binary with the default pack: a trapped passenger in E0007 and two
//! complaints made beside it, one before the alert and one after, become one incident with
//! three members, routed to an office, linked from the alert and the complaints; an operator
//! closes it with a finding; a restart keeps it and adds nothing, and a complaint after the
//! restart still joins the alert that ended before it.

mod common;

use common::*;
use serde_json::{Value, json};

/// E0007 (朝天门商厦) is registered at (29.55392, 106.52432).
fn complaint(id: &str, ts: u64, metres_north: f64) -> Message {
    msg(
        "cw/v1/complaint/new",
        json!({"ts": ts, "complaint_id": id, "merchant_name": "朝天门商厦物业", "category": "service",
               "lat": 29.55392 + metres_north / 111_320.0, "lon": 106.52432,
               "text": "电梯困人，物业电话打不通"})
        .to_string(),
    )
}

fn stuck(t: u64, from: u64, to: u64) -> Vec<Message> {
    (from..=to)
        .map(|i| {
            testkit::Frame::new("E0007", t + i * 1000)
                .floor(4)
                .in_door_zone(false)
                .speed(0.0)
                .door("closed")
                .occupied(true)
                .message()
        })
        .collect()
}

fn members(detail: &Value) -> Vec<(String, String)> {
    detail["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().to_owned(),
                m["member"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_passenger_and_complaints_beside_the_elevator_are_one_incident() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let operator = token(&dir.path().join("data"), "王科长", "operator");
    let unit = token(&dir.path().join("data"), "维保", "unit:MU-02");
    let mut cw = on_event_clock(&broker, dir.path()).await;
    let t = now_ms() - now_ms() % 1000 - 600_000;
    // A complaint 20 m away before the car is trapped, the frames of 40 s standing closed and
    // occupied (trapped from 30 s), then a complaint 10 m away after it, and one 300 m away.
    publish_all(
        broker.port,
        "incident-12315",
        &[complaint("C-INC-1", t, 20.0)],
    )
    .await;
    publish_all(broker.port, "incident-E0007", &stuck(t, 0, 40)).await;
    publish_all(
        broker.port,
        "incident-12315",
        &[
            complaint("C-INC-2", t + 45_000, -10.0),
            complaint("C-INC-FAR", t + 46_000, 300.0),
        ],
    )
    .await;
    publish_all(broker.port, "incident-E0007", &stuck(t, 41, 60)).await;
    let list = poll_until(&cw, "/api/v1/incidents", |v| {
        v.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["last_ms"] == t + 45_000)
    })
    .await;
    let inc = &list[0];
    assert_eq!(inc["rule"], "incident.elevator");
    assert_eq!(inc["subject"], "elevator/E0007");
    assert_eq!(inc["severity"], "critical");
    assert_eq!(inc["state"], "open");
    assert_eq!(inc["opened_ms"], t);
    assert!(
        inc["office"].as_str().is_some_and(|o| o.starts_with("O-")),
        "{inc}"
    );
    let id = inc["id"].as_str().unwrap().to_owned();
    let office = inc["office"].as_str().unwrap();
    let routed = cw.get(&format!("/api/v1/incidents?office={office}")).await;
    assert_eq!(routed[0]["id"], id.as_str());
    assert_eq!(cw.get("/api/v1/incidents?office=O-NONE").await, json!([]));
    let detail = cw.get(&format!("/api/v1/incidents/{id}")).await;
    let alert = cw
        .get("/api/v1/alerts?rule=elevator.trapped_outside_zone")
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected = vec![
        ("complaint".to_owned(), "C-INC-1".to_owned()),
        ("alert".to_owned(), alert.clone()),
        ("complaint".to_owned(), "C-INC-2".to_owned()),
    ];
    assert_eq!(members(&detail), expected, "{detail}");
    assert_eq!(detail["members"][0]["detail"]["distance_m"], 20);
    // Linked both ways: the alert names it, and so do both complaints (not the far one).
    let a = cw.get(&format!("/api/v1/alerts/{alert}")).await;
    assert_eq!(a["incidents"], json!([id]));
    let complaints = cw.get("/api/v1/complaints").await;
    let linked = |c: &str| {
        complaints["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["complaint_id"] == c)
            .map(|x| x["incidents"].clone())
    };
    assert_eq!(linked("C-INC-1"), Some(json!([id])));
    assert_eq!(linked("C-INC-FAR"), Some(json!([])));
    // Units do not read incidents; anonymous callers do not act on them; operators close
    // them with a finding.
    let denied = reqwest::Client::new()
        .get(cw.url("/api/v1/incidents"))
        .bearer_auth(&unit)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let close = format!("/api/v1/incidents/{id}/close");
    let body = json!({"by": "王科长", "finding": "门机故障致困人，已救出；投诉已回复"});
    let anonymous = reqwest::Client::new()
        .post(cw.url(&close))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let closed: Value = reqwest::Client::new()
        .post(cw.url(&close))
        .bearer_auth(&operator)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(closed["log"][0]["by"], "王科长");
    // The car levels and its door opens: the alert resolves. A restart feeds the complaints
    // again and the journal adds nothing; a complaint after the restart still joins the
    // alert that ended before it (in a new incident: the first is closed).
    let freed: Vec<Message> = [(61, "closed"), (62, "open"), (70, "open")]
        .into_iter()
        .map(|(s, door)| {
            testkit::Frame::new("E0007", t + s * 1000)
                .floor(4)
                .in_door_zone(true)
                .speed(0.0)
                .door(door)
                .occupied(true)
                .message()
        })
        .collect();
    publish_all(broker.port, "incident-E0007", &freed).await;
    poll_until(&cw, &format!("/api/v1/alerts/{alert}"), |a| {
        a["alert"]["state"] == "resolved"
    })
    .await;
    cw.stop();
    let mut cw = on_event_clock(&broker, dir.path()).await;
    publish_all(
        broker.port,
        "incident-12315",
        &[complaint("C-INC-3", t + 80_000, 5.0)],
    )
    .await;
    publish_all(broker.port, "incident-E0007", &stuck(t, 81, 85)).await;
    let after = poll_until(&cw, "/api/v1/incidents", |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(after[1]["id"], id.as_str());
    assert_eq!(after[1]["state"], "closed");
    let detail = cw.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(members(&detail), expected);
    let second = cw
        .get(&format!(
            "/api/v1/incidents/{}",
            after[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        members(&second),
        vec![
            ("alert".to_owned(), alert.clone()),
            ("complaint".to_owned(), "C-INC-3".to_owned())
        ],
        "{second}"
    );
    cw.stop();
}
