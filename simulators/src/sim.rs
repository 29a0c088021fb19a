//! The simulator: one step is one second of simulated time.

use crate::district::District;
use crate::rng::Rng;
use serde::Serialize;
use serde_json::json;

/// A message as a device would publish it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Its event time, ms.
    pub ts: u64,
}

/// An injected incident: what happened where, and which rule should find it (ground truth).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub kind: &'static str,
    pub device: String,
    pub start_ms: u64,
    /// When the condition behind it ends; none for instantaneous incidents.
    pub end_ms: Option<u64>,
    /// The rule expected to fire.
    pub rule: &'static str,
    /// The incident rule expected to join its alert with the complaint made beside it
    /// (a rodent's food-safety complaint, a trapped passenger's), when one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<&'static str>,
}

const FLOOR_HEIGHT_M: f64 = 3.0;
/// Seconds between an idle car's frames, as a terminal reports by default.
const IDLE_REPORT_EVERY: u64 = 60;
const GOODS: [(&str, f64); 6] = [
    ("pork", 28.0),
    ("beef", 78.0),
    ("cabbage", 3.5),
    ("rice", 6.2),
    ("eggs", 11.0),
    ("oil", 16.5),
];
const HYGIENE: [&str; 3] = ["no_mask", "no_hat", "phone"];
const CATEGORIES: [&str; 5] = ["price", "quality", "service", "food_safety", "prepaid_card"];
/// The incidents, in the order they are injected.
const INCIDENTS: [&str; 7] = [
    "rodent",
    "total_mismatch",
    "overspeed",
    "trapped",
    "short_weight",
    "complaint_burst",
    "camera_outage",
];

#[derive(Debug, Clone)]
enum Car {
    Idle { floor: i32, door_closes_at: u64 },
    Moving { target: i32, pos: f64, speed: f64 },
    Trapped { pos: f64, until: u64 },
}

#[derive(Debug, Clone)]
struct ElevatorState {
    car: Car,
    last_frame: u64,
    occupied: bool,
    overspeed_until: u64,
}

/// A running simulation of a district.
pub struct Simulator {
    district: District,
    rng: Rng,
    start_ms: u64,
    second: u64,
    elevators: Vec<ElevatorState>,
    camera_silent_until: Vec<u64>,
    incident_every: u64,
    /// Seconds between the frames of an idle car (a moving one reports every second).
    idle_report_every: u64,
    next_incident: usize,
    complaints: u64,
    incidents: Vec<Incident>,
    /// Complaint decisions waiting for their second.
    decisions: std::collections::BTreeMap<u64, Vec<Message>>,
}

impl Simulator {
    /// A simulation of `district` from `seed`, its first second at `start_ms`.
    pub fn new(district: District, seed: u64, start_ms: u64) -> Simulator {
        let mut rng = Rng::new(seed);
        let elevators = district
            .elevators
            .iter()
            .map(|e| ElevatorState {
                car: Car::Idle {
                    floor: 1 + rng.below(e.floors.max(1) as u64) as i32,
                    door_closes_at: 0,
                },
                last_frame: 0,
                occupied: false,
                overspeed_until: 0,
            })
            .collect();
        let cameras = district.cameras.len();
        Simulator {
            district,
            rng,
            start_ms,
            second: 0,
            elevators,
            camera_silent_until: vec![0; cameras],
            incident_every: 0,
            idle_report_every: IDLE_REPORT_EVERY,
            next_incident: 0,
            complaints: 0,
            incidents: Vec::new(),
            decisions: Default::default(),
        }
    }

    /// Injects an incident every `seconds` (0: none), cycling through the kinds.
    pub fn with_incident_every(mut self, seconds: u64) -> Simulator {
        self.incident_every = seconds;
        self
    }

    /// An idle car reports every `seconds` (at least 1) instead of every minute: 1 makes
    /// every elevator send a frame a second, a load of exactly one message per elevator and
    /// second.
    pub fn with_idle_report_every(mut self, seconds: u64) -> Simulator {
        self.idle_report_every = seconds.max(1);
        self
    }

