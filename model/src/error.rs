//! Why a message was rejected.

use serde::{Deserialize, Serialize};

/// The class of bad input. Each has a stable snake_case code used in metrics labels, the
/// dead-letter store and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The payload is not JSON (or not UTF-8).
    NotJson,
    /// The payload is JSON but not an object.
    NotObject,
    /// The topic matches no contract topic.
    UnknownTopic,
    /// An id segment of the topic is not 1–64 chars of `[A-Za-z0-9_.-]`.
    BadId,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A field's value is outside its allowed range or set.
    OutOfRange,
    /// `ts` is more than the allowed skew (24 h) away from the arrival time.
    TsSkew,
    /// The payload is larger than the configured limit.
    TooLarge,
    /// Not from whom its topic says (a unit's answer without its signature).
    Unauthorized,
}

impl Reason {
    /// Every reason, for metrics that must show zeros.
    pub const ALL: [Reason; 10] = [
        Reason::NotJson,
        Reason::NotObject,
        Reason::UnknownTopic,
        Reason::BadId,
        Reason::MissingField,
        Reason::WrongType,
        Reason::OutOfRange,
        Reason::TsSkew,
        Reason::TooLarge,
        Reason::Unauthorized,
    ];

    /// The stable code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::UnknownTopic => "unknown_topic",
            Reason::BadId => "bad_id",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::OutOfRange => "out_of_range",
            Reason::TsSkew => "ts_skew",
            Reason::TooLarge => "too_large",
            Reason::Unauthorized => "unauthorized",
        }
    }

    /// Parses a stable code.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected message: the reason code, the field at fault (if one), and a message that names
/// the topic, the field and why, e.g.
/// `field "speed_mps" in cw/v1/elevator/E12/status: expected a number, got "fast"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// The class of bad input.
    pub reason: Reason,
    /// The payload field at fault, when there is one.
    pub field: Option<String>,
    /// The full human-readable message.
    pub message: String,
}

impl Rejection {
    pub(crate) fn topic(reason: Reason, topic: &str, why: impl std::fmt::Display) -> Self {
        Rejection {
            reason,
            field: None,
            message: format!("{}: {why}", printable(topic)),
        }
    }

    pub(crate) fn field(
        reason: Reason,
        topic: &str,
        field: &str,
        why: impl std::fmt::Display,
    ) -> Self {
        Rejection {
            reason,
            field: Some(field.to_owned()),
            message: format!("field \"{field}\" in {}: {why}", printable(topic)),
        }
    }
}

/// Topics come from the network: keep messages one line and bounded.
fn printable(topic: &str) -> String {
    let mut s: String = topic
        .chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if topic.chars().count() > 200 {
        s.push('…');
    }
    s
}
