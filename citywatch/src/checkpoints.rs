//! Checkpoints at run time: which one a start restores (in a cluster, the one every process
//! holds), and writing each durably; the replay mark follows them (`crate::accounting`).

use crate::accounting::Accounting;
use crate::settings::Settings;
use dataflow::checkpoint::{self, Checkpoints, Restore, Taken};
use ingest::input_log::{Ledger, Mark};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// What a start feeds again, once it has chosen the replay mark it goes by (none: no input
/// log, everything kept is fed).
pub type ChooseFn = Box<dyn FnOnce(Option<&Mark>) + Send>;

/// Says that the alert journal holds every condition before a time.
pub type JournaledFn = Arc<dyn Fn(u64) + Send + Sync>;

/// What keeps the input durable: the accounting of the input log's replay mark, the signals
/// of a cluster, and the checkpoints when they are on.
#[derive(Default)]
pub struct Durable {
    pub accounting: Option<Arc<Accounting>>,
    /// Where the journal's progress goes.
    pub journaled: Option<JournaledFn>,
    pub signals: Option<Arc<dataflow::Signals>>,
    pub checkpoints: Option<Running>,
}

/// Opens what keeps the input durable for a process with the input log opened at `opened`
/// (its ledger, and the mark on disk), in a cluster `cluster` (this process, how many).
/// `choose` hears the mark a start goes by: at once without checkpoints, otherwise once the
/// checkpoint to restore is chosen (in a cluster, with the others).
pub fn open(
    settings: &Settings,
    cluster: Option<(usize, usize)>,
    opened: Option<(Arc<Ledger>, Mark)>,
    stats: Arc<dataflow::Stats>,
    choose: ChooseFn,
) -> Durable {
    let Some((ledger, mark)) = opened else {
        choose(None);
        return Durable::default();
    };
    let on = settings.checkpoint_every_ms > 0;
    let dir = on.then(|| settings.data_dir.join("checkpoint"));
    let accounting = Arc::new(Accounting::new(ledger.clone(), dir.clone()));
    let signals = cluster.map(|(process, processes)| {
        let heard = accounting.clone();
        let signals = dataflow::Signals::new(Box::new(move |s| heard.hear(&s)));
        accounting.join_cluster(process, processes, signals.clone());
        signals
    });
    // Process 0 alone journals: in a cluster it tells every process how far it is.
    let journaled: JournaledFn = match &signals {
        Some(s) => {
            let s = s.clone();
            Arc::new(move |t| s.send(dataflow::Signal::Journaled(t)))
        }
        None => {
            let a = accounting.clone();
            Arc::new(move |t| a.journaled(t))
        }
    };
    let checkpoints = match dir {
        None => {
            let latest = mark.latest();
            ledger.adopt(latest.clone());
            choose(Some(&latest));
            accounting.started();
            None
        }
        Some(dir) => Some(start(
            settings,
            &dir,
            &accounting,
            ledger,
            mark,
            stats,
            choose,
        )),
    };
    Durable {
        accounting: Some(accounting),
        journaled: Some(journaled),
        signals,
        checkpoints,
    }
}

/// Starts the checkpoints' writer and coordination, restoring one that `mark` names.
fn start(
    settings: &Settings,
    dir: &std::path::Path,
    accounting: &Arc<Accounting>,
    ledger: Arc<Ledger>,
    mark: Mark,
    stats: Arc<dataflow::Stats>,
    choose: ChooseFn,
) -> Running {
    checkpoint::clear_unfinished(dir);
    let restore = Restore {
        candidates: mark.checkpoints(),
        load: Box::new({
            let (dir, accounting) = (dir.to_owned(), accounting.clone());
            move |chosen| {
                let by = chosen
                    .and_then(|c| mark.naming(c))
                    .unwrap_or_else(|| mark.latest());
                ledger.adopt(by.clone());
                choose(Some(&by));
                accounting.started();
                let taken = chosen.and_then(|c| read(&dir, c));
                // Any other is of no use now (a newer one some process did not have).
                checkpoint::prune_except(&dir, chosen);
                taken
            }
        }),
    };
    let (tx, rx) = crossbeam_channel::unbounded::<Taken>();
    let to_writer = Arc::new(Mutex::new(Some(tx)));
    let writer = {
        let (dir, accounting) = (dir.to_owned(), accounting.clone());
        std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || write_each(&dir, &rx, &accounting, &stats))
            .expect("spawning the checkpoint writer")
    };
    let checkpoints = Checkpoints::new(
        settings.workers.max(1),
        settings.tick_ms,
        Duration::from_millis(settings.checkpoint_every_ms),
        restore,
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
    Running {
        checkpoints,
        to_writer,
        writer: Mutex::new(Some(writer)),
    }
}

/// The checkpoint at `at`, if it reads.
fn read(dir: &std::path::Path, at: u64) -> Option<Taken> {
    match checkpoint::read(dir, at) {
        Ok(t) => {
            tracing::info!(
                at = t.at,
                parts = t.parts.len(),
                "checkpoint: restoring the dataflow's state"
            );
            Some(t)
        }
        Err(e) => {
            tracing::warn!(at, error = %e, "checkpoint: none to restore; the rules' state starts afresh");
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
