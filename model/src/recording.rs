//! The recording format: JSON Lines, one MQTT message a line:
//! `{"topic": "cw/v1/…", "payload": <the JSON payload, or a string holding the raw bytes when
//! they are not a JSON object>, "received_ms"?: <u64>}`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One recorded message, borrowing from the line it was read from.
#[derive(Debug, Deserialize)]
pub struct RecordedRef<'a> {
    /// MQTT topic.
    #[serde(borrow)]
    pub topic: std::borrow::Cow<'a, str>,
    /// The payload as raw JSON text.
    #[serde(borrow)]
    pub payload: &'a RawValue,
    /// When it was received, epoch ms.
    #[serde(default)]
    pub received_ms: Option<u64>,
}

impl RecordedRef<'_> {
    /// The payload bytes as they travelled over MQTT: a JSON object verbatim, a JSON string
    /// unquoted (raw bytes that were not an object).
    pub fn payload_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        let raw = self.payload.get();
        if raw.starts_with('"') {
            match serde_json::from_str::<String>(raw) {
                Ok(s) => std::borrow::Cow::Owned(s.into_bytes()),
                Err(_) => std::borrow::Cow::Borrowed(raw.as_bytes()),
            }
        } else {
            std::borrow::Cow::Borrowed(raw.as_bytes())
        }
    }
}

/// Longest recording line read, bytes: a message with its topic and quoting, well above any
/// payload a decoder takes, so a corrupt file (no newlines) is refused line by line instead of
/// read whole into one string.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Why a recording line gave no event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("recording line of {0} bytes, over the limit of {MAX_LINE_BYTES}")]
    TooLong(usize),
    /// Not `{"topic", "payload", "received_ms"?}`.
    #[error("not a recording line: {0}")]
    Malformed(String),
    /// The message itself was rejected, as ingest would have.
    #[error(transparent)]
    Rejected(#[from] crate::Rejection),
}

/// Decodes one recording line as ingest would have decoded the message. A line without an
/// arrival time is taken as arriving at its own `ts`.
pub fn decode_line(decoder: &crate::Decoder, line: &str) -> Result<crate::Envelope, LineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(LineError::TooLong(line.len()));
    }
    // A line as [`line`] writes it is read without parsing it as JSON first (which would scan
    // the payload once more only to find where it ends): whatever else, or whatever fails so,
    // is read the general way, which gives the same envelope or says why not.
    if let Some(c) = Canonical::of(line)
        && let Ok(event) = decoder.decode_event(c.topic, c.payload.as_bytes())
    {
        let received = c.received_ms.or(event.ts()).unwrap_or(0);
        if let Ok(env) = decoder.envelope(c.topic, event, received) {
            return Ok(env);
        }
    }
    decode_any_line(decoder, line)
}

/// A line exactly as [`line`] writes a JSON-object payload:
/// `{"topic":"T","payload":{…}(,"received_ms":N)?}`, with a topic without escapes. For such a
/// line the JSON is valid exactly when the payload is, which decoding the payload checks.
struct Canonical<'a> {
    topic: &'a str,
    payload: &'a str,
    received_ms: Option<u64>,
}

