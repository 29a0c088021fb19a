//! A deterministic synthetic city for load: `n` elevators sending 1 Hz frames, plus a small
//! share of every other stream. Deterministic from its seed and resumable at any offset.

use model::Event;
use model::codes::*;
use model::event::*;

pub use simulators::rng::Rng;

/// Elevator id `i` as registered.
pub fn elevator_id(i: u64) -> String {
    format!("E{i:07}")
}

/// The `k`-th message of the city (from `start_ms`): elevators report at 1 Hz, so message `k`
/// belongs to second `k / per_second`; one in fifty messages is of another stream (see
/// [`other`]).
pub fn message(seed: u64, elevators: u64, start_ms: u64, k: u64) -> Event {
    let mut rng = Rng::new(seed ^ k.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let per_second = elevators.max(1);
    let ts = start_ms + (k / per_second) * 1000 + (k % per_second) * 1000 / per_second;
    if k % 50 == 49 {
        return other(&mut rng, ts);
    }
    let moving = rng.below(4) == 0;
    Event::ElevatorStatus {
        elevator_id: elevator_id(k % per_second).into(),
        frame: ElevatorFrame {
            ts: Some(ts),
            floor: rng.below(30) as i32 + 1,
            position_m: Some(rng.unit() * 90.0),
            in_door_zone: !moving,
            speed_mps: if moving { 1.0 + rng.unit() } else { 0.0 },
            direction: if moving {
                Direction::Up
            } else {
                Direction::Stop
            },
            door: if moving { Door::Closed } else { Door::Open },
            light_curtain_blocked: Some(false),
            occupied: Some(rng.below(2) == 0),
            load_pct: Some(rng.unit() * 80.0),
            vibration_mps2: Some(rng.unit() * 0.2),
            service_mode: ServiceMode::Normal,
            safety_circuit_ok: Some(true),
            power_ok: Some(true),
            alarm_button: None,
        },
    }
}

/// The other streams at rough field proportions: sales and camera traffic dominate; a
/// complaint is one in a thousand (a district gets hundreds a day, not per second).
fn other(rng: &mut Rng, ts: u64) -> Event {
    let pick = match rng.below(1000) {
        0 => 3,
        n => n % 3,
    };
    match pick {
        0 => Event::Sale {
            market_id: format!("M{:02}", rng.below(40)).into(),
            scale_id: format!("S{:04}", rng.below(2400)).into(),
            sale: Sale {
                ts: Some(ts),
                stall_id: format!("ST{:04}", rng.below(2400)).into(),
                goods_code: "pork".into(),
                weight_kg: 0.5 + rng.unit() * 2.0,
                unit_price: 28.0,
                total: 28.0,
                tare_kg: None,
            },
        },
        1 => Event::Heartbeat {
            kitchen_id: format!("K{:04}", rng.below(3000)).into(),
            camera_id: format!("C{}", rng.below(3)).into(),
            heartbeat: Heartbeat {
                ts: Some(ts),
                online: true,
            },
        },
        2 => Event::Detection {
            kitchen_id: format!("K{:04}", rng.below(3000)).into(),
            camera_id: format!("C{}", rng.below(3)).into(),
            detection: Detection {
                ts: Some(ts),
                kind: DetectionKind::NoMask,
                confidence: Some(rng.unit()),
                snapshot: None,
            },
        },
        _ => Event::ComplaintNew {
            complaint: Complaint {
                ts: Some(ts),
                complaint_id: format!("C{}", rng.next_u64() % 1_000_000).into(),
                kind: ComplaintKind::Complaint,
                merchant_id: Some(format!("MER{:04}", rng.below(5000)).into()),
                merchant_name: "商户".into(),
                category: "price".into(),
                lat: Some(29.55),
                lon: Some(106.55),
                amount: Some(100.0),
                text: None,
            },
        },
    }
}

/// The registry lines for `n` elevators (header included), for `--reference`.
pub fn elevators_csv(n: u64) -> String {
    let mut s = String::from(
        "elevator_id,building,district,lat,lon,maintenance_unit,rated_speed_mps,floors\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "{},B{},D{:02},29.55,106.55,MU-{:02},1.75,30\n",
            elevator_id(i),
            i / 4,
            i % 40,
            i % 20
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_resumable() {
        let a: Vec<Event> = (100..110).map(|k| message(7, 1000, 0, k)).collect();
        let b: Vec<Event> = (100..110).map(|k| message(7, 1000, 0, k)).collect();
        assert_eq!(a, b);
        assert_ne!(message(7, 1000, 0, 1), message(8, 1000, 0, 1));
    }
}
