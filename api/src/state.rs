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
    pub complaints: Option<Arc<ingest::Complaints>>,
    /// The recent residue tests of each stall and goods (none: not kept here).
    pub residue_tests: Option<Arc<ingest::ResidueTests>>,
}

/// This process's place in a cluster, for `/readyz` and for sending API calls to process 0.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub processes: usize,
    pub index: usize,
    /// Process 0's HTTP API, where the hosts file gives it.
    pub leader_url: Option<String>,
}

/// The running rule set: read by the API, replaced through the API or by a reload of the
/// rule files. A replacement reaches the dataflow, which puts it in force from its current
/// frontier.
pub struct RuleManager {
    current: std::sync::RwLock<Arc<Vec<rules::Rule>>>,
    updates: Option<crossbeam_channel::Sender<Arc<Vec<rules::Rule>>>>,
    /// Where changes made through the API are kept for the next start.
    kept: Option<crate::kept_rules::KeptRules>,
    /// Held from reading the rules in force to replacing them, so that two changes at once
    /// cannot lose one.
    editing: std::sync::Mutex<()>,
}

impl RuleManager {
    /// `initial` in force; `updates` goes to the dataflow (none: rules cannot change).
    pub fn new(
        initial: Arc<Vec<rules::Rule>>,
        updates: Option<crossbeam_channel::Sender<Arc<Vec<rules::Rule>>>>,
    ) -> RuleManager {
        RuleManager {
            current: std::sync::RwLock::new(initial),
            updates,
            kept: None,
            editing: std::sync::Mutex::new(()),
        }
    }

    /// Keeps every change made through the API in `kept` (see [`crate::kept_rules`]).
    pub fn keeping(mut self, kept: crate::kept_rules::KeptRules) -> RuleManager {
        self.kept = Some(kept);
        self
    }

    /// The rules in force.
    pub fn current(&self) -> Arc<Vec<rules::Rule>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether rules can be changed at run time (citywatch was started with `--rules`).
    pub fn is_changeable(&self) -> bool {
        self.updates.is_some()
    }

    /// Puts `rules` in force, changed through the API, and keeps them for the next start.
    /// Fails when rules cannot change, or cannot be kept (then nothing changes).
    fn replace(&self, rules: Vec<rules::Rule>) -> Result<(), String> {
        if let Some(kept) = &self.kept {
            kept.keep(&rules)
                .map_err(|e| format!("cannot keep the rule change: {e}"))?;
        }
        self.put_in_force(rules).map_err(str::to_owned)
    }

    /// Changes rule `id` through the API on behalf of `by`: `f` is given the rules in force
    /// and gives the new set and the kind of change (or refuses with its own error); reading
    /// and replacing happen under one lock, so a concurrent change is never lost. The inner
    /// result says whether the change could be put in force (see [`Self::change`]).
    pub fn edit<E>(
        &self,
        id: &str,
        by: &str,
        f: impl FnOnce(&[rules::Rule]) -> Result<(Vec<rules::Rule>, &'static str), E>,
    ) -> Result<Result<&'static str, String>, E> {
        let _one_at_a_time = self
            .editing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, change) = f(&self.current())?;
        Ok(self.change(next, id, by, change).map(|()| change))
    }

    /// Puts `rules` in force, changed through the API by `by` (rule `id`, a change of kind
    /// `change`), keeps them for the next start and records the version in the rule's
    /// history. Fails when rules cannot change, or cannot be kept (then nothing changes).
    fn change(
        &self,
        rules: Vec<rules::Rule>,
        id: &str,
        by: &str,
        change: &str,
    ) -> Result<(), String> {
        let existed = self.current().iter().any(|r| r.id == id);
        let now = rules.iter().find(|r| r.id == id).cloned();
        self.replace(rules)?;
        if let Some(kept) = &self.kept
            && let Err(e) = kept.record(id, by, change, now.as_ref(), existed)
        {
            tracing::error!(rule = id, error = %e, "rule history: the change is in force and kept, its record failed");
        }
        Ok(())
    }

    /// The version of rule `id` among `current` (the rules in force): 0 when it is not among
    /// them, else its latest recorded version (1 when none is recorded).
    pub fn version_of(&self, id: &str, current: &[rules::Rule]) -> u64 {
        if !current.iter().any(|r| r.id == id) {
            return 0;
        }
        self.history(id).last().map_or(1, |v| u64::from(v.version))
    }

    /// Every recorded version of rule `id`, oldest first (none when changes are not kept).
    pub fn history(&self, id: &str) -> Vec<crate::kept_rules::RuleVersion> {
        self.kept
            .as_ref()
            .map(|k| k.history(id))
            .unwrap_or_default()
    }

    /// Puts the rules of the files in force after they changed: they win over earlier API
    /// changes, which are no longer kept either. A rule the files changed is a new version.
    pub fn reload(&self, files: Vec<rules::Rule>) -> Result<(), &'static str> {
        let _one_at_a_time = self
            .editing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(kept) = &self.kept {
            kept.rebase(&files);
            let before = self.current();
            for r in &files {
                let old = before.iter().find(|o| o.id == r.id);
                if old.is_some_and(|o| o.source == r.source && o.enabled == r.enabled) {
                    continue;
                }
                let change = if old.is_some() { "files" } else { "created" };
                if let Err(e) = kept.record(&r.id, "files", change, Some(r), old.is_some()) {
                    tracing::error!(rule = %r.id, error = %e, "rule history: record failed");
                }
            }
        }
        self.put_in_force(files)
    }

    fn put_in_force(&self, rules: Vec<rules::Rule>) -> Result<(), &'static str> {
        let tx = self
            .updates
            .as_ref()
            .ok_or("rules cannot change: citywatch runs with --rules none")?;
        let rules = Arc::new(rules);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tx.send(rules.clone())
            .map_err(|_| "the dataflow has stopped")?;
        *current = rules;
        Ok(())
    }
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
