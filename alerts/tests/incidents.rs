//! Incidents in the journal: a joined pair opens one routed to its alert's office, more
//! complaints join it, a pair fed again adds nothing, operators assign and close it with a
//! finding, and a pair after that opens a new one; all of it survives a reopen.

mod common;

use alerts::{ActError, Alerts, IncidentAction, Options};
use control::conditions::Joined;
use control::{Active, ConditionsSnapshot};

const T0: u64 = 1_795_737_600_000;
const MIN: u64 = 60_000;

const RULES: &str = r#"
[[rule]]
id = "e.trapped"
severity = "critical"
stream = "elevator_status"
mode = "state"
filter = 'has(event.occupied) && event.occupied'
group_by = ["elevator_id"]
route = ["maintenance_unit", "office"]
"#;

fn started(at: u64) -> (Active, bool, u64) {
    let active = Active {
        rule: "e.trapped".into(),
        group: "E1".into(),
        value: 1.0,
        since: at,
        late_by_ms: 0,
    };
    (active, true, at)
}

fn pair(complaint: &str, complaint_ms: u64) -> Joined {
    Joined {
        incident: "incident.elevator".into(),
        severity: rules::Severity::Critical,
        subject: "elevator/E1".into(),
        rule: "e.trapped".into(),
        group: "E1".into(),
        since: T0,
        complaint_id: complaint.into(),
        complaint_ms,
        distance_m: Some(12),
        within_ms: 30 * MIN,
    }
}

fn snapshot(
    as_of: u64,
    changes: Vec<(Active, bool, u64)>,
    joined: Vec<Joined>,
) -> ConditionsSnapshot {
    ConditionsSnapshot {
        as_of,
        changes,
        joined: joined.into_iter().map(|j| (j, as_of - 1)).collect(),
        ..ConditionsSnapshot::default()
    }
}

