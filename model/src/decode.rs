//! Decoding a topic and its payload into an [`Envelope`].
//!
//! Valid messages take the fast path: one typed `serde_json` pass straight into the payload
//! struct, then range checks. Only when that pass fails does the error path parse the payload
//! again as a generic JSON value and walk the stream's field table to say exactly which field
//! is missing or of the wrong type. Bad input is rare, so it pays for the precision.

use crate::error::{Reason, Rejection};
use crate::event::*;
use crate::id::is_valid_id;
use crate::time::{DAY_MS, parse_rfc3339_ms};
use crate::topic::{self, TopicError};
use crate::{ComplaintKind, ComplaintStatus, Direction, Door, ResidueResult};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Limits and the prefix the decoder applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Topic prefix, ending in `/` (default `cw/v1/`).
    pub prefix: String,
    /// Largest accepted payload in bytes (default 64 KiB).
    pub max_payload_bytes: usize,
    /// Largest accepted distance between `ts` and the arrival time (default 24 h).
    pub max_skew_ms: u64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            prefix: topic::DEFAULT_PREFIX.to_owned(),
            max_payload_bytes: 64 * 1024,
            max_skew_ms: DAY_MS,
        }
    }
}

/// A decoded event with its times.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The event.
    pub event: Event,
    /// Event time in epoch ms: the device's `ts`, or the arrival time when it sent none.
    pub time_ms: u64,
    /// Arrival time in epoch ms (kept for latency measurement only).
    pub received_ms: u64,
    /// Whether the device sent no `ts`.
    pub untimed: bool,
    /// Fed again at start from the complaint log (to restore the handling-deadline clocks),
    /// not newly received.
    pub replayed: bool,
}

/// A decoded event on its way into the dataflow, with the sequence number its source uses to
/// acknowledge it once it has been handed to the dataflow input.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// The event.
    pub envelope: Envelope,
    /// The source's sequence number, if the source wants to hear when it was handed over.
    pub seq: Option<u64>,
}

/// Turns topics and payloads into typed events, or precise rejections.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    config: DecoderConfig,
}

impl Decoder {
    /// A decoder with the given limits.
    pub fn new(config: DecoderConfig) -> Self {
        Decoder { config }
    }

