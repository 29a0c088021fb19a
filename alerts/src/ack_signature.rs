//! Signed answers from maintenance units.
//!
//! MQTT 3.1.1 tells a subscriber nothing about who published a message, so an answer on
//! `cw/v1/notify/{unit}/ack` proves nothing by its topic: on a broker without ACLs anyone could
//! close a trapped-passenger alert. Each answer therefore carries
//! `"sig": "sha256=<hex HMAC-SHA256>"`, keyed with the `secret` of one of the unit's receivers
//! (`receivers.csv`), over the text
//!
//! ```text
//! {topic}\n{alert_id}\n{action}\n{by}\n{comment}
//! ```
//!
//! (`by` and `comment` empty when absent). The topic binds the answer to the unit, the alert id
//! and action to what it does; repeating a captured answer only repeats that same action,
//! which changes nothing the second time.

use crate::deliver::signature;
use crate::routing::Directory;

/// The signed parts of an answer.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub alert_id: &'a str,
    pub action: &'a str,
    pub by: Option<&'a str>,
    pub comment: Option<&'a str>,
    pub sig: Option<&'a str>,
}

/// The text a unit signs for an answer on `topic`.
pub fn signed_text(topic: &str, s: &Signed<'_>) -> String {
    format!(
        "{topic}\n{}\n{}\n{}\n{}",
        s.alert_id,
        s.action,
        s.by.unwrap_or(""),
        s.comment.unwrap_or("")
    )
}

/// Signs an answer with `secret` (for units' software and tests): the value of `sig`.
pub fn sign(secret: &str, topic: &str, s: &Signed<'_>) -> String {
    signature(secret, signed_text(topic, s).as_bytes())
}

/// Checks that an answer on `{prefix}notify/{unit}/ack` is signed with the secret of a receiver
/// that is `unit` or belongs to it. The comparison takes the same time wherever it differs.
pub fn verify(
    directory: &Directory,
    prefix: &str,
    unit: &str,
    s: &Signed<'_>,
) -> Result<(), String> {
    let Some(sig) = s.sig else {
        return Err(format!(
            "unsigned answer for unit {unit:?}: field \"sig\" is required (HMAC-SHA256 with the unit's receiver secret)"
        ));
    };
    let secrets = directory.secrets_of(unit);
    if secrets.is_empty() {
        return Err(format!(
            "unit {unit:?} has no receiver with a secret: it cannot answer over MQTT"
        ));
    }
    let topic = format!("{prefix}notify/{unit}/ack");
    let text = signed_text(&topic, s);
    let ok = secrets.iter().any(|secret| {
        same(
            signature(secret, text.as_bytes()).as_bytes(),
            sig.as_bytes(),
        )
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "field \"sig\": not signed by unit {unit:?} (wrong secret, or the answer was changed)"
        ))
    }
}

/// Constant-time equality of two byte strings of public length.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_equal() {
        assert!(same(b"sha256=ab", b"sha256=ab"));
        assert!(!same(b"sha256=ab", b"sha256=ac"));
        assert!(!same(b"sha256=ab", b"sha256=abc"));
    }

    #[test]
    fn the_text_binds_topic_alert_action_and_person() {
        let s = Signed {
            alert_id: "a1",
            action: "done",
            by: Some("王师傅"),
            comment: None,
            sig: None,
        };
        assert_eq!(
            signed_text("cw/v1/notify/MU-02/ack", &s),
            "cw/v1/notify/MU-02/ack\na1\ndone\n王师傅\n"
        );
        let a = sign("k", "cw/v1/notify/MU-02/ack", &s);
        assert_ne!(a, sign("k", "cw/v1/notify/MU-03/ack", &s));
        assert_ne!(
            a,
            sign(
                "k",
                "cw/v1/notify/MU-02/ack",
                &Signed { action: "ack", ..s }
            )
        );
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
    }
}
