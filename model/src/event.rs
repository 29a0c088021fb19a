//! One payload struct per contract topic, and the [`Event`] that joins them with the ids
//! taken from the topic.

use crate::Id;
use crate::codes::*;
use serde::{Deserialize, Serialize};

/// `cw/v1/elevator/{elevator_id}/status`: a telemetry frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElevatorFrame {
    /// Event time, epoch ms; `None` when the device sent none (untimed).
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// Current floor, negative for basements.
    pub floor: i32,
    /// Car height above the lowest landing, m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_m: Option<f64>,
    /// Whether the car is inside a landing's unlocking zone.
    pub in_door_zone: bool,
    /// Car speed, m/s, ≥ 0.
    pub speed_mps: f64,
    /// Direction of travel.
    pub direction: Direction,
    /// Car door state.
    pub door: Door,
    /// Infrared light curtain interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub light_curtain_blocked: Option<bool>,
    /// Passenger presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupied: Option<bool>,
    /// Car load, 0–150 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_pct: Option<f64>,
    /// RMS vibration, m/s², ≥ 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vibration_mps2: Option<f64>,
    /// Operating mode, `normal` when absent.
    #[serde(default)]
    pub service_mode: ServiceMode,
    /// Safety circuit closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_circuit_ok: Option<bool>,
    /// Mains power present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_ok: Option<bool>,
    /// In-car alarm button pressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_button: Option<bool>,
}

/// `cw/v1/elevator/{elevator_id}/event`: a fault or event reported by the terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElevatorEvent {
    /// Event time, epoch ms.
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// Fault code, named or numeric (GB/T 24476).
    pub code: FaultCode,
    /// Floor where it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<i32>,
    /// Free text from the terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `cw/v1/market/{market_id}/scale/{scale_id}/sale`: one weighed sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    /// Event time, epoch ms.
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// Stall the scale belongs to.
    pub stall_id: Id,
    /// Commodity code.
    pub goods_code: Id,
    /// Net weight, kg, > 0.
    pub weight_kg: f64,
    /// Yuan per kg, > 0.
    pub unit_price: f64,
    /// Yuan charged, ≥ 0.
    pub total: f64,
    /// Tare deducted, kg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tare_kg: Option<f64>,
}

/// `cw/v1/market/{market_id}/scale/{scale_id}/check`: a metrology spot check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleCheck {
    /// Event time, epoch ms.
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// Certified test weight, kg, > 0.
    pub reference_kg: f64,
    /// What the scale showed, kg, ≥ 0.
    pub measured_kg: f64,
}

/// `cw/v1/market/{market_id}/residue`: a pesticide residue rapid test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidueTest {
    /// Event time, epoch ms.
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// Stall tested.
    pub stall_id: Id,
    /// Commodity tested.
    pub goods_code: Id,
    /// Enzyme inhibition rate, 0–100 %.
    pub inhibition_pct: f64,
    /// Result as reported; see [`ResidueTest::outcome`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResidueResult>,
}

impl ResidueTest {
    /// The reported result, or, when absent, fail at an inhibition of 50 % or more.
    pub fn outcome(&self) -> ResidueResult {
        self.result.unwrap_or(if self.inhibition_pct >= 50.0 {
            ResidueResult::Fail
        } else {
            ResidueResult::Pass
        })
    }
}

/// `cw/v1/kitchen/{kitchen_id}/camera/{camera_id}/detection`: an AI detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Event time, epoch ms.
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// What was seen.
    pub kind: DetectionKind,
    /// Model confidence, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// URL or id of the evidence image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// `cw/v1/kitchen/{kitchen_id}/camera/{camera_id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Event time, epoch ms.
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// `false` announces that the camera goes offline; absent means `true`.
    #[serde(default = "default_true")]
    pub online: bool,
}

const fn default_true() -> bool {
    true
}

/// `cw/v1/complaint/new`: a new complaint or report from the 12315 feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Complaint {
    /// Received time, epoch ms.
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// Unique id; a repeat is a duplicate.
    pub complaint_id: Id,
    /// Complaint (投诉) or report (举报); `complaint` when absent.
    #[serde(default = "default_kind")]
    pub kind: ComplaintKind,
    /// Registered merchant, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<Id>,
    /// Merchant name as given.
    pub merchant_name: String,
    /// Category, e.g. `prepaid_card`.
    pub category: Id,
    /// WGS-84 latitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// WGS-84 longitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// Money involved, yuan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// The complainant's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

const fn default_kind() -> ComplaintKind {
    ComplaintKind::Complaint
}

/// `cw/v1/complaint/{complaint_id}/status`: handling progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintUpdate {
    /// Event time, epoch ms.
    #[serde(
        default,
        with = "crate::time::ts_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
    /// New status.
    pub status: ComplaintStatus,
    /// Office handling it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office: Option<Id>,
}