    /// The ground truth of the incidents injected so far (drained).
    pub fn take_incidents(&mut self) -> Vec<Incident> {
        std::mem::take(&mut self.incidents)
    }

    /// The messages of the next second.
    pub fn step(&mut self) -> Vec<Message> {
        let s = self.second;
        let t = self.start_ms + s * 1000;
        let mut out = Vec::new();
        if self.incident_every > 0 && s > 0 && s.is_multiple_of(self.incident_every) {
            self.inject(s, t, &mut out);
        }
        if let Some(due) = self.decisions.remove(&s) {
            out.extend(due);
        }
        for i in 0..self.elevators.len() {
            self.elevator(i, s, t, &mut out);
        }
        for (i, cam) in self.district.cameras.iter().enumerate() {
            if (s == 0 || (s + i as u64).is_multiple_of(30)) && self.camera_silent_until[i] <= s {
                out.push(msg(
                    format!(
                        "kitchen/{}/camera/{}/heartbeat",
                        cam.kitchen_id, cam.camera_id
                    ),
                    json!({"ts": t, "online": true}),
                    t,
                ));
            }
            if self.rng.chance(1.0 / 600.0) {
                let kind = HYGIENE[self.rng.below(3) as usize];
                let confidence = 0.6 + self.rng.unit() * 0.35;
                // A camera in an outage sees nothing either: a detection would show it online.
                if self.camera_silent_until[i] > s {
                    continue;
                }
                out.push(msg(
                    format!("kitchen/{}/camera/{}/detection", cam.kitchen_id, cam.camera_id),
                    json!({"ts": t, "kind": kind, "confidence": round2(confidence), "snapshot": format!("snap/{}/{}/{t}.jpg", cam.kitchen_id, cam.camera_id)}),
                    t,
                ));
            }
        }
        for i in 0..self.district.scales.len() {
            if self.rng.chance(1.0 / 15.0) {
                let (goods, price) = GOODS[self.rng.below(GOODS.len() as u64) as usize];
                let unit_price = round2(price * (0.95 + self.rng.unit() * 0.08));
                let weight = round2(0.2 + self.rng.unit() * 2.8);
                out.push(self.sale(i, t, goods, weight, unit_price, round2(weight * unit_price)));
            }
        }
        if !self.district.merchants.is_empty() && self.rng.chance(1.0 / 40.0) {
            let m = self.rng.below(self.district.merchants.len() as u64) as usize;
            let category = CATEGORIES[self.rng.below(CATEGORIES.len() as u64) as usize];
            out.push(self.complaint(m, t, category));
        }
        self.second += 1;
        out
    }

    fn sale(
        &self,
        i: usize,
        t: u64,
        goods: &str,
        weight: f64,
        unit_price: f64,
        total: f64,
    ) -> Message {
        let sc = &self.district.scales[i];
        msg(
            format!("market/{}/scale/{}/sale", sc.market_id, sc.scale_id),
            json!({"ts": t, "stall_id": sc.stall_id, "goods_code": goods, "weight_kg": weight, "unit_price": unit_price, "total": total}),
            t,
        )
    }

    /// A complaint made at `place` (about no registered merchant), saying `text`.
    fn complaint_at(&mut self, place: (f64, f64), t: u64, category: &str, text: &str) -> Message {
        self.complaints += 1;
        let id = format!("SIM-{}-{}", self.start_ms / 1000, self.complaints);
        // 15 m north of the device: within any incident rule's reach, not on the very spot.
        let lat = place.0 + 15.0 / 111_320.0;
        msg(
            "complaint/new".into(),
            json!({"ts": t, "complaint_id": id, "merchant_name": "现场群众", "category": category,
                   "lat": round5(lat), "lon": round5(place.1), "text": text}),
            t,
        )
    }

