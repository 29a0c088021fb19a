//! Notification policies, as data: which alerts a policy takes (matchers); its escalation
//! steps, each a wall-clock delay from the alert's opening, a condition that cancels it
//! (`unless`), the roles it notifies and an optional mark; how its notifications are grouped
//! (`group_by` labels, `group_wait` before the first is sent, so alerts of one building or
//! market arriving together reach a receiver as one message); and how often a firing alert
//! nobody acknowledged is sent again (`repeat`). Read from `escalation.toml` in the reference
//! directory; without the file, [`Policies::domain_default`] applies.
//!
//! ```toml
//! [[policy]]
//! name = "critical-elevator"
//! match = ["domain=elevator", "severity=critical"]
//! [[policy.step]]
//! after = "5m"
//! unless = "acknowledged"
//! notify = ["duty_leader"]
//! [[policy.step]]
//! after = "30m"
//! unless = "resolved"
//! notify = ["duty_leader"]
//! mark = "overdue"
//!
//! [[policy]]
//! name = "default"
//! group_by = ["building", "market_id", "kitchen_id"]
//! group_wait = "10s"
//! repeat = "4h"
//! ```

use crate::matcher::{Matcher, all_match};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What cancels a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unless {
    /// The alert was acknowledged (or resolved) before the step's time.
    Acknowledged,
    /// The alert was resolved before the step's time.
    Resolved,
}

/// One step of a policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub after_ms: u64,
    pub unless: Unless,
    /// Routing roles (as in a rule's `route`) to notify.
    pub notify: Vec<String>,
    /// A mark set on the alert when the step runs (e.g. `overdue`).
    pub mark: Option<String>,
}

/// A named policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub steps: Vec<Step>,
    /// Labels whose values put notifications to one receiver in one message.
    pub group_by: Vec<String>,
    /// How long a grouped firing notification waits for others to join it.
    pub group_wait_ms: u64,
    /// Resend a firing, unacknowledged alert this often.
    pub repeat_ms: Option<u64>,
}

/// The policies, in order: an alert takes the first that matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Policies(pub Vec<Policy>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    policy: Vec<PolicyFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: String,
    #[serde(default, rename = "match")]
    matchers: Vec<Matcher>,
    #[serde(default)]
    step: Vec<StepFile>,
    #[serde(default)]
    group_by: Vec<String>,
    group_wait: Option<String>,
    repeat: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    after: String,
    unless: Unless,
    #[serde(default)]
    notify: Vec<String>,
    mark: Option<String>,
}

/// Roles a step may notify: those routing knows.
const ROLES: [&str; 3] = ["maintenance_unit", "office", "duty_leader"];

impl Policies {
    /// DOMAIN.md's escalation for a critical elevator alert: not acknowledged in 5 min → the
    /// duty leader; not resolved in 30 min → the duty leader again, marked overdue.
    pub fn domain_default() -> Policies {
        Policies::parse(
            r#"
[[policy]]
name = "critical-elevator"
match = ["domain=elevator", "severity=critical"]
[[policy.step]]
after = "5m"
unless = "acknowledged"
notify = ["duty_leader"]
[[policy.step]]
after = "30m"
unless = "resolved"
notify = ["duty_leader"]
mark = "overdue"

[[policy]]
name = "default"
group_by = ["building", "market_id", "kitchen_id"]
group_wait = "10s"
repeat = "4h"
"#,
        )
        .expect("the built-in policy parses")
    }

    /// Parses a policy file; the error names the policy and field at fault.
    pub fn parse(text: &str) -> Result<Policies, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for p in file.policy {
            let mut steps = Vec::new();
            for (i, s) in p.step.into_iter().enumerate() {
                let at = format!("policy {:?} step {}", p.name, i + 1);
                let after_ms = rules::spec::parse_duration(&s.after).ok_or_else(|| {
                    format!(
                        "{at}: after = {:?} is not a duration such as \"5m\"",
                        s.after
                    )
                })?;
                if let Some(bad) = s.notify.iter().find(|r| !ROLES.contains(&r.as_str())) {
                    return Err(format!(
                        "{at}: notify names {bad:?}; known roles are {}",
                        ROLES.join(", ")
                    ));
                }
                if steps
                    .last()
                    .is_some_and(|prev: &Step| prev.after_ms > after_ms)
                {
                    return Err(format!("{at}: steps must be in order of `after`"));
                }
                steps.push(Step {
                    after_ms,
                    unless: s.unless,
                    notify: s.notify,
                    mark: s.mark,
                });
            }
            let duration = |field: &str, v: &Option<String>| -> Result<Option<u64>, String> {
                v.as_deref()
                    .map(|d| {
                        rules::spec::parse_duration(d).ok_or_else(|| {
                            format!(
                                "policy {:?}: {field} = {d:?} is not a duration such as \"10s\"",
                                p.name
                            )
                        })
                    })
                    .transpose()
            };
            let group_wait_ms = duration("group_wait", &p.group_wait)?.unwrap_or(0);
            let repeat_ms = duration("repeat", &p.repeat)?;
            if repeat_ms == Some(0) {
                return Err(format!("policy {:?}: repeat must be longer than 0", p.name));
            }
            out.push(Policy {
                name: p.name,
                matchers: p.matchers,
                steps,
                group_by: p.group_by,
                group_wait_ms,
                repeat_ms,
            });
        }
        Ok(Policies(out))
    }

    /// `dir/escalation.toml`, or the DOMAIN.md default when there is none.
    pub fn load(dir: Option<&Path>) -> Result<Policies, String> {
        let Some(path) = dir.map(|d| d.join("escalation.toml")) else {
            return Ok(Policies::domain_default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Policies::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policies::domain_default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The policy an alert with these labels takes.
    pub fn for_labels(&self, labels: &BTreeMap<String, String>) -> Option<&Policy> {
        self.0.iter().find(|p| all_match(&p.matchers, labels))
    }

    /// A policy by name.
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.0.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_else_is_grouped_and_repeated() {
        let p = Policies::domain_default();
        let labels: BTreeMap<String, String> = [("domain", "market"), ("severity", "major")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let policy = p.for_labels(&labels).unwrap();
        assert_eq!(policy.name, "default");
        assert_eq!(policy.group_wait_ms, 10_000);
        assert_eq!(policy.repeat_ms, Some(4 * 3_600_000));
        assert!(policy.steps.is_empty());
    }

    #[test]
    fn the_default_is_domain_md() {
        let p = Policies::domain_default();
        let labels: BTreeMap<String, String> = [("domain", "elevator"), ("severity", "critical")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let policy = p.for_labels(&labels).unwrap();
        assert_eq!(policy.steps[0].after_ms, 300_000);
        assert_eq!(policy.steps[0].unless, Unless::Acknowledged);
        assert_eq!(policy.steps[1].after_ms, 1_800_000);
        assert_eq!(policy.steps[1].mark.as_deref(), Some("overdue"));
        let minor: BTreeMap<String, String> = [("domain", "elevator"), ("severity", "minor")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        assert_eq!(p.for_labels(&minor).unwrap().name, "default");
    }

    #[test]
    fn errors_name_the_step() {
        let e = Policies::parse(
            "[[policy]]\nname = \"p\"\n[[policy.step]]\nafter = \"soon\"\nunless = \"resolved\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("policy \"p\" step 1") && e.contains("soon"),
            "{e}"
        );
        let e = Policies::parse(
            "[[policy]]\nname = \"p\"\n[[policy.step]]\nafter = \"1m\"\nunless = \"resolved\"\nnotify = [\"mayor\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("mayor") && e.contains("duty_leader"), "{e}");
    }
}
