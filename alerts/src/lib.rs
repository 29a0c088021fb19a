//! Alerts: conditions become alerts with a lifecycle, kept in a durable journal, and
//! notifications that are delivered at least once and survive restarts.
//!
//! Last steps of the data path (`dataflow → alerts → notifications`): the rules' condition
//! changes come in, each is appended to the journal with the notifications it causes (the
//! outbox) in one transaction, and delivery workers send the outbox. The semantics are in
//! `docs/alerts.md`.
//!
//! # Layout
//! - [`facts`]: what alerts want to know of events besides conditions (a camera's evidence,
//!   whom a complaint is about, residue tests), fed by a tap on the decoded stream.
//! - [`incidents`]: alerts and complaints an incident rule joined, as cases with a lifecycle.
//! - [`journal`]: the SQLite journal: alerts, transitions, outbox, escalations, silences.
//! - [`lifecycle`]: what each change does inside one journal transaction: episodes,
//!   operator actions, escalation steps, holding and releasing notifications.
//! - [`matcher`]: label matchers for silences and policies.
//! - [`policy`]: escalation policies, as data.
//! - [`routing`]: who a rule's `route` reaches, from reference data.
//! - [`deliver`]: sending one notification (webhook, MQTT), retries and backoff.
//! - [`ack_signature`]: units' answers over MQTT are signed; checking them.
//! - [`push`]: the MQTT connection for push notifications and the units' acks.
//! - [`service`]: [`Alerts`], tying them together for the binary and the API.
//! - [`stage`]: the bounded queue and thread between the dataflow and the journal.

pub mod ack_signature;
pub mod causes;
pub mod deliver;
pub mod facts;
pub mod incidents;
pub mod journal;
pub mod lifecycle;
pub mod matcher;
pub mod policy;
pub mod push;
pub mod routing;
pub mod service;
pub mod stage;

pub use causes::CauseRow;
pub use facts::Facts;
pub use incidents::{IncidentAction, IncidentFilter, IncidentRow, MemberRow};
pub use journal::{
    AlertFilter, AlertRow, AlertState, EscalationRow, NotificationRow, Overview, SilenceRow,
    TransitionEvent, TransitionRow,
};
pub use lifecycle::{ActError, Action, FieldState};
pub use matcher::Matcher;
pub use policy::Policies;
pub use service::{
    AlertDetail, Alerts, AlertsStats, Clock, EvidenceFn, LabelsFn, NewSilence, Options,
    UnitAckError,
};
pub use stage::{QueueStats, Stage};

/// Why the alert store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// SQLite failed.
    #[error("alert journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value did not parse.
    #[error("alert journal: {0}")]
    Json(#[from] serde_json::Error),
    /// The webhook client cannot be built (its CA file).
    #[error("webhook tls: {0}")]
    Tls(String),
}

/// An alert's id: a fingerprint of (rule, group), 16 hex digits of FNV-1a.
pub fn fingerprint(rule: &str, group: &str) -> String {
    format!("{:016x}", fnv([rule.as_bytes(), &[0], group.as_bytes()]))
}

/// FNV-1a over some byte strings: short stable ids.
pub(crate) fn fnv<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    parts
        .into_iter()
        .flatten()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}
