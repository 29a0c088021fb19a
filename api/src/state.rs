//! What the handlers read.

pub use control::RuleManager;
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
    /// The running rules, and the way to change them.
    pub rules: Arc<RuleManager>,
    /// Alerts and notifications (with `--rules`).
    pub alerts: Option<Arc<alerts::Alerts>>,
    /// The queue between the dataflow and the alerts' journal (with alerts).
    pub alerts_queue: Option<Arc<alerts::QueueStats>>,
    /// Tokens and roles for writes.
    pub auth: Arc<crate::auth::Auth>,
    /// The reference data in force (the district map draws it), and the way to change it.
    pub reference: Arc<crate::reference::ReferenceManager>,
    /// The last hour of the counter tiles.
    pub history: Arc<crate::tiles::History>,
    /// This process's place in a cluster (none: it runs alone).
    pub cluster: Option<ClusterView>,
    /// The complaints ingest remembers, with their status updates (none: not kept here).
    pub complaints: Option<Arc<alerts::facts::Complaints>>,
    /// The recent residue tests of each stall and goods (none: not kept here).
    pub residue_tests: Option<Arc<alerts::facts::ResidueTests>>,
    /// The input log as recent history (none: the log is off).
    pub input_history: Option<InputHistory>,
}

/// The input log read as recent history (why a rule did not fire), when the log is on.
#[derive(Clone)]
pub struct InputHistory {
    pub dir: std::path::PathBuf,
    /// Decodes the logged messages as ingest did.
    pub decoder: model::Decoder,
    /// How long the log keeps what the alerts accounted for, ms.
    pub keep_ms: u64,
}

/// This process's place in a cluster, for `/readyz` and for sending API calls to process 0.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub processes: usize,
    pub index: usize,
    /// Process 0's HTTP API, where the hosts file gives it.
    pub leader_url: Option<String>,
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
