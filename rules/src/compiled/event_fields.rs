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

/// Every field name an event of some stream has, resolved once when an expression is
/// compiled, so reading a field is a jump, not a string compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldId {
    TimeMs,
    ElevatorId,
    Ts,
    Floor,
    PositionM,
    InDoorZone,
    SpeedMps,
    Direction,
    Door,
    LightCurtainBlocked,
    Occupied,
    LoadPct,
    VibrationMps2,
    ServiceMode,
    SafetyCircuitOk,
    PowerOk,
    AlarmButton,
    Code,
    Detail,
    MarketId,
    ScaleId,
    StallId,
    GoodsCode,
    WeightKg,
    UnitPrice,
    Total,
    TareKg,
    ReferenceKg,
    MeasuredKg,
    InhibitionPct,
    Result,
    KitchenId,
    CameraId,
    Kind,
    Confidence,
    Snapshot,
    Online,
    ComplaintId,
    MerchantId,
    MerchantName,
    Category,
    Lat,
    Lon,
    Amount,
    Text,
    Status,
    Office,
    /// A name no stream has: always absent.
    Unknown,
}

impl FieldId {
    /// The id of `name`.
    pub fn of(name: &str) -> FieldId {
        match name {
            "time_ms" => FieldId::TimeMs,
            "elevator_id" => FieldId::ElevatorId,
            "ts" => FieldId::Ts,
            "floor" => FieldId::Floor,
            "position_m" => FieldId::PositionM,
            "in_door_zone" => FieldId::InDoorZone,
            "speed_mps" => FieldId::SpeedMps,
            "direction" => FieldId::Direction,
            "door" => FieldId::Door,
            "light_curtain_blocked" => FieldId::LightCurtainBlocked,
            "occupied" => FieldId::Occupied,
            "load_pct" => FieldId::LoadPct,
            "vibration_mps2" => FieldId::VibrationMps2,
            "service_mode" => FieldId::ServiceMode,
            "safety_circuit_ok" => FieldId::SafetyCircuitOk,
            "power_ok" => FieldId::PowerOk,
            "alarm_button" => FieldId::AlarmButton,
            "code" => FieldId::Code,
            "detail" => FieldId::Detail,
            "market_id" => FieldId::MarketId,
            "scale_id" => FieldId::ScaleId,
            "stall_id" => FieldId::StallId,
            "goods_code" => FieldId::GoodsCode,
            "weight_kg" => FieldId::WeightKg,
            "unit_price" => FieldId::UnitPrice,
            "total" => FieldId::Total,
            "tare_kg" => FieldId::TareKg,
            "reference_kg" => FieldId::ReferenceKg,
            "measured_kg" => FieldId::MeasuredKg,
            "inhibition_pct" => FieldId::InhibitionPct,
            "result" => FieldId::Result,
            "kitchen_id" => FieldId::KitchenId,
            "camera_id" => FieldId::CameraId,
            "kind" => FieldId::Kind,
            "confidence" => FieldId::Confidence,
            "snapshot" => FieldId::Snapshot,
            "online" => FieldId::Online,
            "complaint_id" => FieldId::ComplaintId,
            "merchant_id" => FieldId::MerchantId,
            "merchant_name" => FieldId::MerchantName,
            "category" => FieldId::Category,
            "lat" => FieldId::Lat,
            "lon" => FieldId::Lon,
            "amount" => FieldId::Amount,
            "text" => FieldId::Text,
            "status" => FieldId::Status,
            "office" => FieldId::Office,
            _ => FieldId::Unknown,
        }
    }
}

/// The field `name` of the event, `None` where the map has no such key.
pub fn event_field<'a>(env: &'a Envelope, name: &str) -> Option<Val<'a>> {
    field(env, FieldId::of(name))
}

