//! An event as an explanation keeps it: its times, its topic under the prefix and its payload
//! as JSON, so that it can be shown long after the event, carried between processes and
//! journaled, and decoded again to evaluate a rule over it (docs/explain.md).

use crate::{Decoder, DecoderConfig, Envelope, Rejection};
use serde::{Deserialize, Serialize};

/// A kept event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Event time, epoch ms (the device's `ts`, or the arrival time when it sent none).
    pub time_ms: u64,
    /// Arrival time, epoch ms.
    pub received_ms: u64,
    /// The topic under the prefix: `elevator/E1/status`.
    pub topic: String,
    /// The payload as the contract spells it.
    pub payload: String,
}

impl Seen {
    /// `env`, kept.
    pub fn of(env: &Envelope) -> Seen {
        let (topic, payload) = env.event.encode("");
        Seen {
            time_ms: env.time_ms,
            received_ms: env.received_ms,
            topic,
            // The contract's payloads are JSON written by serde_json: UTF-8.
            payload: String::from_utf8_lossy(&payload).into_owned(),
        }
    }

    /// The event again, as the dataflow saw it.
    pub fn envelope(&self) -> Result<Envelope, Rejection> {
        let decoder = Decoder::new(DecoderConfig {
            prefix: String::new(),
            ..DecoderConfig::default()
        });
        let event = decoder.decode_event(&self.topic, self.payload.as_bytes())?;
        Ok(Envelope {
            untimed: event.ts().is_none(),
            event,
            time_ms: self.time_ms,
            received_ms: self.received_ms,
            replayed: false,
        })
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
            assert_eq!(seen.topic, topic.strip_prefix("cw/v1/").unwrap());
            assert_eq!(seen.envelope().unwrap(), env);
        }
    }
}