    /// The decoder's configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Decodes one message that arrived at `received_ms`.
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        received_ms: u64,
    ) -> Result<Envelope, Rejection> {
        let event = self.decode_event(topic, payload)?;
        self.envelope(topic, event, received_ms)
    }

    /// The typed event of a message, checked against the contract (its time is not checked:
    /// see [`Self::envelope`]).
    pub fn decode_event(&self, topic: &str, payload: &[u8]) -> Result<Event, Rejection> {
        if payload.len() > self.config.max_payload_bytes {
            return Err(Rejection::topic(
                Reason::TooLarge,
                topic,
                format_args!(
                    "payload of {} bytes exceeds the limit of {} bytes",
                    payload.len(),
                    self.config.max_payload_bytes
                ),
            ));
        }
        let route = topic::parse(&self.config.prefix, topic).map_err(|e| match e {
            TopicError::Unknown => Rejection::topic(
                Reason::UnknownTopic,
                topic,
                "not a topic of the device contract",
            ),
            TopicError::BadId(seg) => Rejection::topic(
                Reason::BadId,
                topic,
                format_args!(
                    "id segment {:?} is not 1-64 characters of [A-Za-z0-9_.-]",
                    seg.chars().take(80).collect::<String>()
                ),
            ),
        })?;
        let (id1, id2) = (route.id1, route.id2);
        let event = match route.stream {
            Stream::ElevatorStatus => {
                let frame: ElevatorFrame = typed(topic, payload, FRAME)?;
                check(topic, validate_frame(&frame))?;
                Event::ElevatorStatus {
                    elevator_id: id1.into(),
                    frame,
                }
            }
            Stream::ElevatorEvent => {
                let event = typed(topic, payload, ELEVATOR_EVENT)?;
                Event::ElevatorEvent {
                    elevator_id: id1.into(),
                    event,
                }
            }
            Stream::MarketSale => {
                let sale: Sale = typed(topic, payload, SALE)?;
                check(topic, validate_sale(&sale))?;
                Event::Sale {
                    market_id: id1.into(),
                    scale_id: id2.into(),
                    sale,
                }
            }
            Stream::MarketCheck => {
                let check_: ScaleCheck = typed(topic, payload, CHECK)?;
                check(topic, positive("reference_kg", check_.reference_kg))?;
                check(topic, non_negative("measured_kg", check_.measured_kg))?;
                Event::ScaleCheck {
                    market_id: id1.into(),
                    scale_id: id2.into(),
                    check: check_,
                }
            }
            Stream::MarketResidue => {
                let test: ResidueTest = typed(topic, payload, RESIDUE)?;
                check(topic, payload_id("stall_id", &test.stall_id))?;
                check(topic, payload_id("goods_code", &test.goods_code))?;
                check(
                    topic,
                    within("inhibition_pct", test.inhibition_pct, 0.0, 100.0),
                )?;
                Event::Residue {
                    market_id: id1.into(),
                    test,
                }
            }
            Stream::KitchenDetection => {
                let detection: Detection = typed(topic, payload, DETECTION)?;
                if let Some(c) = detection.confidence {
                    check(topic, within("confidence", c, 0.0, 1.0))?;
                }
                Event::Detection {
                    kitchen_id: id1.into(),
                    camera_id: id2.into(),
                    detection,
                }
            }
            Stream::KitchenHeartbeat => {
                let heartbeat = typed(topic, payload, HEARTBEAT)?;
                Event::Heartbeat {
                    kitchen_id: id1.into(),
                    camera_id: id2.into(),
                    heartbeat,
                }
            }
            Stream::ComplaintNew => {
                let complaint: Complaint = typed(topic, payload, COMPLAINT)?;
                check(topic, validate_complaint(&complaint))?;
                Event::ComplaintNew { complaint }
            }
            Stream::ComplaintStatus => {
                let update: ComplaintUpdate = typed(topic, payload, COMPLAINT_STATUS)?;
                if let Some(office) = &update.office {
                    check(topic, payload_id("office", office))?;
                }
                Event::ComplaintStatus {
                    complaint_id: id1.into(),
                    update,
                }
            }
        };
        Ok(event)
    }

    /// The event placed in time: at its `ts`, which may be no further than the allowed skew
    /// from its arrival; at its arrival when it has none.
    pub fn envelope(
        &self,
        topic: &str,
        event: Event,
        received_ms: u64,
    ) -> Result<Envelope, Rejection> {
        let (time_ms, untimed) = match event.ts() {
            Some(ts) => {
                if ts.abs_diff(received_ms) > self.config.max_skew_ms {
                    return Err(Rejection::field(
                        Reason::TsSkew,
                        topic,
                        "ts",
                        format_args!(
                            "{ts} is {} s away from the arrival time {received_ms}, more than the allowed {} s",
                            ts.abs_diff(received_ms) / 1000,
                            self.config.max_skew_ms / 1000
                        ),
                    ));
                }
                (ts, false)
            }
            None => (received_ms, true),
        };
        Ok(Envelope {
            event,
            time_ms,
            received_ms,
            untimed,
            replayed: false,
        })
    }
}

/// A range check failure: the field and why.
type Invalid = (&'static str, String);

fn check(topic: &str, r: Result<(), Invalid>) -> Result<(), Rejection> {
    r.map_err(|(field, why)| Rejection::field(Reason::OutOfRange, topic, field, why))
}

fn within(field: &'static str, v: f64, lo: f64, hi: f64) -> Result<(), Invalid> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err((field, format!("{v} is outside {lo}..={hi}")))
    }
}

fn positive(field: &'static str, v: f64) -> Result<(), Invalid> {
    if v > 0.0 {
        Ok(())
    } else {
        Err((field, format!("{v} must be greater than 0")))
    }
}

fn non_negative(field: &'static str, v: f64) -> Result<(), Invalid> {
    if v >= 0.0 {
        Ok(())
    } else {
        Err((field, format!("{v} must not be negative")))
    }
}