/// The field `id` of the event, `None` where the map has no such key.
pub fn field<'a>(env: &'a Envelope, which: FieldId) -> Option<Val<'a>> {
    if which == FieldId::TimeMs {
        return Some(Val::Int(env.time_ms as i64));
    }
    match &env.event {
        Event::ElevatorStatus { elevator_id, frame } => match which {
            FieldId::ElevatorId => id(elevator_id),
            FieldId::Ts => ts(frame.ts),
            FieldId::Floor => Some(Val::Int(frame.floor.into())),
            FieldId::PositionM => frame.position_m.and_then(f),
            FieldId::InDoorZone => b(frame.in_door_zone),
            FieldId::SpeedMps => f(frame.speed_mps),
            FieldId::Direction => s(frame.direction.as_str()),
            FieldId::Door => s(frame.door.as_str()),
            FieldId::LightCurtainBlocked => frame.light_curtain_blocked.and_then(b),
            FieldId::Occupied => frame.occupied.and_then(b),
            FieldId::LoadPct => frame.load_pct.and_then(f),
            FieldId::VibrationMps2 => frame.vibration_mps2.and_then(f),
            FieldId::ServiceMode => s(frame.service_mode.as_str()),
            FieldId::SafetyCircuitOk => frame.safety_circuit_ok.and_then(b),
            FieldId::PowerOk => frame.power_ok.and_then(b),
            FieldId::AlarmButton => frame.alarm_button.and_then(b),
            _ => None,
        },
        Event::ElevatorEvent { elevator_id, event } => match which {
            FieldId::ElevatorId => id(elevator_id),
            FieldId::Ts => ts(event.ts),
            // Numeric codes arrive as names; rules match on the name.
            FieldId::Code => s(event.code.name()),
            FieldId::Floor => event.floor.map(|v| Val::Int(v.into())),
            FieldId::Detail => event.detail.as_deref().and_then(s),
            _ => None,
        },
        Event::Sale {
            market_id,
            scale_id,
            sale,
        } => match which {
            FieldId::MarketId => id(market_id),
            FieldId::ScaleId => id(scale_id),
            FieldId::Ts => ts(sale.ts),
            FieldId::StallId => id(&sale.stall_id),
            FieldId::GoodsCode => id(&sale.goods_code),
            FieldId::WeightKg => f(sale.weight_kg),
            FieldId::UnitPrice => f(sale.unit_price),
            FieldId::Total => f(sale.total),
            FieldId::TareKg => sale.tare_kg.and_then(f),
            _ => None,
        },
        Event::ScaleCheck {
            market_id,
            scale_id,
            check,
        } => match which {
            FieldId::MarketId => id(market_id),
            FieldId::ScaleId => id(scale_id),
            FieldId::Ts => ts(check.ts),
            FieldId::ReferenceKg => f(check.reference_kg),
            FieldId::MeasuredKg => f(check.measured_kg),
            _ => None,
        },
        Event::Residue { market_id, test } => match which {
            FieldId::MarketId => id(market_id),
            FieldId::Ts => ts(test.ts),
            FieldId::StallId => id(&test.stall_id),
            FieldId::GoodsCode => id(&test.goods_code),
            FieldId::InhibitionPct => f(test.inhibition_pct),
            // The outcome, judged from the inhibition when the device sent none.
            FieldId::Result => Some(Val::Str(Cow::Borrowed(test.outcome().as_str()))),
            _ => None,
        },
        Event::Detection {
            kitchen_id,
            camera_id,
            detection,
        } => match which {
            FieldId::KitchenId => id(kitchen_id),
            FieldId::CameraId => id(camera_id),
            FieldId::Ts => ts(detection.ts),
            FieldId::Kind => s(detection.kind.as_str()),
            FieldId::Confidence => detection.confidence.and_then(f),
            FieldId::Snapshot => detection.snapshot.as_deref().and_then(s),
            _ => None,
        },
        Event::Heartbeat {
            kitchen_id,
            camera_id,
            heartbeat,
        } => match which {
            FieldId::KitchenId => id(kitchen_id),
            FieldId::CameraId => id(camera_id),
            FieldId::Ts => ts(heartbeat.ts),
            FieldId::Online => b(heartbeat.online),
            _ => None,
        },
        Event::ComplaintNew { complaint: c } => match which {
            FieldId::Ts => ts(c.ts),
            FieldId::ComplaintId => id(&c.complaint_id),
            FieldId::Kind => s(c.kind.as_str()),
            FieldId::MerchantId => c.merchant_id.as_ref().and_then(id),
            FieldId::MerchantName => s(&c.merchant_name),
            FieldId::Category => id(&c.category),
            FieldId::Lat => c.lat.and_then(f),
            FieldId::Lon => c.lon.and_then(f),
            FieldId::Amount => c.amount.and_then(f),
            FieldId::Text => c.text.as_deref().and_then(s),
            _ => None,
        },
        Event::ComplaintStatus {
            complaint_id,
            update,
        } => match which {
            FieldId::ComplaintId => id(complaint_id),
            FieldId::Ts => ts(update.ts),
            FieldId::Status => s(update.status.as_str()),
            FieldId::Office => update.office.as_ref().and_then(id),
            _ => None,
        },
    }
}
