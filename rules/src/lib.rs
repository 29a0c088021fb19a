//! The declarative rule language of citywatch: parse, validate, and evaluate.
//!
//! Sits between the typed events (`model`) and the dataflow: a rule file (TOML) describes
//! what to watch on which stream; this crate turns it into a [`Rule`] with compiled CEL
//! expressions, and provides the per-group state machine ([`machine::Machine`]) that the
//! dataflow runs in event-time order to produce active conditions. The language reference is
//! `docs/rules.md`.
//!
//! # Layout
//! - [`spec`]: the rule as written (serde) and as validated ([`Rule`]).
//! - [`load`]: reading rule files and directories, with `file:line:column` errors.
//! - `validate`: checking one rule's source by concern (the rule as a whole and its
//!   expressions; `validate/kinds.rs` what each kind of rule takes).
//! - [`limits`]: bounds on rule text, checked before the parsers see it.
//! - [`expr`]: CEL: compiling, the `event` value of each stream, evaluating.
//! - [`machine`]: raw condition → firing, with `for`, `keep_firing_for`, windows and absence.

pub mod compiled;
pub mod expr;
pub mod incident;
pub mod limits;
pub mod load;
pub mod machine;
mod parsed;
pub mod spec;
mod validate;

pub use incident::IncidentRule;
pub use load::{RuleError, compile, load_dir, load_incidents_dir, load_incidents_str, load_str};
pub use spec::{Rule, RuleSource, Severity};

/// The default rule pack (`rules/default/*.toml`), built into the binary so that citywatch
/// started without a rules directory still watches for what DOMAIN.md says it must.
pub const DEFAULT_PACK: [(&str, &str); 5] = [
    (
        "default/complaints.toml",
        include_str!("../default/complaints.toml"),
    ),
    (
        "default/incidents.toml",
        include_str!("../default/incidents.toml"),
    ),
    (
        "default/elevators.toml",
        include_str!("../default/elevators.toml"),
    ),
    (
        "default/kitchens.toml",
        include_str!("../default/kitchens.toml"),
    ),
    (
        "default/markets.toml",
        include_str!("../default/markets.toml"),
    ),
];

/// The built-in default pack, loaded.
pub fn default_pack() -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut rules = Vec::new();
    for (name, text) in DEFAULT_PACK {
        rules.extend(load_str(name, text)?);
    }
    Ok(rules)
}

/// The default pack's incident rules, checked against its alert rules `pack` (as
/// [`default_pack`] gives them).
pub fn default_incidents(pack: &[Rule]) -> Result<Vec<IncidentRule>, Vec<RuleError>> {
    let mut found = Vec::new();
    for (name, text) in DEFAULT_PACK {
        found.extend(load_incidents_str(name, text)?);
    }
    let errors = load::incidents_checked(&found, pack);
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// A rule written back as a rule file (`[[rule]]`), as an editor shows it: loading the text
/// gives the same definition.
pub fn to_toml(source: &RuleSource) -> Result<String, String> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        rule: [&'a RuleSource; 1],
    }
    toml::to_string(&File { rule: [source] }).map_err(|e| e.to_string())
}

/// A rule's stable key across workers and rule-set versions: a hash of its id.
pub fn rule_key(id: &str) -> u64 {
    // FNV-1a: stable across processes and versions, unlike the std hasher.
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_pack_is_the_directory() {
        let built_in = super::default_pack().unwrap();
        let dir =
            super::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("default"))
                .unwrap();
        let ids = |r: &[super::Rule]| {
            let mut v: Vec<String> = r.iter().map(|r| r.id.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(ids(&built_in), ids(&dir));
        let files =
            std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("default"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "toml")
                })
                .count();
        assert_eq!(
            files,
            super::DEFAULT_PACK.len(),
            "a new file in rules/default is built in too"
        );
    }

    #[test]
    fn every_rule_of_the_pack_written_back_loads_as_itself() {
        for rule in super::default_pack().unwrap() {
            let text = super::to_toml(&rule.source).unwrap();
            let again = super::load_str("again.toml", &text)
                .unwrap_or_else(|e| panic!("{}: {e:?}\n{text}", rule.id));
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].source, rule.source, "{text}");
        }
    }
}
