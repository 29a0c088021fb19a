//! A rule's expressions explained for one event: each sub-expression with the value the rule
//! saw (the default pack's overspeed rule over the rule tests' reference data).

use dataflow::explain::{ExplainError, RefValues, explain};
use rules::compiled::Outcome;
use std::path::Path;
use std::sync::Arc;

fn overspeed() -> rules::Rule {
    let pack = rules::load_dir(Path::new("../rules/default")).expect("the default pack loads");
    pack.into_iter()
        .find(|r| r.id == "elevator.overspeed")
        .expect("the pack has elevator.overspeed")
}

fn rows() -> RefValues {
    let dir = Path::new("../rules/default/tests/reference");
    let reference = dataflow::Reference::load(dir).expect("the rule tests' reference data loads");
    RefValues::new(Arc::new(reference))
}

#[test]
fn the_overspeed_filter_shows_the_speed_against_its_rated_limit() {
    // E1 is registered with a rated speed of 1.0 m/s: the limit is 1.15 m/s.
    let frame = testkit::Frame::new("E1", 1_795_737_600_000)
        .speed(1.31)
        .direction("up");
    let explained = explain(&overspeed(), &rows(), &frame.envelope(), None).unwrap();
    let roles: Vec<&str> = explained.expressions.iter().map(|e| e.role).collect();
    assert_eq!(roles, ["filter", "value"]);
    let filter = explained.expressions[0].traced.as_ref().unwrap();
    assert_eq!(
        filter.to_string(),
        "event.service_mode == \"normal\" && has(ref.elevator) && event.speed_mps > 1.15 * ref.elevator.rated_speed_mps = true
  event.service_mode == \"normal\" && has(ref.elevator) = true
    event.service_mode == \"normal\" = true
      event.service_mode = \"normal\"
    has(ref.elevator) = true
  event.speed_mps > 1.15 * ref.elevator.rated_speed_mps = true
    event.speed_mps = 1.31
    1.15 * ref.elevator.rated_speed_mps = 1.15
      ref.elevator.rated_speed_mps = 1.0
"
    );
    let value = explained.expressions[1].traced.as_ref().unwrap();
    assert_eq!(value.outcome, Outcome::Value("1.31".into()));
    // The row `ref` read: E1's registry row.
    assert_eq!(explained.reference["elevator"]["rated_speed_mps"], 1.0);
    assert_eq!(explained.reference["elevator"]["maintenance_unit"], "MU-01");
}

#[test]
fn an_unregistered_elevator_stops_the_filter_at_its_registry_row() {
    let frame = testkit::Frame::new("E-UNKNOWN", 1_795_737_600_000).speed(3.0);
    let explained = explain(&overspeed(), &rows(), &frame.envelope(), None).unwrap();
    let filter = explained.expressions[0].traced.as_ref().unwrap();
    assert_eq!(filter.outcome, Outcome::Value("false".into()));
    let first = &filter.parts[0];
    assert_eq!(first.parts[1].text, "has(ref.elevator)");
    assert_eq!(first.parts[1].outcome, Outcome::Value("false".into()));
    assert_eq!(filter.parts[1].outcome, Outcome::NotEvaluated);
    assert_eq!(explained.reference, serde_json::json!({}));
}

#[test]
fn an_event_of_another_stream_is_refused_by_name() {
    let decoder = model::Decoder::default();
    let detection = decoder
        .decode(
            "cw/v1/kitchen/K1/camera/C1/detection",
            br#"{"ts":1795737600000,"kind":"rodent"}"#,
            1_795_737_600_000,
        )
        .unwrap();
    let err = explain(&overspeed(), &rows(), &detection, None).unwrap_err();
    assert!(matches!(err, ExplainError::OtherStream { .. }));
    assert_eq!(
        err.to_string(),
        "rule elevator.overspeed reads elevator_status events; this one is kitchen_detection"
    );
}