    fn complaint(&mut self, merchant: usize, t: u64, category: &str) -> Message {
        self.complaints += 1;
        let id = format!("SIM-{}-{}", self.start_ms / 1000, self.complaints);
        // The office decides most within minutes (accepted 8 in 10, rejected 1 in 10); the
        // rest stay open.
        let roll = self.rng.below(10);
        if roll < 9 {
            let after = 30 + self.rng.below(570);
            let status = if roll < 8 { "accepted" } else { "rejected" };
            let at = self.second + after;
            let ts = self.start_ms + at * 1000;
            self.decisions.entry(at).or_default().push(msg(
                format!("complaint/{id}/status"),
                json!({"ts": ts, "status": status}),
                ts,
            ));
        }
        let m = &self.district.merchants[merchant];
        let mut payload = json!({"ts": t, "complaint_id": id, "merchant_id": m,
               "merchant_name": format!("商户 {m}"), "category": category, "amount": 100 + self.rng.below(2000)});
        if let Some((lat0, lat1, lon0, lon1)) = self.district.area {
            payload["lat"] = json!(round5(lat0 + self.rng.unit() * (lat1 - lat0)));
            payload["lon"] = json!(round5(lon0 + self.rng.unit() * (lon1 - lon0)));
        }
        msg("complaint/new".into(), payload, t)
    }

    fn elevator(&mut self, i: usize, s: u64, t: u64, out: &mut Vec<Message>) {
        let spec = self.district.elevators[i].clone();
        let st = &mut self.elevators[i];
        let (floor, pos, speed, zone, door, direction) = match st.car.clone() {
            Car::Idle {
                floor,
                door_closes_at,
            } => {
                let open = s < door_closes_at;
                if !open && self.rng.chance(1.0 / 45.0) {
                    let target = 1 + self.rng.below(spec.floors.max(2) as u64) as i32;
                    if target != floor {
                        st.occupied = self.rng.chance(0.7);
                        st.car = Car::Moving {
                            target,
                            pos: f64::from(floor - 1) * FLOOR_HEIGHT_M,
                            speed: 0.0,
                        };
                    }
                }
                if !open
                    && s.saturating_sub(st.last_frame) < self.idle_report_every
                    && st.last_frame > 0
                {
                    return;
                }
                (
                    floor,
                    f64::from(floor - 1) * FLOOR_HEIGHT_M,
                    0.0,
                    true,
                    if open { "open" } else { "closed" },
                    "stop",
                )
            }
            Car::Moving { target, pos, speed } => {
                let goal = f64::from(target - 1) * FLOOR_HEIGHT_M;
                let speed = (speed + 1.0).min(spec.rated_speed_mps);
                let up = goal > pos;
                let next = if up {
                    (pos + speed).min(goal)
                } else {
                    (pos - speed).max(goal)
                };
                if (next - goal).abs() < 1e-9 {
                    st.car = Car::Idle {
                        floor: target,
                        door_closes_at: s + 6,
                    };
                    (target, goal, 0.0, true, "open", "stop")
                } else {
                    st.car = Car::Moving {
                        target,
                        pos: next,
                        speed,
                    };
                    let reported = if st.overspeed_until > s {
                        spec.rated_speed_mps * 1.3
                    } else {
                        speed
                    };
                    let floor = 1 + (next / FLOOR_HEIGHT_M).round() as i32;
                    (
                        floor,
                        next,
                        reported,
                        false,
                        "closed",
                        if up { "up" } else { "down" },
                    )
                }
            }
            Car::Trapped { pos, until } => {
                let floor = 1 + (pos / FLOOR_HEIGHT_M).floor() as i32;
                if s >= until {
                    // Rescued: levelled at the floor below, door open.
                    st.car = Car::Idle {
                        floor,
                        door_closes_at: s + 10,
                    };
                    (
                        floor,
                        f64::from(floor - 1) * FLOOR_HEIGHT_M,
                        0.0,
                        true,
                        "open",
                        "stop",
                    )
                } else {
                    (floor, pos, 0.0, false, "closed", "stop")
                }
            }
        };
        st.last_frame = s;
        let vibration = round2(0.03 + self.rng.unit() * 0.12);
        out.push(msg(
            format!("elevator/{}/status", spec.id),
            json!({"ts": t, "floor": floor, "position_m": round2(pos), "in_door_zone": zone, "speed_mps": round2(speed),
                   "direction": direction, "door": door, "occupied": st.occupied, "load_pct": if st.occupied { 40 } else { 0 },
                   "vibration_mps2": vibration, "service_mode": "normal", "safety_circuit_ok": true, "power_ok": true}),
            t,
        ));
    }

