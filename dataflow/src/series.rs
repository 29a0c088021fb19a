//! Time series the dataflow emits when a window closes (for the InfluxDB sink): per-elevator
//! 10 s aggregates, market turnover and price per goods per minute, kitchen detections per
//! kind per minute.

use crate::operators::tumbling::Window;
use model::Id;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Width of the per-elevator windows.
pub const ELEVATOR_WINDOW_MS: u64 = 10_000;
/// Width of the market and kitchen windows.
pub const MINUTE_MS: u64 = 60_000;

/// One closed window.
#[derive(Debug, Clone, PartialEq)]
pub enum Series {
    /// An elevator's 10 s.
    Elevator {
        elevator_id: Id,
        start_ms: u64,
        window: ElevatorWindow,
    },
    /// A goods' minute in a market.
    MarketGoods {
        market_id: Id,
        goods_code: Id,
        start_ms: u64,
        window: MarketWindow,
    },
    /// A detection kind's minute in a kitchen.
    KitchenDetections {
        kitchen_id: Id,
        kind: Id,
        start_ms: u64,
        window: KitchenWindow,
    },
    /// A raw event (only when raw telemetry is on).
    Raw(model::Envelope),
}

/// Receives closed windows, from every worker.
pub type SeriesFn = Arc<dyn Fn(Vec<Series>) + Send + Sync>;

/// What a frame contributes to its elevator's window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameSummary {
    pub speed_mps: f64,
    pub vibration_mps2: Option<f64>,
    pub door_open: bool,
    /// Safety circuit open, mains power lost, or alarm button pressed.
    pub fault: bool,
}

impl FrameSummary {
    /// The summary of a frame.
    pub fn of(f: &model::event::ElevatorFrame) -> FrameSummary {
        FrameSummary {
            speed_mps: f.speed_mps,
            vibration_mps2: f.vibration_mps2,
            door_open: f.door != model::Door::Closed,
            fault: f.safety_circuit_ok == Some(false)
                || f.power_ok == Some(false)
                || f.alarm_button == Some(true),
        }
    }
}

/// "Stopped" means slower than this (DOMAIN.md).
pub const STOPPED_BELOW_MPS: f64 = 0.05;

/// An elevator's aggregates over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ElevatorWindow {
    pub frames: u32,
    /// Starts of movement (stopped → moving).
    pub trips: u32,
    pub max_speed_mps: f64,
    pub vibration_sum: f64,
    pub vibration_frames: u32,
    /// Door openings (closed → not closed).
    pub door_cycles: u32,
    /// Time covered by frames that showed a fault, ms (gaps over 60 s are not counted).
    pub fault_ms: u64,
}

/// An elevator's last frame, carried across windows to see transitions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ElevatorCarry {
    last_ms: Option<u64>,
    moving: bool,
    door_open: bool,
    fault: bool,
}

impl Window for ElevatorWindow {
    type In = FrameSummary;
    type Carry = ElevatorCarry;

    fn add(&mut self, carry: &mut ElevatorCarry, t: u64, f: &FrameSummary) {
        self.frames += 1;
        self.max_speed_mps = self.max_speed_mps.max(f.speed_mps);
        if let Some(v) = f.vibration_mps2 {
            self.vibration_sum += v;
            self.vibration_frames += 1;
        }
        let moving = f.speed_mps >= STOPPED_BELOW_MPS;
        if let Some(last) = carry.last_ms {
            if moving && !carry.moving {
                self.trips += 1;
            }
            if f.door_open && !carry.door_open {
                self.door_cycles += 1;
            }
            if carry.fault {
                self.fault_ms += t.saturating_sub(last).min(60_000);
            }
        }
        *carry = ElevatorCarry {
            last_ms: Some(t),
            moving,
            door_open: f.door_open,
            fault: f.fault,
        };
    }
}

impl ElevatorWindow {
    /// Mean vibration over the frames that reported it.
    pub fn mean_vibration(&self) -> Option<f64> {
        (self.vibration_frames > 0).then(|| self.vibration_sum / self.vibration_frames as f64)
    }
}

/// A goods' sales in a market over one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarketWindow {
    pub turnover_fen: i64,
    pub sales: u32,
    pub unit_price_sum: f64,
}

impl MarketWindow {
    /// Mean unit price of the minute's sales, yuan/kg.
    pub fn mean_unit_price(&self) -> f64 {
        if self.sales == 0 {
            0.0
        } else {
            self.unit_price_sum / self.sales as f64
        }
    }
}

impl Window for MarketWindow {
    /// (total in fen, unit price).
    type In = (i64, f64);
    type Carry = ();

    fn add(&mut self, _: &mut (), _: u64, &(fen, price): &(i64, f64)) {
        self.turnover_fen += fen;
        self.sales += 1;
        self.unit_price_sum += price;
    }
}

/// Detections of one kind in a kitchen over one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitchenWindow {
    pub detections: u32,
    /// Of those, below the alerting confidence (0.6).
    pub low_confidence: u32,
}

/// Detections below this confidence are counted but never alert (DOMAIN.md).
pub const MIN_CONFIDENCE: f64 = 0.6;

impl Window for KitchenWindow {
    /// The detection's confidence, if given.
    type In = Option<f64>;
    type Carry = ();

    fn add(&mut self, _: &mut (), _: u64, confidence: &Option<f64>) {
        self.detections += 1;
        if confidence.is_some_and(|c| c < MIN_CONFIDENCE) {
            self.low_confidence += 1;
        }
    }
}
