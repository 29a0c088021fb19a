//! What is in force: the rules and the reference data, and the conditions computed under them.
//!
//! Beside the data path (`ingest → dataflow → alerts → notifications`): the dataflow takes each
//! version of the rules and reference data from here at its frontier, and the alerts read the
//! same versions (each snapshot of conditions names the rule sets it was computed under), so no
//! stage holds a second truth about what is in force, and `alerts` needs neither `dataflow` nor
//! `api`.
//!
//! # Layout
//! - [`rules_in_force`]: the rule set in force, changed one change at a time (through the API,
//!   with compare-and-set on a rule's version, or by a reload of the rule files).
//! - [`kept_rules`]: rule changes made through the API, kept for the next start, and each
//!   rule's history of versions.
//! - [`reference`]: the reference data's tables (registries, receivers, guidance prices) and
//!   their loader.
//! - [`conditions`]: active alert conditions, the output of the rules, and their snapshots.

pub mod conditions;
pub mod kept_rules;
pub mod reference;
pub mod rules_in_force;

pub use conditions::{Active, Condition, ConditionsFn, ConditionsSnapshot, RuleVersions};
pub use reference::Reference;
pub use rules_in_force::RuleManager;
