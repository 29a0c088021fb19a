//! An event as an explanation keeps it: its times, its topic under the prefix and its payload
//! as JSON, so that it can be shown long after the event, carried between processes and
//! journaled, and decoded again to evaluate a rule over it (docs/explain.md).
//!
//! A kept event is a handle: the times, and the topic and payload (without `ts`) behind an
//! `Arc`. A device repeating itself (a car standing with its door open sends the same frame
//! every second) is kept as one body shared by every time ([`Seen::share_body`]).

use crate::{Decoder, DecoderConfig, Envelope, Rejection};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A kept event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Event time, epoch ms (the device's `ts`, or the arrival time when it sent none).
    pub time_ms: u64,
    /// Arrival time, epoch ms.
    pub received_ms: u64,
    pub body: Arc<Body>,
}

/// What an event said, but its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The topic under the prefix: `elevator/E1/status`.
    pub topic: String,
    /// The payload as the contract spells it, without `ts` (`time_ms` holds it).
    pub payload: String,
}

impl Seen {
    /// `env`, kept.
    pub fn of(env: &Envelope) -> Seen {
        let (topic, payload) = env.event.encode("");
        // The contract's payloads are JSON written by serde_json: UTF-8.
        let payload = String::from_utf8_lossy(&payload);
        Seen {
            time_ms: env.time_ms,
            received_ms: env.received_ms,
            body: Arc::new(Body {
                topic,
                payload: without_ts(&payload),
            }),
        }
    }

    /// Shares `other`'s body when it says the same (the memory of a repeated frame is then
    /// its times).
    pub fn share_body(&mut self, other: &Seen) {
        if !Arc::ptr_eq(&self.body, &other.body) && self.body == other.body {
            self.body = other.body.clone();
        }
    }

    /// The payload as the device sent it, its time included.
    pub fn payload(&self) -> String {
        let p = &self.body.payload;
        match p.strip_prefix('{') {
            Some("}") => format!("{{\"ts\":{}}}", self.time_ms),
            Some(rest) => format!("{{\"ts\":{},{rest}", self.time_ms),
            None => p.clone(),
        }
    }

    /// The event again, as the dataflow saw it.
    pub fn envelope(&self) -> Result<Envelope, Rejection> {
        let decoder = Decoder::new(DecoderConfig {
            prefix: String::new(),
            ..DecoderConfig::default()
        });
        let event = decoder.decode_event(&self.body.topic, self.payload().as_bytes())?;
        Ok(Envelope {
            event,
            time_ms: self.time_ms,
            received_ms: self.received_ms,
            untimed: false,
            replayed: false,
        })
    }
}

/// `payload` without its `ts` field, which serde writes first when it is there.
fn without_ts(payload: &str) -> String {
    let Some(rest) = payload.strip_prefix("{\"ts\":") else {
        return payload.to_owned();
    };
    match rest.find([',', '}']) {
        Some(end) if rest.as_bytes()[end] == b',' => format!("{{{}", &rest[end + 1..]),
        Some(end) => format!("{{{}", &rest[end..]),
        None => payload.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_event_decodes_to_the_event() {
        let decoder = Decoder::default();
        let messages = [
            (
                "cw/v1/elevator/E1/status",
                r#"{"ts":1700000000000,"floor":3,"in_door_zone":false,"speed_mps":0.0,"direction":"stop","door":"closed","occupied":true}"#,
            ),
            (
                "cw/v1/market/M1/scale/S2/sale",
                r#"{"ts":1700000000000,"stall_id":"T1","goods_code":"pork","weight_kg":1.5,"unit_price":30.0,"total":45.0}"#,
            ),
        ];
        for (topic, payload) in messages {
            let env = decoder
                .decode(topic, payload.as_bytes(), 1_700_000_000_100)
                .unwrap();
            let seen = Seen::of(&env);
            assert_eq!(seen.body.topic, topic.strip_prefix("cw/v1/").unwrap());
            assert!(!seen.body.payload.contains("ts"), "{}", seen.body.payload);
            assert_eq!(seen.envelope().unwrap(), env);
        }
    }

    #[test]
    fn a_repeated_frame_shares_its_body() {
        let decoder = Decoder::default();
        let frame = |ts: u64| {
            let payload = format!(
                r#"{{"ts":{ts},"floor":3,"in_door_zone":true,"speed_mps":0.0,"direction":"stop","door":"open"}}"#
            );
            Seen::of(
                &decoder
                    .decode("cw/v1/elevator/E1/status", payload.as_bytes(), ts)
                    .unwrap(),
            )
        };
        let first = frame(1_000);
        let mut again = frame(2_000);
        assert!(!Arc::ptr_eq(&first.body, &again.body));
        again.share_body(&first);
        assert!(Arc::ptr_eq(&first.body, &again.body));
        assert_eq!(again.envelope().unwrap().time_ms, 2_000);
        assert_eq!(without_ts(r#"{"ts":5}"#), "{}");
        assert_eq!(without_ts(r#"{"a":1}"#), r#"{"a":1}"#);
    }
}