fn payload_id(field: &'static str, v: &str) -> Result<(), Invalid> {
    if is_valid_id(v) {
        Ok(())
    } else {
        Err((
            field,
            format!("{v:?} is not 1-64 characters of [A-Za-z0-9_.-]"),
        ))
    }
}

fn validate_frame(f: &ElevatorFrame) -> Result<(), Invalid> {
    non_negative("speed_mps", f.speed_mps)?;
    if let Some(v) = f.load_pct {
        within("load_pct", v, 0.0, 150.0)?;
    }
    if let Some(v) = f.vibration_mps2 {
        non_negative("vibration_mps2", v)?;
    }
    Ok(())
}

fn validate_sale(s: &Sale) -> Result<(), Invalid> {
    payload_id("stall_id", &s.stall_id)?;
    payload_id("goods_code", &s.goods_code)?;
    positive("weight_kg", s.weight_kg)?;
    positive("unit_price", s.unit_price)?;
    non_negative("total", s.total)?;
    if let Some(t) = s.tare_kg {
        non_negative("tare_kg", t)?;
    }
    Ok(())
}

fn validate_complaint(c: &Complaint) -> Result<(), Invalid> {
    payload_id("complaint_id", &c.complaint_id)?;
    if let Some(m) = &c.merchant_id {
        payload_id("merchant_id", m)?;
    }
    if c.category.is_empty() {
        return Err(("category", "must not be empty".to_owned()));
    }
    if let Some(v) = c.lat {
        within("lat", v, -90.0, 90.0)?;
    }
    if let Some(v) = c.lon {
        within("lon", v, -180.0, 180.0)?;
    }
    if let Some(v) = c.amount {
        non_negative("amount", v)?;
    }
    Ok(())
}

/// The JSON shape a field must have, for the error path.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Num,
    Bool,
    Str,
    Time,
    OneOf(&'static [&'static str]),
}

/// One field of a payload, for the error path.
struct Field(&'static str, Kind, bool);

const TS: Field = Field("ts", Kind::Time, false);

const FRAME: &[Field] = &[
    TS,
    Field("floor", Kind::Int, true),
    Field("position_m", Kind::Num, false),
    Field("in_door_zone", Kind::Bool, true),
    Field("speed_mps", Kind::Num, true),
    Field("direction", Kind::OneOf(Direction::NAMES), true),
    Field("door", Kind::OneOf(Door::NAMES), true),
    Field("light_curtain_blocked", Kind::Bool, false),
    Field("occupied", Kind::Bool, false),
    Field("load_pct", Kind::Num, false),
    Field("vibration_mps2", Kind::Num, false),
    Field("service_mode", Kind::Str, false),
    Field("safety_circuit_ok", Kind::Bool, false),
    Field("power_ok", Kind::Bool, false),
    Field("alarm_button", Kind::Bool, false),
];
const ELEVATOR_EVENT: &[Field] = &[
    TS,
    Field("code", Kind::Str, true),
    Field("floor", Kind::Int, false),
    Field("detail", Kind::Str, false),
];
const SALE: &[Field] = &[
    TS,
    Field("stall_id", Kind::Str, true),
    Field("goods_code", Kind::Str, true),
    Field("weight_kg", Kind::Num, true),
    Field("unit_price", Kind::Num, true),
    Field("total", Kind::Num, true),
    Field("tare_kg", Kind::Num, false),
];
const CHECK: &[Field] = &[
    TS,
    Field("reference_kg", Kind::Num, true),
    Field("measured_kg", Kind::Num, true),
];
const RESIDUE: &[Field] = &[
    TS,
    Field("stall_id", Kind::Str, true),
    Field("goods_code", Kind::Str, true),
    Field("inhibition_pct", Kind::Num, true),
    Field("result", Kind::OneOf(ResidueResult::NAMES), false),
];
const DETECTION: &[Field] = &[
    TS,
    Field("kind", Kind::Str, true),
    Field("confidence", Kind::Num, false),
    Field("snapshot", Kind::Str, false),
];
const HEARTBEAT: &[Field] = &[TS, Field("online", Kind::Bool, false)];
const COMPLAINT: &[Field] = &[
    TS,
    Field("complaint_id", Kind::Str, true),
    Field("kind", Kind::OneOf(ComplaintKind::NAMES), false),
    Field("merchant_id", Kind::Str, false),
    Field("merchant_name", Kind::Str, true),
    Field("category", Kind::Str, true),
    Field("lat", Kind::Num, false),
    Field("lon", Kind::Num, false),
    Field("amount", Kind::Num, false),
    Field("text", Kind::Str, false),
];
const COMPLAINT_STATUS: &[Field] = &[
    TS,
    Field("status", Kind::OneOf(ComplaintStatus::NAMES), true),
    Field("office", Kind::Str, false),
];

fn typed<T: DeserializeOwned>(topic: &str, payload: &[u8], spec: &[Field]) -> Result<T, Rejection> {
    // Text checked as UTF-8 in one pass, then parsed without checking each string again; what
    // is not UTF-8 is parsed as bytes, for the same rejection as before.
    let parsed = match std::str::from_utf8(payload) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(payload),
    };
    parsed.map_err(|e| explain(topic, payload, spec, &e))
}

