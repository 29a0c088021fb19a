//! The alert lifecycle on a hand-moved wall clock: escalation on schedule, operator and
//! field actions, silences, inhibition, and what a restart keeps. The escalation scenario
//! delivers to a real HTTP receiver; the others read the journal.

mod common;

use alerts::{ActError, Action, Alerts, Clock, FieldState, NewSilence, Options, Policies};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use control::{Active, ConditionsSnapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T0: u64 = 1_795_737_600_000;
const MIN: u64 = 60_000;

type Got = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn receive(State(got): State<Got>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers["x-citywatch-signature"].to_str().unwrap();
    if sig != alerts::deliver::signature("s3cret", &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    got.lock()
        .unwrap()
        .push((key, serde_json::from_slice(&body).unwrap()));
    StatusCode::NO_CONTENT
}

/// A webhook receiver on a free port: what it got, and its port.
async fn hook() -> (Got, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Got::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (got, port)
}

const RULES: &str = r#"
[[rule]]
id = "e.trapped"
severity = "critical"
stream = "elevator_status"
mode = "state"
filter = 'has(event.occupied) && event.occupied'
group_by = ["elevator_id"]
labels = { domain = "elevator", fault = "trapped" }
route = ["maintenance_unit", "office"]

[[rule]]
id = "e.power"
severity = "major"
stream = "elevator_status"
mode = "state"
filter = 'has(event.power_ok) && !event.power_ok'
group_by = ["elevator_id"]
labels = { domain = "elevator", fault = "power_failure" }
route = ["maintenance_unit"]
inhibits = ["e.trapped"]

[[rule]]
id = "c.late"
severity = "major"
stream = "complaint_new"
group_by = ["complaint_id"]
deadline = { working_days = 7, done_stream = "complaint_status", done = 'event.status == "accepted"' }
labels = { domain = "complaint" }
route = ["office"]

[[rule]]
id = "k.rodent"
severity = "critical"
stream = "kitchen_detection"
group_by = ["kitchen_id", "camera_id", "kind"]
labels = { domain = "kitchen" }
route = ["office"]

[[rule]]
id = "market.residue_fail"
severity = "critical"
stream = "market_residue"
filter = 'event.result == "fail"'
group_by = ["market_id", "stall_id", "goods_code"]
labels = { domain = "market" }
route = ["office"]

[[rule]]
id = "c.burst"
severity = "major"
stream = "complaint_new"
mode = "event"
group_by = ["merchant_id"]
labels = { domain = "complaint" }
route = ["office"]
"#;

fn rules() -> Vec<rules::Rule> {
    rules::load_str("r.toml", RULES).unwrap()
}

fn change(rule: &str, group: &str, started: bool, at: u64) -> ConditionsSnapshot {
    let active = Active {
        rule: rule.into(),
        group: group.into(),
        value: 1.0,
        since: at,
        late_by_ms: 0,
    };
    ConditionsSnapshot {
        as_of: at + 1,
        active: Default::default(),
        changes: vec![(active, started, at)],
        ..ConditionsSnapshot::default()
    }
}

struct Setup {
    alerts: Arc<Alerts>,
    clock: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

impl Setup {
    fn new(port: u16) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("alerts.db");
        let clock = Arc::new(AtomicU64::new(T0));
        let alerts = open(&db, port, &clock);
        Setup {
            alerts,
            clock,
            _dir: dir,
            db,
        }
    }

    fn advance(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
        self.alerts.tick().unwrap();
    }

    fn alert(&self, rule: &str, group: &str) -> alerts::AlertRow {
        self.alerts
            .journal()
            .alert(&alerts::fingerprint(rule, group))
            .unwrap()
            .unwrap()
    }

    /// The status of each of an alert's escalation steps.
    fn steps(&self, id: &str) -> Vec<String> {
        self.alerts
            .journal()
            .escalations_of(id)
            .unwrap()
            .into_iter()
            .map(|e| e.status)
            .collect()
    }

    /// (receiver, status) of an alert's notifications of one version.
    fn outbox(&self, id: &str, version: u64) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .alerts
            .journal()
            .notifications(Some(id), 100)
            .unwrap()
            .into_iter()
            .filter(|n| n.version == version)
            .map(|n| (n.receiver_id, n.status))
            .collect();
        v.sort();
        v
    }
}

fn open(db: &std::path::Path, port: u16, clock: &Arc<AtomicU64>) -> Arc<Alerts> {
    Alerts::open_with(
        db,
        common::reference(port),
        Options {
            policies: Policies::domain_default(),
            clock: Clock::Manual(clock.clone()),
            ..Options::default()
        },
    )
    .unwrap()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The port of nothing: deliveries there fail and stay pending, which these tests do not run.
fn nowhere() -> u16 {
    testkit::free_port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_passenger_escalates_on_schedule_and_every_receiver_hears_the_end() {
    let (got, port) = hook().await;
    let s = Setup::new(port);
    tokio::spawn(s.alerts.clone().run());
    let id = alerts::fingerprint("e.trapped", "E1");

    s.alerts
        .apply(&change("e.trapped", "E1", true, T0), &rules())
        .unwrap();
    let keys = |got: &Got| {
        let mut k: Vec<String> = got.lock().unwrap().iter().map(|g| g.0.clone()).collect();
        k.sort();
        k
    };
    until("the unit and the office are told", || {
        got.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        keys(&got),
        [format!("{id}-1-R-office"), format!("{id}-1-R-unit")]
    );

    // Four minutes: nothing yet. Five: not acknowledged, the duty leader is told.
    s.advance(4 * MIN);
    assert_eq!(s.alert("e.trapped", "E1").version, 1);
    s.advance(MIN);
    let a = s.alert("e.trapped", "E1");
    assert_eq!(
        (a.version, a.body["ops"]["escalation_step"].as_u64()),
        (2, Some(1))
    );
    until("the duty leader is told", || got.lock().unwrap().len() == 3).await;
    let escalated = got.lock().unwrap()[2].1.clone();
    assert_eq!(escalated["event"]["kind"], "escalated");
    assert_eq!(escalated["event"]["notify"][0], "duty_leader");
    assert_eq!(escalated["receiver_id"], serde_json::Value::Null);

    // The unit responds (响应): acknowledged; then it is on site (到场).
    let a = s
        .alerts
        .act(&id, &Action::Field(FieldState::Responded), "王师傅")
        .unwrap();
    assert_eq!(a.acked_ms, Some(T0 + 5 * MIN));
    assert_eq!(a.body["ops"]["field_state"], "responded");
    s.advance(10 * MIN);
    s.alerts
        .act(&id, &Action::Field(FieldState::OnSite), "王师傅")
        .unwrap();

    // Thirty minutes and not resolved: the duty leader again, and the alert is overdue.
    s.advance(15 * MIN + 1);
    let a = s.alert("e.trapped", "E1");
    assert_eq!(a.body["ops"]["overdue"], true);
    assert_eq!(a.body["ops"]["escalation_step"], 2);
    until("the duty leader is told again", || {
        got.lock().unwrap().len() == 4
    })
    .await;

    // Done (完成): resolved by the unit; everyone who was told it fires is told it ended.
    let a = s
        .alerts
        .act(&id, &Action::Field(FieldState::Done), "王师傅")
        .unwrap();
    assert_eq!(a.state, "resolved");
    assert_eq!(a.body["ops"]["resolved_by"], "王师傅");
    until("three resolve notifications", || {
        got.lock().unwrap().len() == 7
    })
    .await;
    let v = a.version;
    let all = keys(&got);
    for r in ["R-duty", "R-office", "R-unit"] {
        assert!(all.contains(&format!("{id}-{v}-{r}")), "{all:?}");
    }
    // Each receiver sees versions rising, and nothing twice.
    let got = got.lock().unwrap().clone();
    let mut dedup = all.clone();
    dedup.dedup();
    assert_eq!(dedup, all);
    for r in ["R-duty", "R-office", "R-unit"] {
        let versions: Vec<u64> = got
            .iter()
            .filter(|(k, _)| k.ends_with(r))
            .map(|(_, b)| b["version"].as_u64().unwrap())
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{r}: {versions:?}"
        );
    }
    let history: Vec<alerts::TransitionEvent> = s
        .alerts
        .journal()
        .transitions_of(&id)
        .unwrap()
        .iter()
        .map(|t| t.event)
        .collect();
    assert_eq!(
        history,
        [
            "firing",
            "escalated",
            "field_state",
            "field_state",
            "escalated",
            "field_state",
            "resolved"
        ]
    );
    assert_eq!(s.steps(&id), ["done", "done"]);
}

#[test]
fn acknowledging_in_time_skips_the_first_step_and_resolving_cancels_the_rest() {
    let s = Setup::new(nowhere());
    s.alerts
        .apply(&change("e.trapped", "E1", true, T0), &rules())
        .unwrap();
    let id = alerts::fingerprint("e.trapped", "E1");
    s.advance(2 * MIN);
    s.alerts
        .act(&id, &Action::Ack { comment: None }, "控制室")
        .unwrap();
    s.advance(4 * MIN);
    s.alerts
        .apply(&change("e.trapped", "E1", false, T0 + 7 * MIN), &rules())
        .unwrap();
    s.advance(30 * MIN);
    assert_eq!(s.steps(&id), ["skipped", "cancelled"]);
    let a = s.alert("e.trapped", "E1");
    assert_eq!(a.state, "resolved");
    assert_eq!(a.body["ops"]["acked_by"], "控制室");
    // No one but the first two receivers was ever told anything.
    let receivers: std::collections::BTreeSet<String> = s
        .alerts
        .journal()
        .notifications(Some(&id), 100)
        .unwrap()
        .into_iter()
        .map(|n| n.receiver_id)
        .collect();
    assert_eq!(
        receivers.into_iter().collect::<Vec<_>>(),
        ["R-office", "R-unit"]
    );
}

#[test]
fn actions_follow_the_incident_and_refuse_what_does_not_fit() {
    let s = Setup::new(nowhere());
    let r = rules();
    s.alerts
        .apply(&change("e.trapped", "E1", true, T0), &r)
        .unwrap();
    s.alerts
        .apply(&change("c.burst", "M1", true, T0), &r)
        .unwrap();
    let e = alerts::fingerprint("e.trapped", "E1");
    let c = alerts::fingerprint("c.burst", "M1");

    s.alerts
        .act(&e, &Action::Field(FieldState::OnSite), "王师傅")
        .unwrap();
    // A repeat changes nothing; going back is refused.
    let v = s.alert("e.trapped", "E1").version;
    s.alerts
        .act(&e, &Action::Field(FieldState::OnSite), "王师傅")
        .unwrap();
    s.alerts
        .act(&e, &Action::Ack { comment: None }, "王师傅")
        .unwrap();
    assert_eq!(s.alert("e.trapped", "E1").version, v);
    let back = s
        .alerts
        .act(&e, &Action::Field(FieldState::Responded), "王师傅")
        .unwrap_err();
    assert!(
        matches!(&back, ActError::Conflict(m) if m.contains("already on_site")),
        "{back}"
    );
    // Field states are for elevators only.
    let err = s
        .alerts
        .act(&c, &Action::Field(FieldState::OnSite), "x")
        .unwrap_err();
    assert!(matches!(err, ActError::Conflict(m) if m.contains("elevator")));
    // Assign, comment, false positive.
    s.alerts
        .act(
            &c,
            &Action::Assign {
                to: "李科长".into(),
            },
            "控制室",
        )
        .unwrap();
    s.alerts
        .act(
            &c,
            &Action::Comment {
                text: "已电话联系商户".into(),
            },
            "李科长",
        )
        .unwrap();
    let a = s
        .alerts
        .act(
            &c,
            &Action::FalsePositive {
                reason: Some("测试投诉".into()),
            },
            "李科长",
        )
        .unwrap();
    assert_eq!(a.state, "resolved");
    assert_eq!(a.body["ops"]["false_positive"], true);
    assert_eq!(a.body["ops"]["assignee"], "李科长");
    // A resolved alert takes comments, not acknowledgements.
    s.alerts
        .act(
            &c,
            &Action::Comment {
                text: "结案".into(),
            },
            "李科长",
        )
        .unwrap();
    assert!(matches!(
        s.alerts
            .act(&c, &Action::Ack { comment: None }, "x")
            .unwrap_err(),
        ActError::Conflict(_)
    ));
    assert!(matches!(
        s.alerts
            .act("nope", &Action::Ack { comment: None }, "x")
            .unwrap_err(),
        ActError::NotFound(_)
    ));
    // The condition ending later does not reopen or re-resolve a closed alert.
    let before = s.alert("c.burst", "M1").version;
    s.alerts
        .apply(&change("c.burst", "M1", false, T0 + MIN), &r)
        .unwrap();
    assert_eq!(s.alert("c.burst", "M1").version, before);
    // Labels carry what reference data knows, for filters and silences.
    let labels = &s.alert("e.trapped", "E1").body["labels"];
    assert_eq!(
        (
            labels["district"].as_str(),
            labels["maintenance_unit"].as_str(),
            labels["building"].as_str()
        ),
        (Some("D1"), Some("MU-1"), Some("B1"))
    );
}

#[test]
fn a_silence_holds_notifications_and_its_expiry_releases_them() {
    let s = Setup::new(nowhere());
    let r = rules();
    let silence = s
        .alerts
        .silence(NewSilence {
            matchers: vec![
                alerts::Matcher::parse("building=B1").unwrap(),
                alerts::Matcher::parse("fault=~trap.*").unwrap(),
            ],
            starts_ms: None,
            ends_ms: T0 + 60 * MIN,
            author: "控制室".into(),
            reason: "电梯年检".into(),
        })
        .unwrap();
    s.alerts
        .apply(&change("e.trapped", "E1", true, T0), &r)
        .unwrap();
    let a = s.alert("e.trapped", "E1");
    assert_eq!(a.suppressed, Some(format!("silence:{}", silence.id)));
    assert_eq!(
        s.outbox(&a.id, 1),
        pairs(&[("R-office", "held"), ("R-unit", "held")])
    );
    // Escalation steps run but their notifications are held too.
    s.advance(6 * MIN);
    assert_eq!(s.outbox(&a.id, 2), pairs(&[("R-duty", "held")]));

    // Expiry releases every held notification.
    s.alerts.expire_silence(&silence.id).unwrap();
    s.advance(1);
    let a = s.alert("e.trapped", "E1");
    assert_eq!(a.suppressed, None);
    assert_eq!(
        s.outbox(&a.id, 1),
        pairs(&[("R-office", "pending"), ("R-unit", "pending")])
    );
    assert_eq!(s.outbox(&a.id, 2), pairs(&[("R-duty", "pending")]));
    let last = s.alerts.journal().transitions_of(&a.id).unwrap();
    assert_eq!(last.last().unwrap().event, "released");

    // A silenced alert that resolves before release tells no one anything.
    s.alerts
        .silence(NewSilence {
            matchers: vec![alerts::Matcher::parse("elevator_id=E2").unwrap()],
            starts_ms: None,
            ends_ms: T0 + 120 * MIN,
            author: "控制室".into(),
            reason: "维修".into(),
        })
        .unwrap();
    s.alerts
        .apply(&change("e.trapped", "E2", true, T0 + 10 * MIN), &r)
        .unwrap();
    s.alerts
        .apply(&change("e.trapped", "E2", false, T0 + 11 * MIN), &r)
        .unwrap();
    let b = s.alert("e.trapped", "E2");
    assert_eq!(
        s.outbox(&b.id, 1),
        pairs(&[("R-office", "dropped"), ("R-unit", "dropped")])
    );
    assert!(s.outbox(&b.id, b.version).is_empty());
    // Bad silences are refused with the reason.
    let err = s
        .alerts
        .silence(NewSilence {
            matchers: vec![],
            starts_ms: None,
            ends_ms: T0 + 120 * MIN,
            author: "a".into(),
            reason: "b".into(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("matcher"));
}

#[test]
fn a_power_failure_inhibits_the_same_elevators_trapped_alert() {
    let s = Setup::new(nowhere());
    let r = rules();
    s.alerts
        .apply(&change("e.power", "E1", true, T0), &r)
        .unwrap();
    s.alerts
        .apply(&change("e.trapped", "E1", true, T0 + 1000), &r)
        .unwrap();
    s.alerts
        .apply(&change("e.trapped", "E2", true, T0 + 1000), &r)
        .unwrap();
    let power = s.alert("e.power", "E1");
    let inhibited = s.alert("e.trapped", "E1");
    let other = s.alert("e.trapped", "E2");
    assert_eq!(
        inhibited.suppressed,
        Some(format!("inhibited:{}", power.id))
    );
    assert_eq!(other.suppressed, None, "another elevator is not inhibited");
    assert_eq!(
        s.outbox(&inhibited.id, 1),
        pairs(&[("R-office", "held"), ("R-unit", "held")])
    );
    // The power comes back: the trapped alert, still firing, is released.
    s.alerts
        .apply(&change("e.power", "E1", false, T0 + 5000), &r)
        .unwrap();
    let released = s.alert("e.trapped", "E1");
    assert_eq!(released.suppressed, None);
    assert_eq!(
        s.outbox(&released.id, 1),
        pairs(&[("R-office", "pending"), ("R-unit", "pending")])
    );
}

#[test]
fn after_a_restart_a_re_derived_condition_continues_and_a_stale_one_resolves() {
    let s = Setup::new(nowhere());
    let r = rules();
    s.alerts
        .apply(&change("e.trapped", "E1", true, T0), &r)
        .unwrap();
    s.alerts
        .apply(&change("e.trapped", "E2", true, T0), &r)
        .unwrap();
    let (e1, e2) = (
        alerts::fingerprint("e.trapped", "E1"),
        alerts::fingerprint("e.trapped", "E2"),
    );
    let outbox_before = s.alerts.journal().notifications(None, 100).unwrap().len();
    // The process stops; a new one opens the same journal.
    let reopened = open(&s.db, nowhere(), &s.clock);
    let t1 = T0 + 10 * MIN;
    let mut snapshot = change("e.trapped", "E1", true, t1);
    snapshot.active.insert(
        ("e.trapped".into(), "E1".into()),
        snapshot.changes[0].0.clone(),
    );
    reopened.apply(&snapshot, &r).unwrap();
    let j = reopened.journal();
    assert_eq!(j.alert(&e1).unwrap().unwrap().version, 1, "no new episode");
    assert_eq!(
        j.notifications(None, 100).unwrap().len(),
        outbox_before,
        "no duplicate"
    );
    assert_eq!(
        j.alert(&e2).unwrap().unwrap().state,
        "firing",
        "not yet settled"
    );
    drop(j);
    // Past the settle time (state rule: 60 s) E2 never re-derived: resolved.
    let later = ConditionsSnapshot {
        as_of: t1 + 61_000,
        active: snapshot.active.clone(),
        changes: vec![],
        ..ConditionsSnapshot::default()
    };
    reopened.apply(&later, &r).unwrap();
    let j = reopened.journal();
    let stale = j.alert(&e2).unwrap().unwrap();
    assert_eq!(stale.state, "resolved");
    let last = j.transitions_of(&e2).unwrap().pop().unwrap();
    assert_eq!(
        last.body["event"]["reason"],
        "condition not active after restart"
    );
    assert_eq!(j.alert(&e1).unwrap().unwrap().state, "firing");
    drop(j);
    // Escalation timers are journal rows: five minutes after the opening, across the
    // restart, the step runs in the new process.
    s.clock.fetch_add(5 * MIN, Ordering::SeqCst);
    reopened.tick().unwrap();
    let steps: Vec<String> = reopened
        .journal()
        .escalations_of(&e1)
        .unwrap()
        .into_iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(steps, ["done", "pending"]);
}

#[test]
fn conditions_fed_again_after_a_crash_raise_no_second_episode() {
    let s = Setup::new(nowhere());
    let r = rules();
    // Two one-shot detections of the same camera, each journaled with its notices.
    let group = "K1/C1/rodent";
    let (t1, t2) = (T0, T0 + MIN);
    for t in [t1, t2] {
        s.alerts
            .apply(&change("k.rodent", group, true, t), &r)
            .unwrap();
        s.alerts
            .apply(&change("k.rodent", group, false, t + 100), &r)
            .unwrap();
    }
    let id = alerts::fingerprint("k.rodent", group);
    let count = |a: &Alerts| {
        let j = a.journal();
        (
            j.transitions_of(&id).unwrap().len(),
            j.notifications(Some(&id), 100).unwrap().len(),
        )
    };
    let before = count(&s.alerts);
    // A new process feeds the input again from before both (its replay point lagged): the
    // same starts and stops at the same times find the episodes the journal has.
    let reopened = open(&s.db, nowhere(), &s.clock);
    for t in [t1, t2] {
        reopened
            .apply(&change("k.rodent", group, true, t), &r)
            .unwrap();
        reopened
            .apply(&change("k.rodent", group, false, t + 100), &r)
            .unwrap();
    }
    assert_eq!(count(&reopened), before, "nothing new");
    let a = reopened.journal().alert(&id).unwrap().unwrap();
    assert_eq!((a.state.as_str(), a.since_ms), ("resolved", t2));
    // A detection after them is a new episode, as always.
    let t3 = t2 + MIN;
    reopened
        .apply(&change("k.rodent", group, true, t3), &r)
        .unwrap();
    let a = reopened.journal().alert(&id).unwrap().unwrap();
    assert_eq!((a.state.as_str(), a.since_ms), ("firing", t3));
}

#[test]
fn hooks_add_what_ingest_saw_before_routing_and_evidence_to_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let labels: alerts::LabelsFn = Arc::new(|l| match l.get("complaint_id").map(String::as_str) {
        Some("C7") => pairs(&[("merchant_id", "M1"), ("complaint_id", "not this")]),
        // A place in O1's jurisdiction, no merchant known.
        Some("C8") => pairs(&[("office", "O1")]),
        _ => Vec::new(),
    });
    let evidence: alerts::EvidenceFn = Arc::new(|l| {
        (l.get("kind").map(String::as_str) == Some("rodent"))
            .then(|| serde_json::json!({"snapshot": "https://e.example/1.jpg", "ts": 5}))
    });
    let a = Alerts::open_with(
        &dir.path().join("alerts.db"),
        common::reference(nowhere()),
        Options {
            labels: Some(labels),
            evidence: Some(evidence),
            ..Options::default()
        },
    )
    .unwrap();
    a.apply(&change("c.late", "C7", true, T0), &rules())
        .unwrap();
    let late = a
        .journal()
        .alert(&alerts::fingerprint("c.late", "C7"))
        .unwrap()
        .unwrap();
    // The merchant it learnt routes it to the merchant's office; the group label stays.
    assert_eq!(late.body["labels"]["merchant_id"], "M1");
    assert_eq!(late.body["labels"]["complaint_id"], "C7");
    assert!(late.body["routing_errors"].is_null(), "{}", late.body);
    let receivers = |id: &str| -> Vec<String> {
        a.journal()
            .notifications(Some(id), 10)
            .unwrap()
            .into_iter()
            .map(|n| n.receiver_id)
            .collect()
    };
    assert_eq!(receivers(&late.id), ["R-office"]);
    assert!(late.body["evidence"].is_null());
    a.apply(&change("c.late", "C8", true, T0), &rules())
        .unwrap();
    let placed = a
        .journal()
        .alert(&alerts::fingerprint("c.late", "C8"))
        .unwrap()
        .unwrap();
    assert!(placed.body["routing_errors"].is_null(), "{}", placed.body);
    assert_eq!(
        receivers(&placed.id),
        ["R-office"],
        "the jurisdiction's office"
    );
    a.apply(&change("k.rodent", "K1/C1/rodent", true, T0), &rules())
        .unwrap();
    let rodent = a
        .journal()
        .alert(&alerts::fingerprint("k.rodent", "K1/C1/rodent"))
        .unwrap()
        .unwrap();
    assert_eq!(
        rodent.body["evidence"]["snapshot"],
        "https://e.example/1.jpg"
    );
}

#[test]
fn an_alert_nobody_can_be_told_of_is_still_recorded_with_the_reason() {
    let s = Setup::new(nowhere());
    // M9 is in no registry: its office cannot be found.
    s.alerts
        .apply(&change("c.burst", "M9", true, T0), &rules())
        .unwrap();
    let a = s.alert("c.burst", "M9");
    assert_eq!(a.state, "firing");
    assert_eq!(a.body["routing_errors"], serde_json::json!(["office"]));
    assert_eq!(s.alerts.stats().routing_errors(), 1);
    assert!(
        s.alerts
            .journal()
            .notifications(Some(&a.id), 10)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_of_one_building_reach_a_receiver_as_one_message_and_repeat_until_acknowledged() {
    let (got, port) = hook().await;
    let s = Setup::new(port);
    tokio::spawn(s.alerts.clone().run());
    let r = rules();
    // Two power failures in building B1 (major: the default policy groups by building).
    s.alerts
        .apply(&change("e.power", "E1", true, T0), &r)
        .unwrap();
    s.alerts
        .apply(&change("e.power", "E2", true, T0 + 500), &r)
        .unwrap();
    // They wait for the group (10 s), then go as one message to the unit.
    let waiting: Vec<(String, u64, Option<String>)> = s
        .alerts
        .journal()
        .notifications(None, 10)
        .unwrap()
        .into_iter()
        .map(|n| (n.status, n.next_ms, n.group))
        .collect();
    let group = Some("R-unit|default|B1||".to_owned());
    assert_eq!(
        waiting,
        [
            ("pending".into(), T0 + 10_000, group.clone()),
            ("pending".into(), T0 + 10_000, group)
        ]
    );
    s.advance(10_000);
    until("one grouped message", || !got.lock().unwrap().is_empty()).await;
    let (key, body) = got.lock().unwrap()[0].clone();
    assert!(key.starts_with("group-"), "{key}");
    assert_eq!(body["count"], 2, "{body}");
    let elevators: Vec<&str> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["elevator_id"].as_str().unwrap())
        .collect();
    assert_eq!(elevators, ["E1", "E2"]);
    let e1 = alerts::fingerprint("e.power", "E1");
    assert_eq!(
        body["alerts"][0]["idempotency_key"],
        format!("{e1}-1-R-unit")
    );

    // Four hours on, neither acknowledged: both are sent again; E2 is acknowledged first.
    s.alerts
        .act(
            &alerts::fingerprint("e.power", "E2"),
            &Action::Ack { comment: None },
            "王师傅",
        )
        .unwrap();
    s.advance(4 * 60 * MIN);
    until("the repeat", || got.lock().unwrap().len() == 2).await;
    let (_, repeat) = got.lock().unwrap()[1].clone();
    assert_eq!(repeat["event"]["kind"], "repeated", "{repeat}");
    assert_eq!(repeat["labels"]["elevator_id"], "E1");
    assert_eq!(s.alert("e.power", "E1").body["ops"]["repeats"], 1);
    assert!(s.alert("e.power", "E2").body["ops"]["repeats"].is_null());
}

#[test]
fn a_silence_made_while_an_alert_fires_holds_its_escalation_until_it_ends() {
    let s = Setup::new(nowhere());
    s.alerts
        .apply(&change("e.trapped", "E1", true, T0), &rules())
        .unwrap();
    let id = alerts::fingerprint("e.trapped", "E1");
    let silence = s
        .alerts
        .silence(NewSilence {
            matchers: vec![alerts::Matcher::parse("elevator_id=E1").unwrap()],
            starts_ms: None,
            ends_ms: T0 + 20 * MIN,
            author: "控制室".into(),
            reason: "现场已处置".into(),
        })
        .unwrap();
    assert_eq!(
        s.alert("e.trapped", "E1").suppressed,
        Some(format!("silence:{}", silence.id))
    );
    // What was sent stays sent; the escalation at 5 min is held.
    assert_eq!(
        s.outbox(&id, 1),
        pairs(&[("R-office", "pending"), ("R-unit", "pending")])
    );
    s.advance(5 * MIN);
    assert_eq!(s.outbox(&id, 2), pairs(&[("R-duty", "held")]));
    // The silence runs out at 20 min: the duty leader is told then.
    s.advance(15 * MIN);
    assert_eq!(s.outbox(&id, 2), pairs(&[("R-duty", "pending")]));
}

#[test]
fn an_incident_closed_by_hand_stays_closed_until_its_condition_stops() {
    let s = Setup::new(nowhere());
    let r = rules();
    s.alerts
        .apply(&change("e.trapped", "E1", true, T0), &r)
        .unwrap();
    let id = alerts::fingerprint("e.trapped", "E1");
    s.alerts
        .act(&id, &Action::Field(FieldState::FalseAlarm), "王师傅")
        .unwrap();
    let closed = s.alert("e.trapped", "E1").version;
    // After a restart the still-active condition re-derives: it does not reopen the incident.
    let reopened = open(&s.db, nowhere(), &s.clock);
    reopened
        .apply(&change("e.trapped", "E1", true, T0 + MIN), &r)
        .unwrap();
    let a = reopened.journal().alert(&id).unwrap().unwrap();
    assert_eq!((a.state.as_str(), a.version), ("resolved", closed));
    // Once it has stopped, a new start is a new incident.
    reopened
        .apply(&change("e.trapped", "E1", false, T0 + 2 * MIN), &r)
        .unwrap();
    reopened
        .apply(&change("e.trapped", "E1", true, T0 + 3 * MIN), &r)
        .unwrap();
    let a = reopened.journal().alert(&id).unwrap().unwrap();
    assert_eq!(a.state, "firing");
    assert_eq!(a.episode, closed + 1);
}

#[test]
fn an_episode_found_inside_a_late_backlog_is_journaled_fired_and_resolved_with_how_late() {
    let s = Setup::new(nowhere());
    // Trapped from 60 s before T0 to 20 s before it, in a backlog that arrived at T0: the
    // start and (a millisecond later) the stop, as the dataflow publishes them.
    let active = Active {
        rule: "e.trapped".into(),
        group: "E1".into(),
        value: 1.0,
        since: T0 - 60_000,
        late_by_ms: 60_000,
    };
    let snapshot = ConditionsSnapshot {
        as_of: T0 + 2,
        active: Default::default(),
        changes: vec![(active.clone(), true, T0), (active, false, T0 + 1)],
        ..ConditionsSnapshot::default()
    };
    s.alerts.apply(&snapshot, &rules()).unwrap();
    let a = s.alert("e.trapped", "E1");
    assert_eq!(
        (a.state.as_str(), a.since_ms, a.resolved_ms),
        ("resolved", T0 - 60_000, Some(T0 + 1))
    );
    assert_eq!(a.body["late_by_ms"], 60_000);
    // Both receivers are told it fired and that it ended; the escalation never runs.
    let id = a.id.clone();
    let told = |version| s.outbox(&id, version);
    assert_eq!(
        told(1),
        pairs(&[("R-office", "pending"), ("R-unit", "pending")])
    );
    assert_eq!(
        told(2),
        pairs(&[("R-office", "pending"), ("R-unit", "pending")])
    );
    s.advance(30 * MIN);
    let steps = s.steps(&id);
    assert!(
        !steps.is_empty() && steps.iter().all(|st| st == "cancelled"),
        "{steps:?}"
    );
}

#[test]
fn the_stalls_on_hold_are_the_residue_fails_firing_now() {
    let s = Setup::new(nowhere());
    let hold = |group: &str, started: bool, at: u64| {
        s.alerts
            .apply(&change("market.residue_fail", group, started, at), &rules())
            .unwrap();
    };
    let on_hold = || s.alerts.journal().overview(T0).unwrap().stalls_on_hold;
    hold("M1/ST1/cabbage", true, T0);
    hold("M1/ST3/spinach", true, T0 + MIN);
    assert_eq!(on_hold(), 2);
    // A later test of ST1's cabbage passed.
    hold("M1/ST1/cabbage", false, T0 + 2 * MIN);
    assert_eq!(on_hold(), 1);
    assert_eq!(
        s.alerts
            .journal()
            .overview(T0)
            .unwrap()
            .residue_failed_today,
        2
    );
}

#[test]
fn an_alert_is_opened_under_the_rule_set_its_change_was_computed_under() {
    let s = Setup::new(nowhere());
    // The rule was made `minor` and then deleted through the API meanwhile: the changes
    // computed before either reached the dataflow still open under the version in force then.
    let before = Arc::new(rules());
    let mut minor = rules();
    minor[0].severity = rules::Severity::Minor;
    let minor = Arc::new(minor);
    let mut snapshot = change("e.trapped", "E1", true, T0);
    snapshot.changes.push((
        Active {
            group: "E2".into(),
            ..snapshot.changes[0].0.clone()
        },
        true,
        T0 + 500,
    ));
    snapshot.rules = vec![(0, before), (T0 + 500, minor)];
    s.alerts.apply(&snapshot, &[]).unwrap();
    assert_eq!(s.alert("e.trapped", "E1").severity, "critical");
    assert_eq!(s.alert("e.trapped", "E2").severity, "minor");
}
