//! The control room's counter tiles: one JSON object per domain from the latest snapshot and
//! the alert journal, and the last hour of each tile's value for its sparkline.
//!
//! The history is sampled every [`SAMPLE_EVERY`] into a ring of [`SAMPLES`] entries, so it
//! stays the same size however long citywatch runs, and a page opened now draws the last hour
//! at once instead of starting empty.

use crate::state::AppState;
use dataflow::counters::VenueCameras;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How often the history takes a sample.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// One hour of samples.
pub const SAMPLES: usize = 360;

/// The tiles now.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Tiles {
    /// Wall clock of the reading, epoch ms.
    pub at_ms: u64,
    /// Event time of the counters, epoch ms.
    pub as_of: u64,
    pub elevators: ElevatorTiles,
    pub markets: MarketTiles,
    pub cameras: CameraTiles,
    pub complaints: ComplaintTiles,
    pub alerts: AlertTiles,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default, utoipa::ToSchema)]
pub struct ElevatorTiles {
    pub registered: i64,
    pub online: i64,
    pub offline: i64,
    /// Elevators with a firing fault alert.
    pub in_fault: u64,
    /// Firing trapped-passenger alerts.
    pub trapped: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default, utoipa::ToSchema)]
pub struct MarketTiles {
    /// Turnover of the last 60 event-time minutes, all markets, yuan.
    pub turnover_hour_yuan: f64,
    /// Sales of the last 60 event-time minutes.
    pub sales_hour: i64,
    /// Pesticide-residue tests since local midnight (event time).
    pub tests_today: u64,
    /// Of those, failed (the tests, not the alerts they raised).
    pub failed_tests_today: u64,
    /// Stalls whose goods are on hold now (a failed test, until a later one passes).
    pub stalls_on_hold: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default, utoipa::ToSchema)]
pub struct CameraTiles {
    pub registered: i64,
    pub online: i64,
    /// Online share of registered cameras, 0..=1 (1 with none registered).
    pub coverage: f64,
    pub by_venue_type: Vec<VenueCameras>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default, utoipa::ToSchema)]
pub struct ComplaintTiles {
    pub received_today: i64,
    pub duplicates_today: i64,
    /// Without a decision yet (last 90 days).
    pub open: i64,
    /// Decided within the limit, of those decided in the last 90 days (按时办结率).
    pub on_time_rate: Option<f64>,
    /// Merchants with a firing group-complaint risk.
    pub group_risk: u64,
    /// Complaints and reports within a working day of a handling limit.
    pub near_deadline: u64,
    /// Complaints and reports past a handling limit.
    pub overdue: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default, utoipa::ToSchema)]
pub struct AlertTiles {
    pub firing: u64,
    pub unacknowledged: u64,
}

/// The last hour of tile values, by series name (`elevators.online`, …), oldest first.
#[derive(Debug, Clone, Serialize, PartialEq, Default, utoipa::ToSchema)]
pub struct HistoryView {
    pub every_ms: u64,
    pub at_ms: Vec<u64>,
    pub series: BTreeMap<&'static str, Vec<f64>>,
}

