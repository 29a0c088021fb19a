//! Elevator status frames as a terminal sends them (`cw/v1/elevator/{id}/status`), built
//! field by field for the tests. A field not set is not in the payload, as with a terminal
//! that does not report it: rules read an absent field differently from a false one.

use serde_json::{Map, Value, json};

/// One status frame; by default a stopped car at floor 1, in the door zone, doors closed.
#[derive(Debug, Clone)]
pub struct Frame {
    elevator: String,
    fields: Map<String, Value>,
}

impl Frame {
    pub fn new(elevator: &str, ts: u64) -> Frame {
        let fields = json!({
            "ts": ts, "floor": 1, "in_door_zone": true, "speed_mps": 0.0,
            "direction": "stop", "door": "closed",
        });
        let Value::Object(fields) = fields else {
            unreachable!("a JSON object")
        };
        Frame {
            elevator: elevator.to_owned(),
            fields,
        }
    }

    /// Sets any field of the contract's frame.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Frame {
        self.fields.insert(field.to_owned(), value.into());
        self
    }

    pub fn floor(self, floor: i32) -> Frame {
        self.with("floor", floor)
    }

    pub fn speed(self, mps: f64) -> Frame {
        self.with("speed_mps", mps)
    }

    pub fn in_door_zone(self, zone: bool) -> Frame {
        self.with("in_door_zone", zone)
    }

    pub fn door(self, door: &str) -> Frame {
        self.with("door", door)
    }

    pub fn direction(self, direction: &str) -> Frame {
        self.with("direction", direction)
    }

    pub fn occupied(self, occupied: bool) -> Frame {
        self.with("occupied", occupied)
    }

    pub fn topic(&self) -> String {
        format!("cw/v1/elevator/{}/status", self.elevator)
    }

    pub fn payload(&self) -> Vec<u8> {
        Value::Object(self.fields.clone()).to_string().into_bytes()
    }

    /// As an MQTT message: (topic, payload).
    pub fn message(&self) -> (String, Vec<u8>) {
        (self.topic(), self.payload())
    }

    /// Decoded as citywatch decodes it, received at its own `ts`.
    pub fn envelope(&self) -> model::Envelope {
        let ts = self.fields["ts"].as_u64().unwrap_or_default();
        model::Decoder::default()
            .decode(&self.topic(), &self.payload(), ts)
            .unwrap_or_else(|e| panic!("a test frame that does not decode: {}", e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_decodes_with_exactly_the_fields_set() {
        let e = Frame::new("E1", 5_000).speed(1.5).occupied(true).envelope();
        let model::Event::ElevatorStatus { elevator_id, frame } = e.event else {
            panic!("not a status frame: {:?}", e.event)
        };
        assert_eq!(elevator_id.as_str(), "E1");
        assert_eq!(
            (frame.ts, frame.floor, frame.speed_mps),
            (Some(5_000), 1, 1.5)
        );
        assert_eq!(frame.occupied, Some(true));
        assert_eq!(frame.vibration_mps2, None);
    }
}
