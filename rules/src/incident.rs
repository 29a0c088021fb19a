//! Incident rules (`[[incident]]` in the rule files): which alerts and which complaints are
//! one fault seen in two sources, joined on what, and within how long (docs/explain.md §3).
//!
//! An incident rule names its alert members by rule id (`*` as a suffix wildcard), the
//! complaint categories it takes (none: any), the key they meet on (`place`: a complaint's
//! point within `within_m` metres of the alert's elevator or kitchen; `merchant`: the
//! complaint's merchant is the one of the alert's scale or stall), and the time both must lie
//! within of each other. The dataflow joins them; this module only reads and checks them.

use crate::load::RuleError;
use crate::spec::{Rule, Severity, parse_duration};
use serde::{Deserialize, Serialize};

/// An incident rule as written (`[[incident]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentSource {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    /// Alert rules whose alerts are members (`elevator.trapped_*`).
    pub alerts: Vec<String>,
    /// Complaint categories that are members (empty: every category).
    #[serde(default)]
    pub complaints: Vec<String>,
    /// `place` or `merchant`.
    pub on: String,
    /// `place`: how near a complaint's point must lie to the device (metres).
    #[serde(default)]
    pub within_m: Option<f64>,
    /// How far apart in time an alert's start and a complaint may be (default `30m`).
    #[serde(default)]
    pub within: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

const fn yes() -> bool {
    true
}

/// What an alert and a complaint meet on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JoinOn {
    /// The complaint's point lies within `metres` of the alert's device.
    Place { metres: f64 },
    /// The complaint names the merchant of the alert's scale or stall.
    Merchant,
}

/// An incident rule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub alerts: Vec<String>,
    pub complaints: Vec<String>,
    pub on: JoinOn,
    pub within_ms: u64,
    pub enabled: bool,
    /// Where it was defined (`file:line`).
    pub origin: String,
    pub source: IncidentSource,
}

/// The default time an alert and a complaint may lie apart.
pub const DEFAULT_WITHIN_MS: u64 = 30 * 60_000;

/// The farthest a place join reaches (a district is a few km across; a point kilometres from
/// a device is not about it).
pub const MAX_WITHIN_M: f64 = 5_000.0;

/// The longest time a join waits for its other side (its state lasts as long).
pub const MAX_WITHIN_MS: u64 = 7 * 86_400_000;

/// The group fields through which an alert has a place (in the reference data).
pub const PLACE_FIELDS: [&str; 2] = ["elevator_id", "kitchen_id"];

/// The group fields through which an alert has a merchant, most direct first.
pub const MERCHANT_FIELDS: [&str; 3] = ["merchant_id", "stall_id", "scale_id"];

impl IncidentRule {
    /// Whether alerts of rule `rule_id` are members.
    pub fn takes_alert(&self, rule_id: &str) -> bool {
        self.alerts.iter().any(|p| matches_pattern(p, rule_id))
    }

    /// Whether complaints of `category` are members.
    pub fn takes_complaint(&self, category: &str) -> bool {
        self.complaints.is_empty() || self.complaints.iter().any(|c| c == category)
    }

    /// The field of `group_by` that gives an alert of that grouping its key, and its place
    /// among the group's values.
    pub fn key_field(&self, group_by: &[String]) -> Option<(usize, &'static str)> {
        let fields: &[&'static str] = match self.on {
            JoinOn::Place { .. } => &PLACE_FIELDS,
            JoinOn::Merchant => &MERCHANT_FIELDS,
        };
        fields
            .iter()
            .find_map(|f| group_by.iter().position(|g| g == f).map(|i| (i, *f)))
    }
}

/// `pattern` is an id, or a prefix followed by `*`.
pub fn matches_pattern(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

/// Checks one incident rule as written; its problems as (key, message).
pub fn check(src: &IncidentSource) -> Result<IncidentRule, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    if src.id.trim().is_empty() {
        problems.push(("id", "must not be empty".to_owned()));
    }
    if src.alerts.is_empty() {
        problems.push(("alerts", "names no alert rule".to_owned()));
    }
    let on = match (src.on.as_str(), src.within_m) {
        ("place", Some(m)) if m > 0.0 && m <= MAX_WITHIN_M => Some(JoinOn::Place { metres: m }),
        ("place", Some(m)) => {
            problems.push((
                "within_m",
                format!("{m} is not a distance in (0, {MAX_WITHIN_M}] metres"),
            ));
            None
        }
        ("place", None) => {
            problems.push(("on", "`place` needs `within_m`".to_owned()));
            None
        }
        ("merchant", None) => Some(JoinOn::Merchant),
        ("merchant", Some(_)) => {
            problems.push(("within_m", "only a `place` join takes it".to_owned()));
            None
        }
        (other, _) => {
            problems.push((
                "on",
                format!("unknown key {other:?} (`place` or `merchant`)"),
            ));
            None
        }
    };
    let within_ms = match &src.within {
        None => Some(DEFAULT_WITHIN_MS),
        Some(w) => match parse_duration(w) {
            Some(ms) if ms > 0 && ms <= MAX_WITHIN_MS => Some(ms),
            _ => {
                problems.push((
                    "within",
                    format!("{w:?} is not a duration between 1ms and 7d"),
                ));
                None
            }
        },
    };
    match (on, within_ms) {
        (Some(on), Some(within_ms)) if problems.is_empty() => Ok(IncidentRule {
            id: src.id.clone(),
            description: src.description.clone(),
            severity: src.severity,
            alerts: src.alerts.clone(),
            complaints: src.complaints.clone(),
            on,
            within_ms,
            enabled: src.enabled,
            origin: String::new(),
            source: src.clone(),
        }),
        _ => Err(problems),
    }
}

