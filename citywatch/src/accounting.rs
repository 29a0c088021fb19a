//! Where the input log's replay mark may go: to what the alert journal has passed, and with
//! checkpoints, only to a checkpoint the journal has passed.
//!
//! The replay mark names a checkpoint `C` and the first message entered at `C` or later: a
//! restart loads `C` and feeds the log again from there, so every message is in the state
//! exactly once. A checkpoint is used only once the journal holds every transition before
//! `C` (a condition that began and ended before `C` is in no machine any more).
//!
//! In a cluster every process has its own log and its own part of each checkpoint, and a
//! restart must load the same checkpoint everywhere. So a process moves its mark to `C` only
//! once every process has written `C` (`Wrote`) and every process's mark on disk has reached
//! the checkpoint this one names now (`Marked`), one checkpoint at a time, keeping the mark
//! before as `previous`: the marks on disk are then never more than one checkpoint apart, and
//! the newest checkpoint every process holds is one that each can restart from
//! (docs/cluster.md, "Checkpoints").

use dataflow::checkpoint;
use dataflow::{Signal, Signals};
use ingest::input_log::Ledger;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Where the replay mark may go: the journal's progress and the checkpoints written.
pub struct Accounting {
    ledger: Arc<Ledger>,
    /// The checkpoints' directory (none: checkpoints are off).
    dir: Option<PathBuf>,
    state: Mutex<Progress>,
    cluster: OnceLock<Cluster>,
}

struct Cluster {
    process: usize,
    processes: usize,
    signals: Arc<Signals>,
}

#[derive(Default)]
struct Progress {
    /// Every condition before this is journaled.
    journaled: u64,
    /// Checkpoints on this process's disk not yet behind the mark.
    written: BTreeSet<u64>,
    /// In a cluster: the processes that wrote each checkpoint, and where each one's mark on
    /// disk is.
    wrote: BTreeMap<u64, BTreeSet<usize>>,
    marked: BTreeMap<usize, u64>,
}

impl Accounting {
    pub fn new(ledger: Arc<Ledger>, dir: Option<PathBuf>) -> Accounting {
        Accounting {
            ledger,
            dir,
            state: Mutex::new(Progress::default()),
            cluster: OnceLock::new(),
        }
    }

    /// This process is `process` of `processes`, which talk through `signals`.
    pub fn join_cluster(&self, process: usize, processes: usize, signals: Arc<Signals>) {
        let _ = self.cluster.set(Cluster {
            process,
            processes,
            signals,
        });
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a process of the cluster said.
    pub fn hear(&self, signal: &Signal) {
        match signal {
            Signal::Journaled(t) => return self.journaled(*t),
            Signal::Wrote { process, at } => {
                self.progress()
                    .wrote
                    .entry(*at)
                    .or_default()
                    .insert(*process);
            }
            Signal::Marked { process, at } => {
                let mut p = self.progress();
                let m = p.marked.entry(*process).or_default();
                *m = (*m).max(*at);
            }
            _ => return,
        }
        self.settle();
    }

    /// The alert journal holds every condition before `as_of`.
    pub fn journaled(&self, as_of: u64) {
        {
            let mut p = self.progress();
            p.journaled = p.journaled.max(as_of);
        }
        self.settle();
    }

    /// This process's checkpoint at `at` is on disk.
    pub fn checkpointed(&self, at: u64) {
        self.progress().written.insert(at);
        match self.cluster.get() {
            Some(c) => c.signals.send(Signal::Wrote {
                process: c.process,
                at,
            }),
            None => self.settle(),
        }
    }

    /// At start, once the mark to go by is chosen: says where it is.
    pub fn started(&self) {
        self.tell_marked();
    }

    fn tell_marked(&self) {
        if let Some(c) = self.cluster.get() {
            c.signals.send(Signal::Marked {
                process: c.process,
                at: self.ledger.written().as_of_ms,
            });
        }
    }

    /// Moves the mark as far as it may go, and removes the checkpoints the mark on disk no
    /// longer needs.
    fn settle(&self) {
        let Some(dir) = &self.dir else {
            self.ledger.accounted(self.progress().journaled);
            return;
        };
        let next = match self.cluster.get() {
            None => {
                let p = self.progress();
                p.written.range(..=p.journaled).next_back().copied()
            }
            Some(c) => self.next_in_cluster(c),
        };
        let Some(at) = next else {
            return;
        };
        if self.cluster.get().is_some() {
            self.ledger.accounted_to_checkpoint(at);
            self.tell_marked();
        } else {
            self.ledger.accounted(at);
        }
        let on_disk = self.ledger.written();
        let oldest = on_disk.checkpoints().last().copied().unwrap_or(0);
        {
            let mut p = self.progress();
            p.written.retain(|t| *t >= oldest);
            p.wrote.retain(|t, _| *t >= oldest);
        }
        checkpoint::prune(dir, oldest);
    }

    /// The checkpoint after the one the mark names now, once every process wrote it, the
    /// journal passed it, and every process's mark on disk is at least where this one's is.
    fn next_in_cluster(&self, c: &Cluster) -> Option<u64> {
        let now = self.ledger.written().as_of_ms;
        let p = self.progress();
        if p.journaled <= now {
            return None;
        }
        let all_here = p.marked.len() == c.processes && p.marked.values().all(|m| *m >= now);
        if !all_here {
            return None;
        }
        p.wrote
            .range(now + 1..=p.journaled)
            .find(|(at, by)| by.len() == c.processes && p.written.contains(at))
            .map(|(at, _)| *at)
    }

    /// Writes the mark as it is now (at a clean stop).
    pub fn flush(&self) {
        self.settle();
        self.ledger.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest::input_log::{InputLog, SyncPolicy};

    fn mark_at(a: &Accounting) -> Vec<u64> {
        a.ledger.written().checkpoints()
    }

    #[test]
    fn in_a_cluster_the_mark_moves_one_checkpoint_at_a_time_behind_every_process() {
        let dir = tempfile::tempdir().unwrap();
        let log = InputLog::open(&dir.path().join("input"), SyncPolicy::Os, 16, 0).unwrap();
        let a = Accounting::new(log.log.ledger(), Some(dir.path().join("checkpoint")));
        a.join_cluster(0, 2, Signals::new(Box::new(|_| {})));
        let wrote = |at| {
            a.checkpointed(at);
            for process in [0, 1] {
                a.hear(&Signal::Wrote { process, at });
            }
        };
        wrote(200);
        wrote(400);
        a.hear(&Signal::Journaled(500));
        assert!(
            mark_at(&a).is_empty(),
            "not before every process says where it is"
        );
        a.hear(&Signal::Marked { process: 0, at: 0 });
        a.hear(&Signal::Marked { process: 1, at: 0 });
        assert_eq!(mark_at(&a), [200], "the next checkpoint, not the newest");
        a.hear(&Signal::Marked {
            process: 0,
            at: 200,
        });
        assert_eq!(mark_at(&a), [200], "process 1's mark is still before 200");
        a.hear(&Signal::Marked {
            process: 1,
            at: 200,
        });
        assert_eq!(mark_at(&a), [400, 200], "moved, keeping the one before");
        // A checkpoint one process did not write is no place for a mark.
        a.checkpointed(600);
        a.hear(&Signal::Wrote {
            process: 0,
            at: 600,
        });
        a.hear(&Signal::Journaled(700));
        a.hear(&Signal::Marked {
            process: 0,
            at: 400,
        });
        a.hear(&Signal::Marked {
            process: 1,
            at: 400,
        });
        assert_eq!(mark_at(&a), [400, 200]);
    }
}
