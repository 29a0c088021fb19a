//! Alerts end to end through a real HTTP receiver: signed webhooks for firing and resolved,
//! retries through a failing receiver, and delivery after a restart.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use control::{Active, ConditionsSnapshot};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const T0: u64 = 1_795_737_600_000;

#[derive(Clone, Default)]
struct Hook {
    got: Arc<Mutex<Vec<(String, String, serde_json::Value)>>>,
    fail_first: Arc<AtomicU32>,
}

async fn receive(State(h): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if h.fail_first.load(Ordering::SeqCst) > 0 {
        h.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let sig = headers["x-citywatch-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    // The receiver checks the signature with its shared secret.
    if sig != alerts::deliver::signature("s3cret", &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    h.got
        .lock()
        .unwrap()
        .push((key, sig, serde_json::from_slice(&body).unwrap()));
    StatusCode::NO_CONTENT
}

async fn serve_hook(listener: tokio::net::TcpListener, hook: Hook) {
    let app = Router::new().route("/hook", post(receive)).with_state(hook);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

fn rules() -> Vec<rules::Rule> {
    rules::load_str(
        "r.toml",
        "[[rule]]\nid = \"e.safety\"\nseverity = \"critical\"\nstream = \"elevator_status\"\nmode = \"state\"\nfilter = 'has(event.safety_circuit_ok) && !event.safety_circuit_ok'\ngroup_by = [\"elevator_id\"]\nroute = [\"maintenance_unit\", \"office\"]\nannotations = { summary_zh = \"安全回路断路\", summary_en = \"Safety circuit open\" }\n",
    )
    .unwrap()
}

fn change(started: bool, at: u64) -> ConditionsSnapshot {
    let active = Active {
        rule: "e.safety".into(),
        group: "E1".into(),
        value: 1.0,
        since: T0,
        late_by_ms: 0,
    };
    ConditionsSnapshot {
        as_of: at + 1,
        active: Default::default(),
        changes: vec![(active, started, at)],
        ..ConditionsSnapshot::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_and_resolved_reach_the_routed_receivers_signed_and_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hook = Hook::default();
    // The receiver fails its first two requests: they are retried.
    hook.fail_first.store(2, Ordering::SeqCst);
    serve_hook(listener, hook.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let a = common::open_without_policies(&dir.path().join("alerts.db"), port);
    tokio::spawn(a.clone().run());
    let rules = rules();

    a.apply(&change(true, T0), &rules).unwrap();
    common::until("two firing notifications", || {
        hook.got.lock().unwrap().len() == 2
    })
    .await;
    a.apply(&change(false, T0 + 10_000), &rules).unwrap();
    let id = alerts::fingerprint("e.safety", "E1");
    common::until("four notifications recorded as delivered", || {
        let notes = a.journal().notifications(Some(&id), 10).unwrap();
        notes.len() == 4 && notes.iter().all(|n| n.status == "delivered")
    })
    .await;

    let got = hook.got.lock().unwrap().clone();
    let mut keys: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{id}-1-R-office"),
            format!("{id}-1-R-unit"),
            format!("{id}-2-R-office"),
            format!("{id}-2-R-unit")
        ]
    );
    let firing = got.iter().find(|g| g.2["state"] == "firing").unwrap();
    assert_eq!(firing.2["version"], 1);
    assert_eq!(firing.2["labels"]["elevator_id"], "E1");
    assert_eq!(firing.2["annotations"]["summary_zh"], "安全回路断路");
    let resolved = got.iter().find(|g| g.2["state"] == "resolved").unwrap();
    assert_eq!(
        (
            resolved.2["version"].as_u64(),
            resolved.2["resolved_ms"].as_u64()
        ),
        (Some(2), Some(T0 + 10_000))
    );

    let stored = a
        .journal()
        .alerts(&alerts::AlertFilter::default(), 10)
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].state.as_str(), stored[0].version),
        ("resolved", 2)
    );
    let notes = a.journal().notifications(Some(&id), 10).unwrap();
    assert_eq!(notes.len(), 4);
    assert!(notes.iter().all(|n| n.status == "delivered"));
    assert_eq!(
        notes.iter().map(|n| n.attempts).sum::<u32>(),
        6,
        "two retries, four deliveries"
    );
    let stats = a.stats().notifications();
    assert!(
        stats.contains(&("webhook".into(), "retried", 2)),
        "{stats:?}"
    );
    assert!(
        stats.contains(&("webhook".into(), "delivered", 4)),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_notifications_are_delivered_after_a_restart() {
    // Nothing listens on the receiver's port yet.
    let port = testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("alerts.db");
    {
        let a = common::open_without_policies(&db, port);
        let runner = tokio::spawn(a.clone().run());
        a.apply(&change(true, T0), &rules()).unwrap();
        common::until("a failed attempt", || {
            a.journal()
                .notifications(None, 10)
                .unwrap()
                .iter()
                .all(|n| n.attempts >= 1)
        })
        .await;
        // The process dies: its delivery loop with it.
        runner.abort();
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let hook = Hook::default();
    serve_hook(listener, hook.clone()).await;
    let a = common::open_without_policies(&db, port);
    tokio::spawn(a.clone().run());
    common::until("delivery after the restart", || {
        a.journal()
            .notifications(None, 10)
            .unwrap()
            .iter()
            .all(|n| n.status == "delivered")
    })
    .await;
    assert_eq!(
        a.journal()
            .alerts(
                &alerts::AlertFilter {
                    state: Some("firing"),
                    ..Default::default()
                },
                10
            )
            .unwrap()
            .len(),
        1
    );
    // Each delivered once: once recorded as delivered a notification is never sent again.
    assert_eq!(hook.got.lock().unwrap().len(), 2);
}