/// Checks `incidents` against the alert `rules` they join: every member pattern names at
/// least one rule, and every rule it names groups by a field that gives the join's key.
pub fn check_members(incidents: &[IncidentRule], rules: &[Rule]) -> Vec<RuleError> {
    let mut errors = Vec::new();
    for inc in incidents {
        let (file, line) = inc.origin.rsplit_once(':').unwrap_or((&inc.origin, "1"));
        let mut err = |message: String| {
            errors.push(RuleError {
                file: file.to_owned(),
                line: line.parse().unwrap_or(1),
                column: 1,
                rule: Some(inc.id.clone()),
                message,
            });
        };
        for pattern in &inc.alerts {
            let named: Vec<&Rule> = rules
                .iter()
                .filter(|r| matches_pattern(pattern, &r.id))
                .collect();
            if named.is_empty() {
                err(format!("alerts: {pattern:?} names no rule"));
            }
            for r in named
                .iter()
                .filter(|r| inc.key_field(&r.group_by).is_none())
            {
                let wanted = match inc.on {
                    JoinOn::Place { .. } => PLACE_FIELDS.join(" or "),
                    JoinOn::Merchant => MERCHANT_FIELDS.join(" or "),
                };
                err(format!(
                    "alerts: rule {:?} groups by {:?}, without {wanted} to join on",
                    r.id, r.group_by
                ));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(on: &str, within_m: Option<f64>) -> IncidentSource {
        IncidentSource {
            id: "incident.x".into(),
            description: String::new(),
            severity: Severity::Major,
            alerts: vec!["elevator.trapped_*".into()],
            complaints: vec![],
            on: on.into(),
            within_m,
            within: None,
            enabled: true,
        }
    }

    #[test]
    fn a_place_join_needs_its_distance_and_a_merchant_join_takes_none() {
        let place = check(&src("place", Some(50.0))).expect("valid");
        assert_eq!(place.on, JoinOn::Place { metres: 50.0 });
        assert_eq!(place.within_ms, DEFAULT_WITHIN_MS);
        let missing = check(&src("place", None)).unwrap_err();
        assert_eq!(missing[0].0, "on");
        let far = check(&src("place", Some(9_000.0))).unwrap_err();
        assert_eq!(far[0].0, "within_m");
        assert_eq!(check(&src("merchant", None)).unwrap().on, JoinOn::Merchant);
        assert_eq!(
            check(&src("merchant", Some(5.0))).unwrap_err()[0].0,
            "within_m"
        );
        assert!(
            check(&src("building", None)).unwrap_err()[0]
                .1
                .contains("building")
        );
    }

    #[test]
    fn patterns_take_a_prefix_or_an_exact_id() {
        let inc = check(&src("place", Some(50.0))).unwrap();
        assert!(inc.takes_alert("elevator.trapped_in_zone"));
        assert!(!inc.takes_alert("elevator.overspeed"));
        assert!(matches_pattern("kitchen.hazard", "kitchen.hazard"));
        assert!(!matches_pattern("kitchen.hazard", "kitchen.hazards"));
        assert!(inc.takes_complaint("anything"));
    }

    #[test]
    fn the_key_field_is_found_in_the_group() {
        let inc = check(&src("merchant", None)).unwrap();
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            inc.key_field(&g(&["market_id", "scale_id"])),
            Some((1, "scale_id"))
        );
        assert_eq!(inc.key_field(&g(&["elevator_id"])), None);
    }
}

#[cfg(test)]
mod pack_tests {
    #[test]
    fn the_default_pack_ships_three_incidents_that_name_its_rules() {
        let pack = crate::default_pack().unwrap();
        let found = crate::default_incidents(&pack).expect("the pack's incidents are valid");
        let ids: Vec<&str> = found.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            ["incident.elevator", "incident.kitchen", "incident.stall"]
        );
        assert_eq!(found[1].within_ms, 2 * 3_600_000);
        assert!(found[0].origin.starts_with("default/incidents.toml:"));
    }

    #[test]
    fn a_member_without_the_key_or_an_unknown_member_is_an_error() {
        let rules = crate::default_pack().unwrap();
        let text = r#"
[[incident]]
id = "incident.bad"
severity = "minor"
alerts = ["market.scale_short_weight", "nothing.here"]
on = "place"
within_m = 30
"#;
        let found = crate::load_incidents_str("x.toml", text).unwrap();
        let errors = crate::load::incidents_checked(&found, &rules);
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0]
                .starts_with("x.toml:2:1: alerts: rule \"market.scale_short_weight\" groups by")
        );
        assert!(messages[1].contains("\"nothing.here\" names no rule"));
        let typo = "[[incident]]\nid = \"i\"\nseverity = \"minor\"\nalerts = [\"a\"]\non = \"merchant\"\nwithin = \"soon\"\n";
        let e = crate::load_incidents_str("y.toml", typo).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "y.toml:1:1: within: \"soon\" is not a duration between 1ms and 7d"
        );
    }
}
