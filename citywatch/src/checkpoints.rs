//! Checkpoints at run time: which one a start restores, writing each durably, and moving the
//! input log's replay mark only to a checkpoint the alert journal has passed.
//!
//! The replay mark names a checkpoint `C` and the first message entered at `C` or later: a
//! restart loads `C` and feeds the log again from there, so every message is in the state
//! exactly once. A checkpoint is used only once the journal holds every transition before
//! `C` (a condition that began and ended before `C` is in no machine any more).

use crate::settings::Settings;
use dataflow::checkpoint::{self, Checkpoints, Taken};
use ingest::input_log::{Ledger, Mark};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where the replay mark may go: the journal's progress and the checkpoints written.
pub struct Accounting {
    ledger: Arc<Ledger>,
    /// The checkpoints' directory (none: checkpoints are off).
    dir: Option<PathBuf>,
    state: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    /// Every condition before this is journaled.
    journaled: u64,
    /// Checkpoints on disk not yet behind the mark.
    written: BTreeSet<u64>,
}

impl Accounting {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The alert journal holds every condition before `as_of`.
    pub fn journaled(&self, as_of: u64) {
        self.progress().journaled = as_of;
        self.settle();
    }

    fn checkpointed(&self, at: u64) {
        self.progress().written.insert(at);
        self.settle();
    }

    /// Moves the mark to the newest checkpoint the journal has passed (without checkpoints:
    /// to the journal), and removes the checkpoints the mark on disk no longer needs.
    fn settle(&self) {
        let Some(dir) = &self.dir else {
            self.ledger.accounted(self.progress().journaled);
            return;
        };
        let usable = {
            let p = self.progress();
            p.written.range(..=p.journaled).next_back().copied()
        };
        if let Some(at) = usable {
            self.ledger.accounted(at);
            let on_disk = self.ledger.written().as_of_ms;
            self.progress().written.retain(|t| *t >= on_disk);
            checkpoint::prune(dir, on_disk);
        }
    }

    /// Writes the mark as it is now (at a clean stop).
    pub fn flush(&self) {
        self.settle();
        self.ledger.flush();
    }
}

/// The checkpoints of one process: coordination for the workers, and the writer thread.
pub struct Running {
    pub checkpoints: Arc<Checkpoints>,
    /// Closed at the end, so the writer ends once it has written what was taken.
    to_writer: Arc<Mutex<Option<crossbeam_channel::Sender<Taken>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Running {
    /// Waits until every checkpoint taken is written (the workers have stopped).
    pub fn finish(&self) {
        self.to_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = writer {
            let _ = w.join();
        }
    }
}

/// The accounting of the input log's mark, and checkpoints when they are on (they need the
/// input log and a single process). `mark` is the one the log was opened with: it names the
/// checkpoint to restore.
pub fn open(
    settings: &Settings,
    in_cluster: bool,
    ledger: Arc<Ledger>,
    mark: Mark,
    stats: Arc<dataflow::Stats>,
) -> (Arc<Accounting>, Option<Running>) {
    let on = settings.checkpoint_every_ms > 0 && !in_cluster;
    let dir = on.then(|| settings.data_dir.join("checkpoint"));
    let accounting = Arc::new(Accounting {
        ledger,
        dir: dir.clone(),
        state: Mutex::new(Progress::default()),
    });
    let Some(dir) = dir else {
        return (accounting, None);
    };
    checkpoint::clear_unfinished(&dir);
    let restored = restore(&dir, mark);
    let (tx, rx) = crossbeam_channel::unbounded::<Taken>();
    let to_writer = Arc::new(Mutex::new(Some(tx)));
    let writer = {
        let (dir, accounting) = (dir.clone(), accounting.clone());
        std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || write_each(&dir, &rx, &accounting, &stats))
            .expect("spawning the checkpoint writer")
    };
    let checkpoints = Checkpoints::new(
        settings.workers.max(1),
        settings.tick_ms,
        Duration::from_millis(settings.checkpoint_every_ms),
        restored,
        // Taken on a worker: written on the writer thread, so no worker waits on the disk.
        Box::new({
            let to_writer = to_writer.clone();
            move |t| {
                if let Some(tx) = to_writer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                {
                    let _ = tx.send(t);
                }
            }
        }),
    );
    let running = Running {
        checkpoints,
        to_writer,
        writer: Mutex::new(Some(writer)),
    };
    (accounting, Some(running))
}

/// The checkpoint the mark names, if there is one and it reads.
fn restore(dir: &std::path::Path, mark: Mark) -> Option<Taken> {
    if mark.as_of_ms == 0 {
        return None;
    }
    match checkpoint::read(dir, mark.as_of_ms) {
        Ok(t) => {
            tracing::info!(
                at = t.at,
                parts = t.parts.len(),
                "checkpoint: restoring the dataflow's state"
            );
            Some(t)
        }
        Err(e) => {
            tracing::warn!(at = mark.as_of_ms, error = %e, "checkpoint: none to restore; the rules' state starts afresh");
            None
        }
    }
}

fn write_each(
    dir: &std::path::Path,
    rx: &crossbeam_channel::Receiver<Taken>,
    accounting: &Accounting,
    stats: &dataflow::Stats,
) {
    for taken in rx {
        let began = Instant::now();
        match checkpoint::write(dir, &taken) {
            Ok(path) => {
                let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                stats.record_checkpoint(
                    Some((taken.at, bytes)),
                    began.elapsed().as_secs_f64(),
                    taken.held.as_secs_f64(),
                );
                tracing::debug!(at = taken.at, bytes, "checkpoint written");
                accounting.checkpointed(taken.at);
            }
            Err(e) => {
                stats.record_checkpoint(None, began.elapsed().as_secs_f64(), 0.0);
                tracing::error!(at = taken.at, error = %e, "checkpoint: cannot write; the replay mark stays at the previous one");
            }
        }
    }
}
