//! What the alerts tests share: a small district's reference data whose receivers are
//! webhooks on one local port, all signed with the secret `s3cret`.

#![allow(dead_code)]

pub mod certs;

use control::reference::{Elevator, Merchant, Office, Receiver, Reference};
use std::sync::Arc;

/// Elevators E1 and E2 (building B1, district D1, maintained by MU-1), office O1 with
/// merchant M1, and receivers R-unit (MU-1), R-office (O1) and R-duty (duty:D1).
pub fn reference(port: u16) -> Arc<Reference> {
    let receiver = |id: &str, owner: &str| Receiver {
        receiver_id: id.into(),
        kind: "webhook".into(),
        target: format!("http://127.0.0.1:{port}/hook"),
        secret: "s3cret".into(),
        owner: owner.into(),
    };
    let elevator = |id: &str| Elevator {
        elevator_id: id.into(),
        building: "B1".into(),
        district: "D1".into(),
        lat: 0.0,
        lon: 0.0,
        maintenance_unit: "MU-1".into(),
        rated_speed_mps: 1.0,
        floors: 10,
    };
    Arc::new(Reference {
        elevators: vec![elevator("E1"), elevator("E2")],
        offices: vec![Office {
            office_id: "O1".into(),
            name: "所".into(),
            district: "D1".into(),
        }],
        merchants: vec![Merchant {
            merchant_id: "M1".into(),
            name: "店".into(),
            office_id: "O1".into(),
        }],
        receivers: vec![
            receiver("R-unit", "MU-1"),
            receiver("R-office", "O1"),
            receiver("R-duty", "duty:D1"),
        ],
        ..Reference::default()
    })
}

/// The alerts stage with no notification policies: every notification goes out at once,
/// alone, and nothing escalates or repeats.
pub fn open_without_policies(db: &std::path::Path, port: u16) -> Arc<alerts::Alerts> {
    alerts::Alerts::open_with(
        db,
        reference(port),
        alerts::Options {
            policies: alerts::Policies::default(),
            ..alerts::Options::default()
        },
    )
    .unwrap()
}

/// Waits (20 s at most) until `f` holds; `what` names it when it does not.
pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
