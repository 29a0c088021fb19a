//! Process-wide dataflow statistics, read by `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Counters and gauges the workers update and the API reads.
#[derive(Debug, Default)]
pub struct Stats {
    events: AtomicU64,
    late: AtomicU64,
    backlog: AtomicU64,
    reordered: AtomicU64,
    untimed: AtomicU64,
    newest: AtomicU64,
    as_of: AtomicU64,
    conditions_as_of: AtomicU64,
    running: std::sync::atomic::AtomicUsize,
    rule_errors: Mutex<std::collections::BTreeMap<String, (u64, String)>>,
    /// Per rule in force, its expressions judged by the interpreter (those > 0).
    interpreted: Mutex<Vec<(String, usize)>>,
    epochs: Mutex<Vec<u64>>,
    checkpoint: Mutex<CheckpointStats>,
}

/// The checkpoints written since start.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CheckpointStats {
    /// Checkpoints written.
    pub written: u64,
    /// Failed writes (the replay mark stays at the previous checkpoint).
    pub failed: u64,
    /// The frontier of the last one written, epoch ms.
    pub at_ms: u64,
    /// Its size, bytes.
    pub bytes: u64,
    /// How long writing and syncing it took, s.
    pub seconds: f64,
    /// How long the workers' input was held while its parts were taken, s.
    pub held_seconds: f64,
}

impl Stats {
    pub(crate) fn set_workers(&self, n: usize) {
        *self.epochs.lock().unwrap_or_else(PoisonError::into_inner) = vec![0; n];
    }

    pub(crate) fn record_batch(&self, events: u64, late: u64, untimed: u64, newest: u64) {
        self.events.fetch_add(events, Ordering::Relaxed);
        self.late.fetch_add(late, Ordering::Relaxed);
        self.untimed.fetch_add(untimed, Ordering::Relaxed);
        self.newest.fetch_max(newest, Ordering::Relaxed);
    }

    /// Counts an event judged at its own time on its group's timeline, though behind the
    /// frontier (a device's late backlog).
    pub(crate) fn record_backlog(&self) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
    }

    /// Events judged on their group's timeline though behind the frontier.
    pub fn backlog_total(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Counts an event judged in its own-time order among later events its group kept.
    pub(crate) fn record_reordered(&self) {
        self.reordered.fetch_add(1, Ordering::Relaxed);
    }

    /// Events judged in their own-time order among later events of their group.
    pub fn reordered_total(&self) -> u64 {
        self.reordered.load(Ordering::Relaxed)
    }

    pub(crate) fn set_epoch(&self, worker: usize, t: u64) {
        if let Some(e) = self
            .epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(worker)
        {
            *e = t;
        }
    }

    pub(crate) fn worker_started(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether every worker has built its dataflow and is taking events.
    pub fn is_running(&self) -> bool {
        let workers = self
            .epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        workers > 0 && self.running.load(Ordering::SeqCst) >= workers
    }

    /// Counts a rule whose expression failed on an event (it is taken as not matching).
    pub fn rule_error(&self, rule: &str, message: &str) {
        let mut m = self
            .rule_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let e = m.entry(rule.to_owned()).or_insert((0, String::new()));
        if e.0 == 0 {
            tracing::warn!(rule, error = message, "rule evaluation failed");
        }
        e.0 += 1;
        e.1 = message.to_owned();
    }

    /// Evaluation failures per rule, with the last message.
    pub fn rule_errors(&self) -> Vec<(String, u64, String)> {
        self.rule_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, (n, m))| (k.clone(), *n, m.clone()))
            .collect()
    }

    /// The rules in force whose expressions (how many) the interpreter judges: they did not
    /// compile. Each rule-set version replaces the list.
    pub fn set_interpreted(&self, rules: Vec<(String, usize)>) {
        *self
            .interpreted
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = rules;
    }

    /// See [`Stats::set_interpreted`].
    pub fn interpreted(&self) -> Vec<(String, usize)> {
        self.interpreted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the `as_of` of the latest published snapshot.
    pub fn set_as_of(&self, t: u64) {
        self.as_of.store(t, Ordering::Relaxed);
    }

    /// Records the `as_of` of the latest set of conditions handed on (journaled, with alerts).
    pub fn set_conditions_as_of(&self, t: u64) {
        self.conditions_as_of.store(t, Ordering::Relaxed);
    }

    /// `as_of` of the latest set of conditions handed on, epoch ms.
    pub fn conditions_as_of_ms(&self) -> u64 {
        self.conditions_as_of.load(Ordering::Relaxed)
    }

    /// Events handed to the dataflow since start.
    pub fn events_total(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Late events since start.
    pub fn late_total(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Untimed events since start.
    pub fn untimed_total(&self) -> u64 {
        self.untimed.load(Ordering::Relaxed)
    }

    /// Newest event time seen, epoch ms.
    pub fn newest_ms(&self) -> u64 {
        self.newest.load(Ordering::Relaxed)
    }

    /// The input frontier: the least input time over all workers, epoch ms.
    pub fn input_frontier_ms(&self) -> u64 {
        self.epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
    }

    /// Records a checkpoint written (or not, when `written` is none): its time and size, how
    /// long writing took and how long the input was held for it, s.
    pub fn record_checkpoint(&self, written: Option<(u64, u64)>, seconds: f64, held: f64) {
        let mut c = self
            .checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match written {
            Some((at_ms, bytes)) => {
                c.written += 1;
                (c.at_ms, c.bytes, c.seconds, c.held_seconds) = (at_ms, bytes, seconds, held);
            }
            None => c.failed += 1,
        }
    }

    /// The checkpoints written since start.
    pub fn checkpoints(&self) -> CheckpointStats {
        *self
            .checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `as_of` of the latest published snapshot, epoch ms.
    pub fn as_of_ms(&self) -> u64 {
        self.as_of.load(Ordering::Relaxed)
    }
}
