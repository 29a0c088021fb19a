//! `event.<name>` read straight from the model's structs: the same values, of the same CEL
//! kinds, as the map [`crate::expr::event_value`] builds through serde (a test compares the
//! two field by field), without building it.

use super::Val;
use model::{Envelope, Event, Id};
use std::borrow::Cow;

fn s(v: &str) -> Option<Val<'_>> {
    Some(Val::Str(Cow::Borrowed(v)))
}

fn id(v: &Id) -> Option<Val<'_>> {
    s(v.as_str())
}

fn f(v: f64) -> Option<Val<'static>> {
    Some(Val::Double(v))
}

fn b(v: bool) -> Option<Val<'static>> {
    Some(Val::Bool(v))
}

fn ts(v: Option<u64>) -> Option<Val<'static>> {
    v.map(Val::UInt)
}

/// The field `name` of the event, `None` where the map has no such key.
pub fn event_field<'a>(env: &'a Envelope, name: &str) -> Option<Val<'a>> {
    if name == "time_ms" {
        return Some(Val::Int(env.time_ms as i64));
    }
    match &env.event {
        Event::ElevatorStatus { elevator_id, frame } => match name {
            "elevator_id" => id(elevator_id),
            "ts" => ts(frame.ts),
            "floor" => Some(Val::Int(frame.floor.into())),
            "position_m" => frame.position_m.and_then(f),
            "in_door_zone" => b(frame.in_door_zone),
            "speed_mps" => f(frame.speed_mps),
            "direction" => s(frame.direction.as_str()),
            "door" => s(frame.door.as_str()),
            "light_curtain_blocked" => frame.light_curtain_blocked.and_then(b),
            "occupied" => frame.occupied.and_then(b),
            "load_pct" => frame.load_pct.and_then(f),
            "vibration_mps2" => frame.vibration_mps2.and_then(f),
            "service_mode" => s(frame.service_mode.as_str()),
            "safety_circuit_ok" => frame.safety_circuit_ok.and_then(b),
            "power_ok" => frame.power_ok.and_then(b),
            "alarm_button" => frame.alarm_button.and_then(b),
            _ => None,
        },
        Event::ElevatorEvent { elevator_id, event } => match name {
            "elevator_id" => id(elevator_id),
            "ts" => ts(event.ts),
            // Numeric codes arrive as names; rules match on the name.
            "code" => s(event.code.name()),
            "floor" => event.floor.map(|v| Val::Int(v.into())),
            "detail" => event.detail.as_deref().and_then(s),
            _ => None,
        },
        Event::Sale {
            market_id,
            scale_id,
            sale,
        } => match name {
            "market_id" => id(market_id),
            "scale_id" => id(scale_id),
            "ts" => ts(sale.ts),
            "stall_id" => id(&sale.stall_id),
            "goods_code" => id(&sale.goods_code),
            "weight_kg" => f(sale.weight_kg),
            "unit_price" => f(sale.unit_price),
            "total" => f(sale.total),
            "tare_kg" => sale.tare_kg.and_then(f),
            _ => None,
        },
        Event::ScaleCheck {
            market_id,
            scale_id,
            check,
        } => match name {
            "market_id" => id(market_id),
            "scale_id" => id(scale_id),
            "ts" => ts(check.ts),
            "reference_kg" => f(check.reference_kg),
            "measured_kg" => f(check.measured_kg),
            _ => None,
        },
        Event::Residue { market_id, test } => match name {
            "market_id" => id(market_id),
            "ts" => ts(test.ts),
            "stall_id" => id(&test.stall_id),
            "goods_code" => id(&test.goods_code),
            "inhibition_pct" => f(test.inhibition_pct),
            // The outcome, judged from the inhibition when the device sent none.
            "result" => Some(Val::Str(Cow::Borrowed(test.outcome().as_str()))),
            _ => None,
        },
        Event::Detection {
            kitchen_id,
            camera_id,
            detection,
        } => match name {
            "kitchen_id" => id(kitchen_id),
            "camera_id" => id(camera_id),
            "ts" => ts(detection.ts),
            "kind" => s(detection.kind.as_str()),
            "confidence" => detection.confidence.and_then(f),
            "snapshot" => detection.snapshot.as_deref().and_then(s),
            _ => None,
        },
        Event::Heartbeat {
            kitchen_id,
            camera_id,
            heartbeat,
        } => match name {
            "kitchen_id" => id(kitchen_id),
            "camera_id" => id(camera_id),
            "ts" => ts(heartbeat.ts),
            "online" => b(heartbeat.online),
            _ => None,
        },
        Event::ComplaintNew { complaint: c } => match name {
            "ts" => ts(c.ts),
            "complaint_id" => id(&c.complaint_id),
            "kind" => s(c.kind.as_str()),
            "merchant_id" => c.merchant_id.as_ref().and_then(id),
            "merchant_name" => s(&c.merchant_name),
            "category" => id(&c.category),
            "lat" => c.lat.and_then(f),
            "lon" => c.lon.and_then(f),
            "amount" => c.amount.and_then(f),
            "text" => c.text.as_deref().and_then(s),
            _ => None,
        },
        Event::ComplaintStatus {
            complaint_id,
            update,
        } => match name {
            "complaint_id" => id(complaint_id),
            "ts" => ts(update.ts),
            "status" => s(update.status.as_str()),
            "office" => update.office.as_ref().and_then(id),
            _ => None,
        },
    }
}