    fn inject(&mut self, s: u64, t: u64, out: &mut Vec<Message>) {
        let kind = INCIDENTS[self.next_incident % INCIDENTS.len()];
        self.next_incident += 1;
        let d = &self.district;
        let incident = match kind {
            "rodent" if !d.cameras.is_empty() => {
                // A camera that is not in an outage (one in an outage sees nothing).
                let n = d.cameras.len();
                let first = self.rng.below(n as u64) as usize;
                let i = (0..n)
                    .map(|k| (first + k) % n)
                    .find(|&i| self.camera_silent_until[i] <= s)
                    .unwrap_or(first);
                let c = d.cameras[i].clone();
                out.push(msg(
                    format!("kitchen/{}/camera/{}/detection", c.kitchen_id, c.camera_id),
                    json!({"ts": t, "kind": "rodent", "confidence": 0.93, "snapshot": format!("snap/{}/{}/{t}.jpg", c.kitchen_id, c.camera_id)}),
                    t,
                ));
                // A diner saw it too, and complains from the restaurant.
                let incident = c.place.map(|p| {
                    out.push(self.complaint_at(p, t, "food_safety", "后厨有老鼠"));
                    "incident.kitchen"
                });
                Some(Incident {
                    kind,
                    device: format!("{}/{}", c.kitchen_id, c.camera_id),
                    start_ms: t,
                    end_ms: None,
                    rule: "kitchen.hazard",
                    incident,
                })
            }
            "total_mismatch" if !d.scales.is_empty() => {
                let i = self.rng.below(d.scales.len() as u64) as usize;
                let sc = d.scales[i].clone();
                out.push(self.sale(i, t, "pork", 2.0, 28.0, 58.8));
                Some(Incident {
                    kind,
                    device: format!("{}/{}", sc.market_id, sc.stall_id),
                    start_ms: t,
                    end_ms: None,
                    rule: "market.total_mismatch",
                    incident: None,
                })
            }
            "short_weight" if !d.scales.is_empty() => {
                let sc = d.scales[self.rng.below(d.scales.len() as u64) as usize].clone();
                out.push(msg(
                    format!("market/{}/scale/{}/check", sc.market_id, sc.scale_id),
                    json!({"ts": t, "reference_kg": 2.0, "measured_kg": 1.9}),
                    t,
                ));
                Some(Incident {
                    kind,
                    device: format!("{}/{}", sc.market_id, sc.scale_id),
                    start_ms: t,
                    end_ms: None,
                    rule: "market.scale_short_weight",
                    incident: None,
                })
            }
            "complaint_burst" if !d.merchants.is_empty() => {
                let m = self.rng.below(d.merchants.len() as u64) as usize;
                for _ in 0..5 {
                    let c = self.complaint(m, t, "prepaid_card");
                    out.push(c);
                }
                let device = self.district.merchants[m].clone();
                Some(Incident {
                    kind,
                    device,
                    start_ms: t,
                    end_ms: None,
                    rule: "complaint.group_risk",
                    incident: None,
                })
            }
            "camera_outage" if !d.cameras.is_empty() => {
                let i = self.rng.below(d.cameras.len() as u64) as usize;
                let c = &d.cameras[i];
                // Silent for five minutes from its last heartbeat.
                let last_beat = s.saturating_sub((s + i as u64) % 30);
                self.camera_silent_until[i] = s + 300;
                Some(Incident {
                    kind,
                    device: format!("{}/{}", c.kitchen_id, c.camera_id),
                    start_ms: self.start_ms + last_beat * 1000,
                    end_ms: Some(t + 300_000),
                    rule: if c.school {
                        "kitchen.school_camera_offline"
                    } else {
                        "kitchen.camera_offline"
                    },
                    incident: None,
                })
            }
            "overspeed" | "trapped" if !d.elevators.is_empty() => {
                let candidates: Vec<usize> = (0..self.elevators.len())
                    .filter(|&i| match self.elevators[i].car {
                        // Far enough from its landing to be still moving for the 3 s the
                        // overspeed lasts: a car that stops first would never show it.
                        Car::Moving { target, pos, .. } => {
                            let goal = f64::from(target - 1) * FLOOR_HEIGHT_M;
                            let rated = self.district.elevators[i].rated_speed_mps;
                            kind == "overspeed" && (goal - pos).abs() > 4.0 * rated
                        }
                        Car::Idle { .. } => kind == "trapped",
                        Car::Trapped { .. } => false,
                    })
                    .collect();
                if candidates.is_empty() {
                    None
                } else {
                    let i = candidates[self.rng.below(candidates.len() as u64) as usize];
                    let id = self.district.elevators[i].id.clone();
                    let place = self.district.elevators[i].place;
                    let st = &mut self.elevators[i];
                    if kind == "overspeed" {
                        st.overspeed_until = s + 3;
                        Some(Incident {
                            kind,
                            device: id,
                            start_ms: t,
                            end_ms: Some(t + 3000),
                            rule: "elevator.overspeed",
                            incident: None,
                        })
                    } else {
                        let floor = match st.car {
                            Car::Idle { floor, .. } => floor,
                            _ => 1,
                        };
                        // Stuck 1.2 m above the floor, doors closed, a passenger inside, for 60 s;
                        // someone waiting at the landing calls 12315.
                        st.occupied = true;
                        st.car = Car::Trapped {
                            pos: f64::from(floor - 1) * FLOOR_HEIGHT_M + 1.2,
                            until: s + 60,
                        };
                        let incident = place.map(|p| {
                            out.push(self.complaint_at(p, t, "service", "电梯困人，无人救援"));
                            "incident.elevator"
                        });
                        Some(Incident {
                            kind,
                            device: id,
                            start_ms: t,
                            end_ms: Some(t + 60_000),
                            rule: "elevator.trapped_outside_zone",
                            incident,
                        })
                    }
                }
            }
            _ => None,
        };
        self.incidents.extend(incident);
    }
}