#[test]
fn a_pair_opens_an_incident_that_gathers_complaints_until_it_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("alerts.db");
    let rules = rules::load_str("r.toml", RULES).unwrap();
    let open = || Alerts::open_with(&db, common::reference(9), Options::default()).unwrap();
    let alerts = open();
    let mut live = alerts.subscribe_incidents();
    alerts
        .apply(
            &snapshot(T0 + 1, vec![started(T0)], vec![pair("C1", T0 - MIN)]),
            &rules,
        )
        .unwrap();
    let first = live.try_recv().unwrap();
    assert_eq!(
        (
            first.rule.as_str(),
            first.subject.as_str(),
            first.state.as_str()
        ),
        ("incident.elevator", "elevator/E1", "open")
    );
    assert_eq!(first.office.as_deref(), Some("O1"));
    assert_eq!(
        (first.opened_ms, first.last_ms, first.severity.as_str()),
        (T0 - MIN, T0, "critical")
    );
    // The same pair again (a restart feeds it again): nothing changes.
    alerts
        .apply(
            &snapshot(T0 + 2, vec![], vec![pair("C1", T0 - MIN)]),
            &rules,
        )
        .unwrap();
    assert!(live.try_recv().is_err());
    // A second complaint joins the same incident.
    alerts
        .apply(
            &snapshot(T0 + 3 * MIN, vec![], vec![pair("C2", T0 + 2 * MIN)]),
            &rules,
        )
        .unwrap();
    let second = live.try_recv().unwrap();
    assert_eq!(
        (second.id.as_str(), second.last_ms),
        (first.id.as_str(), T0 + 2 * MIN)
    );
    assert!(second.seq > first.seq);
    let alert = alerts::fingerprint("e.trapped", "E1");
    {
        let j = alerts.journal();
        let (_, members) = j.incident(&first.id).unwrap().unwrap();
        let got: Vec<(&str, &str, u64)> = members
            .iter()
            .map(|m| (m.kind.as_str(), m.member.as_str(), m.since_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("complaint", "C1", T0 - MIN),
                ("alert", alert.as_str(), T0),
                ("complaint", "C2", T0 + 2 * MIN)
            ]
        );
        assert_eq!(
            j.incidents_of("complaint", "C2").unwrap(),
            vec![first.id.clone()]
        );
        assert_eq!(
            j.incidents_of("alert", &alert).unwrap(),
            vec![first.id.clone()]
        );
    }
    // Operators assign it and close it with a finding; a closed one takes no more actions.
    let empty = IncidentAction::Close {
        finding: " ".into(),
    };
    assert!(matches!(
        alerts.act_incident(&first.id, &empty, "op"),
        Err(ActError::Conflict(_))
    ));
    let assigned = alerts
        .act_incident(
            &first.id,
            &IncidentAction::Assign {
                to: "inspector-3".into(),
            },
            "op",
        )
        .unwrap();
    assert_eq!(
        (assigned.state.as_str(), assigned.assignee.as_deref()),
        ("assigned", Some("inspector-3"))
    );
    let finding = IncidentAction::Close {
        finding: "door operator fault; complaint answered".into(),
    };
    let closed = alerts.act_incident(&first.id, &finding, "op").unwrap();
    assert_eq!(closed.state, "closed");
    assert_eq!(closed.log.as_array().unwrap().len(), 2);
    assert!(matches!(
        alerts.act_incident(&first.id, &finding, "op"),
        Err(ActError::Conflict(_))
    ));
    assert!(matches!(
        alerts.act_incident("inc-none", &finding, "op"),
        Err(ActError::NotFound(_))
    ));
    // After closing, a new complaint opens a new incident; all of it survives a reopen.
    alerts
        .apply(
            &snapshot(T0 + 5 * MIN, vec![], vec![pair("C3", T0 + 4 * MIN)]),
            &rules,
        )
        .unwrap();
    drop(alerts);
    let again = open();
    let j = again.journal();
    let any = alerts::IncidentFilter::default();
    let all = j.incidents(&any, None, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].state.as_str(), all[1].id.as_str()),
        ("open", first.id.as_str())
    );
    assert_eq!(
        all[1].finding.as_deref(),
        Some("door operator fault; complaint answered")
    );
    let closed_only = alerts::IncidentFilter {
        state: Some("closed"),
        ..any
    };
    assert_eq!(j.incidents(&closed_only, None, 10).unwrap().len(), 1);
    let of = |office| alerts::IncidentFilter {
        office: Some(office),
        ..any
    };
    assert_eq!(j.incidents(&of("O1"), None, 10).unwrap().len(), 2);
    assert!(j.incidents(&of("O2"), None, 10).unwrap().is_empty());
    assert_eq!(
        j.incidents(&any, Some(closed.seq), 10).unwrap()[0].id,
        all[0].id
    );
}

#[test]
fn after_a_close_the_same_alert_with_another_complaint_opens_another_incident() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules::load_str("r.toml", RULES).unwrap();
    let alerts = Alerts::open_with(
        &dir.path().join("a.db"),
        common::reference(9),
        Options::default(),
    )
    .unwrap();
    // Both complaints come after the alert: both pairs start at the alert's start.
    let first_pair = snapshot(T0 + MIN, vec![started(T0)], vec![pair("C1", T0 + 1_000)]);
    alerts.apply(&first_pair, &rules).unwrap();
    let first = alerts
        .journal()
        .incidents(&Default::default(), None, 10)
        .unwrap();
    let close = IncidentAction::Close {
        finding: "answered".into(),
    };
    alerts.act_incident(&first[0].id, &close, "op").unwrap();
    let second_pair = snapshot(T0 + 2 * MIN, vec![], vec![pair("C2", T0 + 2_000)]);
    alerts.apply(&second_pair, &rules).unwrap();
    let j = alerts.journal();
    let all = j.incidents(&Default::default(), None, 10).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_ne!(all[0].id, all[1].id);
    assert_eq!((all[0].state.as_str(), all[0].opened_ms), ("open", T0));
    let (_, closed_members) = j.incident(&first[0].id).unwrap().unwrap();
    let complaints: Vec<&str> = closed_members
        .iter()
        .filter(|m| m.kind == "complaint")
        .map(|m| m.member.as_str())
        .collect();
    assert_eq!(complaints, ["C1"]);
}
