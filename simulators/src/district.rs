//! The devices of a simulated district.

/// An elevator to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Elevator {
    pub id: String,
    pub rated_speed_mps: f64,
    pub floors: i32,
    /// Where it stands (lat, lon), when registered with a place: a trapped passenger's
    /// complaint is made there.
    pub place: Option<(f64, f64)>,
}

/// A kitchen camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    pub kitchen_id: String,
    pub camera_id: String,
    /// In a school canteen: its outage is a different (major) rule.
    pub school: bool,
    /// Where its kitchen is (lat, lon), when known: a food-safety complaint about a rodent
    /// seen there is made there.
    pub place: Option<(f64, f64)>,
}

/// A market scale and the stall it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub market_id: String,
    pub scale_id: String,
    pub stall_id: String,
}

/// Everything the simulator drives; built from the same reference data the pipeline loads, so
/// ids match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct District {
    pub elevators: Vec<Elevator>,
    pub cameras: Vec<Camera>,
    pub scales: Vec<Scale>,
    pub merchants: Vec<String>,
    /// Where complaints happen, when the reference data has jurisdictions: their bounding box
    /// (lat min, lat max, lon min, lon max); complaints then carry a place inside it.
    pub area: Option<(f64, f64, f64, f64)>,
}