fn msg(topic: String, payload: serde_json::Value, ts: u64) -> Message {
    Message {
        topic: format!("cw/v1/{topic}"),
        payload: payload.to_string().into_bytes(),
        ts,
    }
}

fn round5(x: f64) -> f64 {
    (x * 100_000.0).round() / 100_000.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::district::{Camera, Elevator, Scale};

    fn district() -> District {
        District {
            elevators: (0..20)
                .map(|i| Elevator {
                    id: format!("E{i}"),
                    rated_speed_mps: 1.75,
                    floors: 18,
                    place: (i == 0).then_some((29.55, 106.52)),
                })
                .collect(),
            cameras: (0..6)
                .map(|i| Camera {
                    kitchen_id: format!("K{}", i / 2),
                    camera_id: format!("C{}", i % 2),
                    school: i < 2,
                    place: Some((29.56, 106.53)),
                })
                .collect(),
            scales: (0..10)
                .map(|i| Scale {
                    market_id: "M1".into(),
                    scale_id: format!("S{i}"),
                    stall_id: format!("ST{i}"),
                })
                .collect(),
            merchants: (0..8).map(|i| format!("MER{i}")).collect(),
            area: None,
        }
    }

    #[test]
    fn deterministic_from_the_seed() {
        let run = |seed| {
            let mut s = Simulator::new(district(), seed, 1_795_737_600_000).with_incident_every(10);
            (0..300).flat_map(|_| s.step()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn idle_cars_report_every_second_when_asked_and_every_minute_by_default() {
        let d = District {
            cameras: Vec::new(),
            scales: Vec::new(),
            ..district()
        };
        let elevators = d.elevators.len();
        let frames = |sim: &mut Simulator| {
            sim.step()
                .iter()
                .filter(|m| m.topic.contains("elevator/") && m.topic.ends_with("/status"))
                .count()
        };
        let mut flat = Simulator::new(d.clone(), 1, 1_795_737_600_000).with_idle_report_every(1);
        let mut usual = Simulator::new(d, 1, 1_795_737_600_000);
        let flat_counts: Vec<usize> = (0..120).map(|_| frames(&mut flat)).collect();
        let usual_counts: Vec<usize> = (0..120).map(|_| frames(&mut usual)).collect();
        assert!(elevators > 0);
        assert!(
            flat_counts.iter().all(|n| *n == elevators),
            "{flat_counts:?}"
        );
        assert!(usual_counts[1..].iter().sum::<usize>() < 119 * elevators);
    }

    #[test]
    fn every_message_is_valid_contract_input() {
        let mut s = Simulator::new(district(), 1, 1_795_737_600_000).with_incident_every(10);
        let decoder = model::Decoder::default();
        let mut streams = std::collections::BTreeSet::new();
        for _ in 0..600 {
            for m in s.step() {
                let env = decoder
                    .decode(&m.topic, &m.payload, m.ts)
                    .unwrap_or_else(|r| panic!("{}", r.message));
                streams.insert(env.event.stream());
            }
        }
        assert!(streams.len() >= 6, "{streams:?}");
        let kinds: std::collections::BTreeSet<&str> =
            s.take_incidents().iter().map(|i| i.kind).collect();
        assert_eq!(kinds.len(), INCIDENTS.len(), "{kinds:?}");
    }

    #[test]
    fn a_rodent_and_a_trapped_passenger_are_also_complained_of_beside_their_device() {
        // One elevator, with a place: the trapped passenger is in it.
        let d = District {
            elevators: district().elevators[..1].to_vec(),
            ..district()
        };
        let mut s = Simulator::new(d, 3, 1_795_737_600_000).with_incident_every(1);
        let decoder = model::Decoder::default();
        let mut complaints = Vec::new();
        for _ in 0..30 {
            for m in s.step() {
                if let model::Event::ComplaintNew { complaint } =
                    decoder.decode(&m.topic, &m.payload, m.ts).unwrap().event
                    && complaint.merchant_id.is_none()
                {
                    complaints.push((complaint.category.to_string(), complaint.lat, complaint.lon));
                }
            }
        }
        let truth = s.take_incidents();
        let joined: Vec<(&str, Option<&str>)> = truth
            .iter()
            .filter(|i| i.incident.is_some())
            .map(|i| (i.kind, i.incident))
            .collect();
        assert!(
            joined.contains(&("rodent", Some("incident.kitchen"))),
            "{joined:?}"
        );
        assert!(
            joined.contains(&("trapped", Some("incident.elevator"))),
            "{joined:?}"
        );
        assert!(complaints.contains(&("food_safety".into(), Some(29.56013), Some(106.53))));
        assert!(complaints.contains(&("service".into(), Some(29.55013), Some(106.52))));
    }

    #[test]
    fn complaints_happen_inside_the_area_and_most_are_decided() {
        let area = (29.53, 29.57, 106.51, 106.59);
        let d = District {
            area: Some(area),
            ..district()
        };
        let mut s = Simulator::new(d, 1, 1_795_737_600_000);
        let decoder = model::Decoder::default();
        let (mut new, mut decided) = (0, 0);
        for _ in 0..3_600 {
            for m in s.step() {
                match decoder.decode(&m.topic, &m.payload, m.ts).unwrap().event {
                    model::Event::ComplaintNew { complaint } => {
                        new += 1;
                        let (lat, lon) = (complaint.lat.unwrap(), complaint.lon.unwrap());
                        assert!((area.0..=area.1).contains(&lat), "{lat}");
                        assert!((area.2..=area.3).contains(&lon), "{lon}");
                    }
                    model::Event::ComplaintStatus { .. } => decided += 1,
                    _ => {}
                }
            }
        }
        assert!(new > 20, "{new}");
        assert!(decided > new / 2 && decided <= new, "{decided} of {new}");
    }
}