impl Tiles {
    /// Reads the tiles from the latest snapshot and, with alerts on, the journal.
    pub fn read(s: &AppState, now_ms: u64) -> Result<Tiles, String> {
        let view = s.snapshots.borrow().view();
        let overview = match &s.alerts {
            Some(a) => {
                let today = model::time::day_start(model::time::local_day(now_ms));
                Some(a.journal().overview(today).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        let o = |f: fn(&alerts::Overview) -> u64| overview.as_ref().map_or(0, f);
        let hour_ago = view.as_of.saturating_sub(60 * 60_000);
        let (turnover, sales) = view
            .markets
            .per_minute
            .iter()
            .filter(|m| m.minute >= hour_ago)
            .fold((0.0, 0), |(t, n), m| (t + m.turnover_yuan, n + m.sales));
        let c = &view.cameras;
        Ok(Tiles {
            at_ms: now_ms,
            as_of: view.as_of,
            elevators: ElevatorTiles {
                registered: view.elevators.registered,
                online: view.elevators.online,
                offline: view.elevators.offline,
                in_fault: o(|o| o.elevators_in_fault),
                trapped: o(|o| o.trapped),
            },
            markets: MarketTiles {
                turnover_hour_yuan: (turnover * 100.0).round() / 100.0,
                sales_hour: sales,
                tests_today: view.markets.residue_tests_today.max(0) as u64,
                failed_tests_today: view.markets.residue_failed_today.max(0) as u64,
                stalls_on_hold: o(|o| o.stalls_on_hold),
            },
            cameras: CameraTiles {
                registered: c.registered,
                online: c.online,
                coverage: if c.registered > 0 {
                    c.online as f64 / c.registered as f64
                } else {
                    1.0
                },
                by_venue_type: c.by_venue_type.clone(),
            },
            complaints: ComplaintTiles {
                received_today: view.complaints.received_today,
                duplicates_today: view.complaints.duplicates_today,
                open: view.complaints.open,
                on_time_rate: view.complaints.on_time_rate,
                group_risk: o(|o| o.group_risk_firing),
                near_deadline: o(|o| o.deadline_near),
                overdue: o(|o| o.overdue),
            },
            alerts: AlertTiles {
                firing: o(|o| o.firing),
                unacknowledged: o(|o| o.unacknowledged),
            },
        })
    }

    /// The values a sparkline draws, by series name.
    pub fn series(&self) -> Sample {
        [
            ("elevators.online", self.elevators.online as f64),
            ("elevators.offline", self.elevators.offline as f64),
            ("elevators.in_fault", self.elevators.in_fault as f64),
            ("elevators.trapped", self.elevators.trapped as f64),
            (
                "markets.turnover_hour_yuan",
                self.markets.turnover_hour_yuan,
            ),
            ("markets.sales_hour", self.markets.sales_hour as f64),
            ("markets.tests_today", self.markets.tests_today as f64),
            (
                "markets.failed_tests_today",
                self.markets.failed_tests_today as f64,
            ),
            ("markets.stalls_on_hold", self.markets.stalls_on_hold as f64),
            ("cameras.online", self.cameras.online as f64),
            ("cameras.coverage", self.cameras.coverage),
            (
                "complaints.received_today",
                self.complaints.received_today as f64,
            ),
            (
                "complaints.duplicates_today",
                self.complaints.duplicates_today as f64,
            ),
            ("complaints.group_risk", self.complaints.group_risk as f64),
            ("complaints.open", self.complaints.open as f64),
            (
                "complaints.near_deadline",
                self.complaints.near_deadline as f64,
            ),
            ("complaints.overdue", self.complaints.overdue as f64),
            ("alerts.firing", self.alerts.firing as f64),
            ("alerts.unacknowledged", self.alerts.unacknowledged as f64),
        ]
    }
}

/// One sample: each series' name and value.
pub type Sample = [(&'static str, f64); 19];

/// The ring of samples.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<(u64, Sample)>>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond [`SAMPLES`].
    pub fn push(&self, t: &Tiles) {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((t.at_ms, t.series()));
    }

    /// The samples as columns.
    pub fn view(&self) -> HistoryView {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v = HistoryView {
            every_ms: SAMPLE_EVERY.as_millis() as u64,
            ..Default::default()
        };
        for (at, values) in samples.iter() {
            v.at_ms.push(*at);
            for (name, value) in values {
                v.series.entry(name).or_default().push(*value);
            }
        }
        v
    }
}

/// Samples the tiles every [`SAMPLE_EVERY`], for as long as the runtime runs.
pub async fn sample(s: AppState) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let s2 = s.clone();
        let read = tokio::task::spawn_blocking(move || Tiles::read(&s2, crate::now_ms())).await;
        match read {
            Ok(Ok(t)) => s.history.push(&t),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the tiles"),
            Err(e) => tracing::warn!(error = %e, "tile sampler failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiles(at_ms: u64, online: i64) -> Tiles {
        Tiles {
            at_ms,
            as_of: at_ms,
            elevators: ElevatorTiles {
                online,
                ..Default::default()
            },
            markets: MarketTiles::default(),
            cameras: CameraTiles::default(),
            complaints: ComplaintTiles::default(),
            alerts: AlertTiles::default(),
        }
    }

    #[test]
    fn history_keeps_the_last_hour_as_columns() {
        let h = History::default();
        for i in 0..(SAMPLES as u64 + 5) {
            h.push(&tiles(i * 10_000, i as i64));
        }
        let v = h.view();
        assert_eq!(v.at_ms.len(), SAMPLES);
        assert_eq!(v.at_ms[0], 50_000, "the five oldest were dropped");
        let online = &v.series["elevators.online"];
        assert_eq!(online.len(), SAMPLES);
        assert_eq!(online[0], 5.0);
        assert_eq!(*online.last().unwrap(), (SAMPLES + 4) as f64);
        assert_eq!(v.series.len(), 19);
    }
}
