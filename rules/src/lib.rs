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
//! - [`expr`]: CEL: compiling, the `event` value of each stream, evaluating.
//! - [`machine`]: raw condition → firing, with `for`, `keep_firing_for`, windows and absence.

pub mod expr;
pub mod load;
pub mod machine;
pub mod spec;

pub use load::{RuleError, load_dir, load_str};
pub use spec::{Rule, Severity};