/// The error path: find the first field that breaks the contract.
fn explain(topic: &str, payload: &[u8], spec: &[Field], err: &serde_json::Error) -> Rejection {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            return Rejection::topic(
                Reason::NotJson,
                topic,
                format_args!("payload is not JSON: {e}"),
            );
        }
    };
    let Some(obj) = value.as_object() else {
        return Rejection::topic(
            Reason::NotObject,
            topic,
            format_args!("payload is {}, expected a JSON object", describe(&value)),
        );
    };
    for Field(name, kind, required) in spec {
        match obj.get(*name) {
            None | Some(Value::Null) if *required => {
                return Rejection::field(
                    Reason::MissingField,
                    topic,
                    name,
                    "required field is missing",
                );
            }
            None | Some(Value::Null) => {}
            Some(v) => {
                if let Err((reason, why)) = conforms(*kind, v) {
                    return Rejection::field(reason, topic, name, why);
                }
            }
        }
    }
    Rejection::topic(
        Reason::WrongType,
        topic,
        format_args!("payload does not match the contract: {err}"),
    )
}

fn conforms(kind: Kind, v: &Value) -> Result<(), (Reason, String)> {
    let wrong = |expected: &str| {
        Err((
            Reason::WrongType,
            format!("expected {expected}, got {}", describe(v)),
        ))
    };
    match kind {
        Kind::Int => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => match n.as_i64().map(i32::try_from) {
                Some(Ok(_)) => Ok(()),
                _ => Err((
                    Reason::OutOfRange,
                    format!("{n} does not fit a 32-bit integer"),
                )),
            },
            _ => wrong("an integer"),
        },
        Kind::Num if v.is_number() => Ok(()),
        Kind::Num => wrong("a number"),
        Kind::Bool if v.is_boolean() => Ok(()),
        Kind::Bool => wrong("true or false"),
        Kind::Str if v.is_string() => Ok(()),
        Kind::Str => wrong("a string"),
        Kind::Time => match v {
            Value::Number(n) if n.is_u64() => Ok(()),
            Value::Number(n) if n.is_i64() => {
                Err((Reason::OutOfRange, format!("{n} is before 1970")))
            }
            Value::String(s) if parse_rfc3339_ms(s).is_some() => Ok(()),
            _ => wrong("epoch milliseconds or an RFC 3339 string"),
        },
        Kind::OneOf(names) => match v {
            Value::String(s) if names.contains(&s.as_str()) => Ok(()),
            Value::String(_) => Err((
                Reason::OutOfRange,
                format!("expected one of {}, got {}", names.join(", "), describe(v)),
            )),
            _ => wrong("a string"),
        },
    }
}

/// A short description of a JSON value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 40 => {
            format!("{:?}…", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

#[cfg(test)]
mod tests;
