//! Escalation policies, as data: which alerts a policy takes (matchers), and its steps, each
//! a wall-clock delay from the alert's opening, a condition that cancels it (`unless`), the
//! roles it notifies and an optional mark. Read from `escalation.toml` in the reference
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
            out.push(Policy {
                name: p.name,
                matchers: p.matchers,
                steps,
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
        assert!(p.for_labels(&minor).is_none());
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