/// A decoded message: the payload with the ids from its topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A telemetry frame.
    ElevatorStatus {
        elevator_id: Id,
        frame: ElevatorFrame,
    },
    /// A reported fault or event.
    ElevatorEvent {
        elevator_id: Id,
        event: ElevatorEvent,
    },
    /// A weighed sale.
    Sale {
        market_id: Id,
        scale_id: Id,
        sale: Sale,
    },
    /// A metrology spot check.
    ScaleCheck {
        market_id: Id,
        scale_id: Id,
        check: ScaleCheck,
    },
    /// A residue test.
    Residue { market_id: Id, test: ResidueTest },
    /// An AI detection.
    Detection {
        kitchen_id: Id,
        camera_id: Id,
        detection: Detection,
    },
    /// A camera heartbeat.
    Heartbeat {
        kitchen_id: Id,
        camera_id: Id,
        heartbeat: Heartbeat,
    },
    /// A new complaint.
    ComplaintNew { complaint: Complaint },
    /// A complaint's handling progress.
    ComplaintStatus {
        complaint_id: Id,
        update: ComplaintUpdate,
    },
}

/// The kinds of message in the contract, one per topic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    ElevatorStatus,
    ElevatorEvent,
    MarketSale,
    MarketCheck,
    MarketResidue,
    KitchenDetection,
    KitchenHeartbeat,
    ComplaintNew,
    ComplaintStatus,
}

impl Stream {
    /// Every stream, in contract order.
    pub const ALL: [Stream; 9] = [
        Stream::ElevatorStatus,
        Stream::ElevatorEvent,
        Stream::MarketSale,
        Stream::MarketCheck,
        Stream::MarketResidue,
        Stream::KitchenDetection,
        Stream::KitchenHeartbeat,
        Stream::ComplaintNew,
        Stream::ComplaintStatus,
    ];

    /// The name used in metrics labels and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stream::ElevatorStatus => "elevator_status",
            Stream::ElevatorEvent => "elevator_event",
            Stream::MarketSale => "market_sale",
            Stream::MarketCheck => "market_check",
            Stream::MarketResidue => "market_residue",
            Stream::KitchenDetection => "kitchen_detection",
            Stream::KitchenHeartbeat => "kitchen_heartbeat",
            Stream::ComplaintNew => "complaint_new",
            Stream::ComplaintStatus => "complaint_status",
        }
    }
}

impl Event {
    /// Which stream the event belongs to.
    pub fn stream(&self) -> Stream {
        match self {
            Event::ElevatorStatus { .. } => Stream::ElevatorStatus,
            Event::ElevatorEvent { .. } => Stream::ElevatorEvent,
            Event::Sale { .. } => Stream::MarketSale,
            Event::ScaleCheck { .. } => Stream::MarketCheck,
            Event::Residue { .. } => Stream::MarketResidue,
            Event::Detection { .. } => Stream::KitchenDetection,
            Event::Heartbeat { .. } => Stream::KitchenHeartbeat,
            Event::ComplaintNew { .. } => Stream::ComplaintNew,
            Event::ComplaintStatus { .. } => Stream::ComplaintStatus,
        }
    }

    /// The `ts` the device sent, if any.
    pub fn ts(&self) -> Option<u64> {
        match self {
            Event::ElevatorStatus { frame, .. } => frame.ts,
            Event::ElevatorEvent { event, .. } => event.ts,
            Event::Sale { sale, .. } => sale.ts,
            Event::ScaleCheck { check, .. } => check.ts,
            Event::Residue { test, .. } => test.ts,
            Event::Detection { detection, .. } => detection.ts,
            Event::Heartbeat { heartbeat, .. } => heartbeat.ts,
            Event::ComplaintNew { complaint } => complaint.ts,
            Event::ComplaintStatus { update, .. } => update.ts,
        }
    }

    /// The topic (under `prefix`) and JSON payload that carry this event.
    pub fn encode(&self, prefix: &str) -> (String, Vec<u8>) {
        let to_vec = |v: &dyn erased::Json| v.to_json();
        let (topic, payload) = match self {
            Event::ElevatorStatus { elevator_id, frame } => {
                (format!("elevator/{elevator_id}/status"), to_vec(frame))
            }
            Event::ElevatorEvent { elevator_id, event } => {
                (format!("elevator/{elevator_id}/event"), to_vec(event))
            }
            Event::Sale {
                market_id,
                scale_id,
                sale,
            } => (
                format!("market/{market_id}/scale/{scale_id}/sale"),
                to_vec(sale),
            ),
            Event::ScaleCheck {
                market_id,
                scale_id,
                check,
            } => (
                format!("market/{market_id}/scale/{scale_id}/check"),
                to_vec(check),
            ),
            Event::Residue { market_id, test } => {
                (format!("market/{market_id}/residue"), to_vec(test))
            }
            Event::Detection {
                kitchen_id,
                camera_id,
                detection,
            } => (
                format!("kitchen/{kitchen_id}/camera/{camera_id}/detection"),
                to_vec(detection),
            ),
            Event::Heartbeat {
                kitchen_id,
                camera_id,
                heartbeat,
            } => (
                format!("kitchen/{kitchen_id}/camera/{camera_id}/heartbeat"),
                to_vec(heartbeat),
            ),
            Event::ComplaintNew { complaint } => ("complaint/new".to_owned(), to_vec(complaint)),
            Event::ComplaintStatus {
                complaint_id,
                update,
            } => (format!("complaint/{complaint_id}/status"), to_vec(update)),
        };
        (format!("{prefix}{topic}"), payload)
    }
}

mod erased {
    /// Object-safe JSON encoding, so `Event::encode` needs one closure for every payload type.
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            // Serializing these plain structs into a Vec cannot fail.
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}