impl<'a> Canonical<'a> {
    fn of(line: &'a str) -> Option<Canonical<'a>> {
        const RECEIVED: &str = r#","received_ms":"#;
        let rest = line.strip_prefix(r#"{"topic":""#)?;
        let (topic, rest) = rest.split_once('"')?;
        if topic.bytes().any(|b| b == b'\\' || b < 0x20) {
            return None;
        }
        let body = rest.strip_prefix(r#","payload":"#)?.strip_suffix('}')?;
        // The arrival time is the line's last member: looked for from the end, so that the
        // payload is not scanned.
        let head = body.trim_end_matches(|c: char| c.is_ascii_digit());
        let digits = &body[head.len()..];
        let (payload, received_ms) = match head.strip_suffix(RECEIVED) {
            Some(payload) if json_uint(digits) => (payload, Some(digits.parse().ok()?)),
            _ => (body, None),
        };
        (payload.starts_with('{') && payload.ends_with('}')).then_some(Canonical {
            topic,
            payload,
            received_ms,
        })
    }
}

/// Whether `s` is a non-negative integer as JSON writes one (no sign, no leading zero).
fn json_uint(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

/// Any line, read the general way: parsed as JSON, then its payload decoded. What
/// [`decode_line`] gives must always equal it (a property test and the fuzz target hold them
/// together).
pub fn decode_any_line(decoder: &crate::Decoder, line: &str) -> Result<crate::Envelope, LineError> {
    let rec: RecordedRef =
        serde_json::from_str(line).map_err(|e| LineError::Malformed(e.to_string()))?;
    let payload = rec.payload_bytes();
    // Decoded once: without an arrival time, the event's own `ts` is its arrival.
    let event = decoder.decode_event(&rec.topic, &payload)?;
    let received = rec.received_ms.or(event.ts()).unwrap_or(0);
    Ok(decoder.envelope(&rec.topic, event, received)?)
}

/// Writes one recording line for a message (without the newline).
pub fn line(topic: &str, payload: &[u8], received_ms: Option<u64>) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        topic: &'a str,
        payload: Box<RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        received_ms: Option<u64>,
    }
    let is_object = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
        && payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let payload = if is_object {
        RawValue::from_string(String::from_utf8_lossy(payload).into_owned())
    } else {
        RawValue::from_string(
            serde_json::to_string(&String::from_utf8_lossy(payload)).unwrap_or_default(),
        )
    };
    let payload =
        payload.unwrap_or_else(|_| RawValue::from_string("null".into()).expect("literal"));
    serde_json::to_string(&Line {
        topic,
        payload,
        received_ms,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lines near the form [`line`] writes, and a little off it: other topics, payloads that
    /// are valid, cut short, strings or objects followed by more, arrival times as JSON allows
    /// and does not, members in another order, spaces.
    fn near_canonical() -> impl Strategy<Value = String> {
        let topic = prop::sample::select(vec![
            "cw/v1/elevator/E1/status",
            "cw/v1/kitchen/K1/camera/C1/heartbeat",
            "cw/v1/complaint/new",
            "cw/v1/elevator/E\\u00311/status",
            "cw/v1/elevator/E\"1/status",
            "nope",
        ]);
        let payload = prop::sample::select(vec![
            r#"{"ts":1795737600000,"floor":2,"in_door_zone":true,"speed_mps":0,"direction":"stop","door":"open"}"#,
            r#"{"ts":1795737600000}"#,
            r#"{"ts":1795737600000,"received_ms":5}"#,
            r#"{"ts":1795737600000},"x":{"received_ms":5}"#,
            r#"{"ts":1795737600000,"floor":2"#,
            r#"{}"#,
            r#"[]"#,
            r#""{\"ts\":1}""#,
            r#"{"ts":"2026-11-30T08:00:00Z"}"#,
            r#"{"ts":1795737600000} "#,
        ]);
        let tail = prop::sample::select(vec![
            "",
            r#","received_ms":1795737600500"#,
            r#","received_ms":0"#,
            r#","received_ms":05"#,
            r#","received_ms":-1"#,
            r#","received_ms":null"#,
            r#","received_ms":99999999999999999999999"#,
            r#","x":1"#,
            r#","received_ms":5,"received_ms":6"#,
        ]);
        (topic, payload, tail, any::<bool>()).prop_map(|(t, p, tail, spaced)| {
            if spaced {
                format!(r#"{{ "topic": "{t}", "payload": {p}{tail} }}"#)
            } else {
                format!(r#"{{"topic":"{t}","payload":{p}{tail}}}"#)
            }
        })
    }

    proptest! {
        #[test]
        fn the_quick_reading_of_a_line_gives_what_the_general_one_gives(line in near_canonical()) {
            let d = crate::Decoder::default();
            prop_assert_eq!(decode_line(&d, &line), decode_any_line(&d, &line), "{}", line);
        }
    }

    #[test]
    fn a_line_as_written_is_read_the_quick_way() {
        let l = line("cw/v1/complaint/new", br#"{"a":1}"#, Some(5));
        let c = Canonical::of(&l).expect("canonical");
        assert_eq!(
            (c.topic, c.payload, c.received_ms),
            ("cw/v1/complaint/new", r#"{"a":1}"#, Some(5))
        );
        let l = line("t", br#"{"a":{"b":1,"received_ms":5}}"#, None);
        let c = Canonical::of(&l).expect("canonical");
        assert_eq!(
            (c.payload, c.received_ms),
            (r#"{"a":{"b":1,"received_ms":5}}"#, None)
        );
        assert!(Canonical::of(&line("t", b"{oops", None)).is_none());
    }

    #[test]
    fn objects_stay_json_and_other_bytes_become_strings() {
        let l = line("cw/v1/complaint/new", br#"{"a":1}"#, Some(5));
        assert_eq!(
            l,
            r#"{"topic":"cw/v1/complaint/new","payload":{"a":1},"received_ms":5}"#
        );
        let r: RecordedRef = serde_json::from_str(&l).unwrap();
        assert_eq!(&*r.payload_bytes(), br#"{"a":1}"#);

        let l = line("t", b"{oops", None);
        assert_eq!(l, r#"{"topic":"t","payload":"{oops"}"#);
        let r: RecordedRef = serde_json::from_str(&l).unwrap();
        assert_eq!(&*r.payload_bytes(), b"{oops");
    }

    #[test]
    fn lines_decode_as_ingest_would_and_refuse_what_they_must() {
        let d = crate::Decoder::default();
        let ok = line(
            "cw/v1/kitchen/K1/camera/C1/heartbeat",
            br#"{"ts":1795737600000}"#,
            None,
        );
        let env = decode_line(&d, &ok).unwrap();
        assert_eq!(env.time_ms, 1_795_737_600_000);
        assert!(matches!(decode_line(&d, "{"), Err(LineError::Malformed(_))));
        let bad = line("cw/v1/elevator/E1/status", b"[]", None);
        let got = decode_line(&d, &bad);
        assert!(matches!(got, Err(LineError::Rejected(_))), "{got:?}");
        let long = " ".repeat(MAX_LINE_BYTES + 1);
        assert_eq!(
            decode_line(&d, &long),
            Err(LineError::TooLong(MAX_LINE_BYTES + 1))
        );
    }
}
