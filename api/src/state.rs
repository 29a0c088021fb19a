//! What the handlers read.

use dataflow::{Snapshot, Stats};
use ingest::{DeadLetters, IngestStats};
use std::sync::Arc;
use tokio::sync::watch;

/// Shared, read-only views of the running pipeline.
#[derive(Clone)]
pub struct AppState {
    /// The latest counter snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Rejected messages.
    pub deadletters: Arc<DeadLetters>,
    /// MQTT ingest statistics.
    pub ingest: Arc<IngestStats>,
    /// Dataflow statistics.
    pub dataflow: Arc<Stats>,
    /// InfluxDB sink statistics, when the sink is on.
    pub influx: Option<Arc<influx::SinkStats>>,
    /// The latest set of active conditions.
    pub conditions: watch::Receiver<Arc<dataflow::ConditionsSnapshot>>,
    /// The running rules.
    pub rules: Arc<Vec<rules::Rule>>,
}

/// The receiving half for condition snapshots, and the function the dataflow calls.
pub fn conditions_channel() -> (
    watch::Receiver<Arc<dataflow::ConditionsSnapshot>>,
    dataflow::ConditionsFn,
) {
    let (tx, rx) = watch::channel(Arc::new(dataflow::ConditionsSnapshot::default()));
    let publish: dataflow::ConditionsFn = Arc::new(move |s| {
        tx.send_replace(Arc::new(s));
    });
    (rx, publish)
}

/// The receiving half for snapshots, and the function the dataflow calls with each one.
pub fn snapshot_channel() -> (watch::Receiver<Arc<Snapshot>>, dataflow::SnapshotFn) {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let publish: dataflow::SnapshotFn = Arc::new(move |s: Snapshot| {
        tx.send_replace(Arc::new(s));
    });
    (rx, publish)
}
