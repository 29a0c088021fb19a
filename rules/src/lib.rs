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
//! - [`limits`]: bounds on rule text, checked before the parsers see it.
//! - [`expr`]: CEL: compiling, the `event` value of each stream, evaluating.
//! - [`machine`]: raw condition → firing, with `for`, `keep_firing_for`, windows and absence.

pub mod expr;
pub mod limits;
pub mod load;
pub mod machine;
pub mod spec;

pub use load::{RuleError, compile, load_dir, load_str};
pub use spec::{Rule, RuleSource, Severity};

/// A rule's stable key across workers and rule-set versions: a hash of its id.
pub fn rule_key(id: &str) -> u64 {
    // FNV-1a: stable across processes and versions, unlike the std hasher.
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
