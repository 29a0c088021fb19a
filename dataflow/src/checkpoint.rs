//! Checkpoints of the dataflow's state, taken consistently at one frontier.
//!
//! A checkpoint at time `C` holds what every stateful operator knows once it has handled
//! every input before `C` and nothing at or after it: the rules' machines (windows, `prev`,
//! pending `for`, absence clocks), the liveness of elevators and cameras, and the counters fed
//! by the message stream. With the input log's messages entered at `C` or later, it is
//! everything a restart needs (docs/operations.md, "What is durable when").
//!
//! How one cut is made without stopping the workers: worker 0 asks for a checkpoint at a time
//! `C` past every worker's input time; from then on no worker moves its input past `C`
//! ([`Checkpoints::allow`]), so every operator's frontier comes to rest at exactly `C`. Each
//! operator, seeing its frontier at the asked time, hands in its part ([`Part::give`]); when
//! the last part is in, the hold is lifted and the whole is handed to the writer, which
//! writes it durably ([`write`]). State stays bounded: one checkpoint in memory at a time,
//! files older than the one the replay mark names are pruned.

use crate::signals::{Signal, Signals};
use bincode::Options;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The format of a checkpoint file; a file of another format is not loaded. 2: the rules'
/// groups keep their own timeline (clock, machines at the latest event, catch-up) and each
/// firing episode how late it was known. 3: and what a group keeps to reorder after a gap.
/// 4: the number of processes of the cluster that took it. 5: the matched events a firing
/// machine keeps for its explanation.
pub const FORMAT: u32 = 5;
const MAGIC: &[u8; 4] = b"CWCK";
/// Magic, format, CRC-32 of the body.
const HEAD: usize = 12;
const NONE: u64 = u64::MAX;
/// How far (in ticks) process 0 of a cluster lets the others' input run ahead of its own.
const GRANT_AHEAD_TICKS: u64 = 10;

/// The state of every operator at one frontier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Taken {
    /// The frontier: every input before it is in the state, none at or after it.
    pub at: u64,
    /// Timely workers of the process that took it (state is spread by worker).
    pub workers: usize,
    /// Processes of the cluster that took it (1: a single process); state is spread by
    /// worker across them.
    pub processes: usize,
    /// Each operator's part, by (operator, worker), in the operator's own encoding.
    pub parts: BTreeMap<(String, usize), Vec<u8>>,
    /// How long the workers' input was held for it (not written).
    #[serde(skip)]
    pub held: Duration,
}

/// Why a checkpoint file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a checkpoint (bad magic or too short)")]
    NotACheckpoint,
    #[error("checkpoint format {0}, this build reads format {FORMAT}")]
    Format(u32),
    #[error("checksum mismatch: the file is damaged")]
    Checksum,
    #[error("cannot decode the checkpoint: {0}")]
    Decode(String),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
}

/// Encodes `state` as an operator's part.
pub fn encode<T: Serialize>(state: &T) -> Vec<u8> {
    options()
        .serialize(state)
        .expect("in-memory state always serializes")
}

/// Decodes an operator's part; a damaged part cannot allocate more than its own length.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CheckpointError> {
    options()
        .with_limit(bytes.len() as u64 * 4 + 1024)
        .deserialize(bytes)
        .map_err(|e| CheckpointError::Decode(e.to_string()))
}

/// A checkpoint file's bytes.
pub fn to_bytes(taken: &Taken) -> Vec<u8> {
    let body = encode(taken);
    let mut out = Vec::with_capacity(HEAD + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads a checkpoint file's bytes, checking magic, format and checksum first.
pub fn from_bytes(bytes: &[u8]) -> Result<Taken, CheckpointError> {
    if bytes.len() < HEAD || &bytes[..4] != MAGIC {
        return Err(CheckpointError::NotACheckpoint);
    }
    let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    if word(4) != FORMAT {
        return Err(CheckpointError::Format(word(4)));
    }
    let body = &bytes[HEAD..];
    if crc32fast::hash(body) != word(8) {
        return Err(CheckpointError::Checksum);
    }
    decode(body)
}

/// The file of the checkpoint at `at` in `dir`.
pub fn path_of(dir: &Path, at: u64) -> PathBuf {
    dir.join(format!("{at:020}.ckpt"))
}

/// Writes a checkpoint whole or not at all, synced (file and directory).
pub fn write(dir: &Path, taken: &Taken) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = path_of(dir, taken.at);
    let tmp = path.with_extension("ckpt.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, &to_bytes(taken))?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

/// Reads the checkpoint at `at` from `dir`.
pub fn read(dir: &Path, at: u64) -> Result<Taken, CheckpointError> {
    let path = path_of(dir, at);
    let bytes = std::fs::read(&path).map_err(|source| CheckpointError::Io { path, source })?;
    from_bytes(&bytes)
}

/// Removes the checkpoints before `at`: the replay mark no longer names them. (Unfinished
/// writes are left alone: one may be under way; [`clear_unfinished`] removes them at start.)
pub fn prune(dir: &Path, at: u64) {
    remove_where(dir, |name| time_of(name).is_some_and(|t| t < at));
}

/// The time of a checkpoint file by its name (none: not a checkpoint file).
fn time_of(name: &str) -> Option<u64> {
    name.strip_suffix(".ckpt")?.parse().ok()
}

/// Removes every checkpoint but the one at `keep` (at a start: the one restored).
pub fn prune_except(dir: &Path, keep: Option<u64>) {
    remove_where(dir, |name| time_of(name).is_some_and(|t| Some(t) != keep));
}

/// Removes what a write cut short by a crash left behind (before any write starts).
pub fn clear_unfinished(dir: &Path) {
    remove_where(dir, |name| name.ends_with(".ckpt.tmp"));
}

fn remove_where(dir: &Path, doomed: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if doomed(&name.to_string_lossy()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Receives each complete checkpoint (to write it).
pub type TakenFn = Box<dyn Fn(Taken) + Send + Sync>;

/// What a start may restore: the checkpoints this process holds that its replay mark names,
/// newest first, and how to load the one chosen (with the cluster, in a cluster: the newest
/// every process holds; none when there is none, and the state starts afresh).
pub struct Restore {
    pub candidates: Vec<u64>,
    pub load: LoadFn,
}

/// Loads the checkpoint chosen at start (none: none is restored).
pub type LoadFn = Box<dyn FnOnce(Option<u64>) -> Option<Taken> + Send>;

impl Restore {
    /// Restores `taken`, if any.
    pub fn taken(taken: Option<Taken>) -> Restore {
        Restore {
            candidates: taken.iter().map(|t| t.at).collect(),
            load: Box::new(move |_| taken),
        }
    }
}

/// The coordination of checkpoints among one process's workers (and, in a cluster, with the
/// other processes through [`Signals`]), and the state restored.
pub struct Checkpoints {
    workers: usize,
    tick_ms: u64,
    every: Duration,
    candidates: Vec<u64>,
    load: Mutex<Option<LoadFn>>,
    restored: OnceLock<Option<Taken>>,
    /// The time asked for, [`NONE`] when none: read by every operator at every activation.
    asked: AtomicU64,
    coord: Mutex<Coord>,
    on_taken: TakenFn,
    cluster: OnceLock<Cluster>,
}

/// This process's place in a cluster, for checkpoints (docs/cluster.md, "Checkpoints").
struct Cluster {
    process: usize,
    processes: usize,
    signals: Arc<Signals>,
    /// Process 0: the furthest time it let the others' input go; the others: the furthest
    /// time they may move their input to.
    granted: AtomicU64,
}

#[derive(Debug)]
struct Coord {
    epochs: Vec<u64>,
    expected: BTreeSet<(String, usize)>,
    ready: usize,
    parts: BTreeMap<(String, usize), Vec<u8>>,
    last: Instant,
    /// When the one being taken was asked for.
    asked_when: Instant,
    /// The last checkpoint complete, and whether a stop asked for it.
    taken: Option<u64>,
    stopping: bool,
    /// The checkpoint whose parts this process has all given.
    given: Option<u64>,
    /// In a cluster, process 0: which processes took each checkpoint asked for.
    took: BTreeMap<u64, BTreeSet<usize>>,
    /// In a cluster, at start: the checkpoints each process could restore.
    holds: BTreeMap<usize, Vec<u64>>,
}

impl Checkpoints {
    /// Checkpoints every `every` among `workers` workers, restoring one of `restore` (a
    /// checkpoint taken with another number of workers or processes is dropped with a
    /// warning: its state is spread by worker). Each complete checkpoint goes to `on_taken`.
    pub fn new(
        workers: usize,
        tick_ms: u64,
        every: Duration,
        restore: Restore,
        on_taken: TakenFn,
    ) -> Arc<Checkpoints> {
        Arc::new(Checkpoints {
            workers,
            tick_ms: tick_ms.max(1),
            every,
            candidates: restore.candidates,
            load: Mutex::new(Some(restore.load)),
            restored: OnceLock::new(),
            cluster: OnceLock::new(),
            asked: AtomicU64::new(NONE),
            coord: Mutex::new(Coord {
                epochs: vec![0; workers],
                expected: BTreeSet::new(),
                ready: 0,
                parts: BTreeMap::new(),
                last: Instant::now(),
                asked_when: Instant::now(),
                taken: None,
                stopping: false,
                given: None,
                took: BTreeMap::new(),
                holds: BTreeMap::new(),
            }),
            on_taken,
        })
    }

    /// This process is `process` of a cluster of `processes`, which talk through `signals`.
    pub fn join_cluster(&self, process: usize, processes: usize, signals: Arc<Signals>) {
        let _ = self.cluster.set(Cluster {
            process,
            processes,
            signals,
            granted: AtomicU64::new(0),
        });
    }

    fn processes(&self) -> usize {
        self.cluster.get().map_or(1, |c| c.processes)
    }

    /// Chooses the checkpoint to restore and loads it (once per process; every worker calls
    /// this before building its dataflow). Alone, the newest this process holds; in a cluster,
    /// the newest every process holds: `holds` has what each said at start.
    pub fn restore(&self, holds: &BTreeMap<usize, Vec<u64>>) {
        self.restored.get_or_init(|| {
            let chosen = match self.cluster.get() {
                None => self.candidates.first().copied(),
                Some(_) => newest_common(holds),
            };
            let load = self
                .load
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let taken = load.and_then(|l| l(chosen));
            let taken = taken.filter(|t| self.fits(t));
            if let (Some(c), Some(t)) = (self.cluster.get(), &taken) {
                // The others may come as far as the restored time: every input starts there.
                c.granted.store(t.at, Ordering::SeqCst);
            }
            taken
        });
    }

    /// Whether `t` was taken by a cluster of this shape (state is spread by worker).
    fn fits(&self, t: &Taken) -> bool {
        let same = t.workers == self.workers && t.processes == self.processes();
        if !same {
            tracing::warn!(
                taken_with_workers = t.workers,
                taken_with_processes = t.processes,
                workers = self.workers,
                processes = self.processes(),
                "checkpoint: taken with another number of workers or processes; the state starts afresh"
            );
        }
        same
    }

    fn coord(&self) -> std::sync::MutexGuard<'_, Coord> {
        self.coord.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The frontier of the restored checkpoint: every worker's input starts there.
    pub fn restored_at(&self) -> Option<u64> {
        self.restored_taken().map(|t| t.at)
    }

    fn restored_taken(&self) -> Option<&Taken> {
        self.restored.get().and_then(Option::as_ref)
    }

    /// A worker has built its dataflow (every part it will give is expected).
    pub fn ready(&self) {
        self.coord().ready += 1;
    }

    /// Where worker `worker` may move its input, wanting `t`: not past a time asked for, nor,
    /// in a process of a cluster other than 0, past what process 0 granted.
    pub fn allow(&self, worker: usize, t: u64) -> u64 {
        let mut c = self.coord();
        let asked = self.asked.load(Ordering::SeqCst);
        let t = if asked == NONE { t } else { t.min(asked) };
        let t = match self.cluster.get() {
            Some(cl) if cl.process > 0 => t.min(cl.granted.load(Ordering::SeqCst)),
            _ => t,
        };
        if let Some(e) = c.epochs.get_mut(worker) {
            *e = (*e).max(t);
        }
        t
    }

    /// Asks for a checkpoint when one is due (worker 0 calls this as it goes).
    pub fn maybe_ask(&self) {
        let mut c = self.coord();
        if c.stopping
            || self.asked.load(Ordering::SeqCst) != NONE
            || c.ready < self.workers
            || c.last.elapsed() < self.every
            // Before the input has moved there is nothing to keep, and a checkpoint asked at
            // the first tick would hold every worker's input there (start-up, where absence
            // clocks begin, would be that tick, not the first frontier).
            || c.epochs.iter().all(|e| *e == 0)
        {
            return;
        }
        // In a cluster, past every time granted to the others too, and asked of them before
        // any grant reaches it.
        let granted = self.cluster.get().map_or(0, |cl| {
            let g = cl.granted.load(Ordering::SeqCst) + self.tick_ms;
            g - g % self.tick_ms
        });
        let at = self.past_every_epoch(&c, granted);
        c.parts.clear();
        c.asked_when = Instant::now();
        self.asked.store(at, Ordering::SeqCst);
        if let Some(cl) = self.cluster.get() {
            cl.signals.send(Signal::Ask(at));
        }
    }

    /// Process 0 of a cluster lets the others' input follow its own (one second ahead at
    /// most), and no further than a checkpoint asked for until every process has taken it.
    /// Worker 0 calls this as it goes.
    pub fn grant(&self) {
        let Some(cl) = self.cluster.get().filter(|cl| cl.process == 0) else {
            return;
        };
        let ahead = {
            let c = self.coord();
            c.epochs.iter().copied().max().unwrap_or(0)
        };
        if ahead == 0 {
            return;
        }
        let asked = self.asked.load(Ordering::SeqCst);
        let g = (ahead + GRANT_AHEAD_TICKS * self.tick_ms).min(asked);
        if g > cl.granted.load(Ordering::SeqCst) {
            cl.granted.store(g, Ordering::SeqCst);
            cl.signals.send(Signal::Grant(g));
        }
    }

    /// What another process (or this one) said, as far as checkpoints are concerned.
    pub fn hear(&self, signal: &Signal) {
        let Some(cl) = self.cluster.get() else {
            return;
        };
        match signal {
            Signal::Ask(at) if cl.process > 0 => {
                let mut c = self.coord();
                c.parts.clear();
                c.asked_when = Instant::now();
                self.asked.store(*at, Ordering::SeqCst);
            }
            Signal::Grant(t) if cl.process > 0 => {
                cl.granted.fetch_max(*t, Ordering::SeqCst);
            }
            Signal::Took { process, at } if cl.process == 0 => {
                let mut c = self.coord();
                let all = {
                    let took = c.took.entry(*at).or_default();
                    took.insert(*process);
                    took.len() == cl.processes
                };
                if all && self.asked.load(Ordering::SeqCst) == *at {
                    c.took.retain(|t, _| t > at);
                    c.last = Instant::now();
                    c.taken = Some(*at);
                    self.asked.store(NONE, Ordering::SeqCst);
                }
            }
            Signal::Holds { process, at } => {
                self.coord().holds.insert(*process, at.clone());
            }
            _ => {}
        }
    }

    /// In a cluster: what every process said it holds at start, once all have.
    pub fn holds(&self) -> Option<BTreeMap<usize, Vec<u64>>> {
        let c = self.coord();
        (c.holds.len() >= self.processes()).then(|| c.holds.clone())
    }

    /// In a cluster: says what this process holds (its first worker, at start).
    pub fn tell_holds(&self) {
        if let Some(cl) = self.cluster.get() {
            cl.signals.send(Signal::Holds {
                process: cl.process,
                at: self.candidates.clone(),
            });
        }
    }

    /// Asks for the last checkpoint before a stop, at `end` or later; the time asked. A
    /// periodic one still being taken becomes this one (moved to `end` if that is later: no
    /// operator is past the time it held, so each will see its frontier arrive at the new one).
    pub fn ask_final(&self, end: u64) -> u64 {
        if self.cluster.get().is_some() {
            // The processes of a cluster stop each on its own: the restart goes on from the
            // last periodic checkpoint and the input logs after it.
            return end;
        }
        let mut c = self.coord();
        let asked = self.asked.load(Ordering::SeqCst);
        if c.stopping {
            return if asked == NONE {
                c.taken.unwrap_or(end)
            } else {
                asked
            };
        }
        c.stopping = true;
        let at = self.past_every_epoch(&c, end);
        if asked != NONE && at <= asked {
            return asked;
        }
        c.parts.clear();
        c.asked_when = Instant::now();
        self.asked.store(at, Ordering::SeqCst);
        at
    }

    /// A tick past every worker's input time, and at least `floor`: no operator has reached
    /// it yet, so each will see its frontier arrive there.
    fn past_every_epoch(&self, c: &Coord, floor: u64) -> u64 {
        let t = c.epochs.iter().copied().max().unwrap_or(0) + self.tick_ms;
        (t - t % self.tick_ms).max(floor)
    }

    /// Whether the checkpoint at `at` (or a later one) is complete.
    pub fn is_taken(&self, at: u64) -> bool {
        self.coord().taken.is_some_and(|t| t >= at)
    }

    fn deposit(&self, name: &str, worker: usize, at: u64, bytes: Vec<u8>) {
        let taken = {
            let mut c = self.coord();
            if self.asked.load(Ordering::SeqCst) != at || c.given == Some(at) {
                return;
            }
            c.parts.insert((name.to_owned(), worker), bytes);
            // Every worker must have built its dataflow (and so expect its parts) first.
            if c.parts.len() < c.expected.len() || c.ready < self.workers {
                return;
            }
            c.given = Some(at);
            match self.cluster.get() {
                // Process 0 holds its input until every process has taken its parts.
                Some(cl) => cl.signals.send(Signal::Took {
                    process: cl.process,
                    at,
                }),
                None => c.taken = Some(at),
            }
            if self.cluster.get().is_none_or(|cl| cl.process > 0) {
                c.last = Instant::now();
                self.asked.store(NONE, Ordering::SeqCst);
            }
            Taken {
                at,
                workers: self.workers,
                processes: self.processes(),
                parts: std::mem::take(&mut c.parts),
                held: c.asked_when.elapsed(),
            }
        };
        (self.on_taken)(taken);
    }
}

/// The newest checkpoint every process holds.
fn newest_common(holds: &BTreeMap<usize, Vec<u64>>) -> Option<u64> {
    let mut each = holds.values();
    let first: BTreeSet<u64> = each.next()?.iter().copied().collect();
    each.fold(first, |common, h| {
        common.into_iter().filter(|t| h.contains(t)).collect()
    })
    .last()
    .copied()
}

/// One operator instance's share of the checkpoints: it gives its state when asked, and
/// finds what a restart restored for it.
#[derive(Clone)]
pub struct Part {
    ck: Arc<Checkpoints>,
    name: &'static str,
    worker: usize,
}

impl Part {
    /// The part of operator `name` on `worker` (none without checkpoints).
    pub fn new(ck: Option<&Arc<Checkpoints>>, name: &'static str, worker: usize) -> Option<Part> {
        let ck = ck?.clone();
        ck.coord().expected.insert((name.to_owned(), worker));
        Some(Part { ck, name, worker })
    }

    /// Whether a checkpoint is asked for at exactly `frontier` and this part is not in yet.
    pub fn due(&self, frontier: u64) -> bool {
        if self.ck.asked.load(Ordering::SeqCst) != frontier {
            return false;
        }
        let c = self.ck.coord();
        c.given != Some(frontier) && !c.parts.contains_key(&(self.name.to_owned(), self.worker))
    }

    /// Hands in this part's state at `at`.
    pub fn give<T: Serialize>(&self, at: u64, state: &T) {
        self.ck.deposit(self.name, self.worker, at, encode(state));
    }

    /// What the restored checkpoint holds for this part, and its time; none (with an error
    /// logged) when it does not decode.
    pub fn restored<T: DeserializeOwned>(&self) -> Option<(u64, T)> {
        let taken = self.ck.restored_taken()?;
        let bytes = taken.parts.get(&(self.name.to_owned(), self.worker))?;
        match decode(bytes) {
            Ok(state) => Some((taken.at, state)),
            Err(e) => {
                tracing::error!(part = self.name, worker = self.worker, error = %e, "checkpoint: a part does not decode; it starts afresh");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn taken() -> Taken {
        let mut parts = BTreeMap::new();
        parts.insert(("conditions".to_owned(), 0), encode(&vec![1u64, 2, 3]));
        Taken {
            at: 12_300,
            workers: 1,
            processes: 1,
            parts,
            held: Duration::ZERO,
        }
    }

    #[test]
    fn a_file_reads_back_and_damage_is_found() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &taken()).unwrap();
        assert_eq!(read(dir.path(), 12_300).unwrap(), taken());
        let mut bytes = std::fs::read(path_of(dir.path(), 12_300)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(from_bytes(&bytes), Err(CheckpointError::Checksum)));
        bytes[4] = 9;
        assert!(matches!(
            from_bytes(&bytes),
            Err(CheckpointError::Format(9))
        ));
        assert!(matches!(
            from_bytes(b"CWC"),
            Err(CheckpointError::NotACheckpoint)
        ));
        write(
            dir.path(),
            &Taken {
                at: 20_000,
                ..taken()
            },
        )
        .unwrap();
        prune(dir.path(), 20_000);
        assert!(read(dir.path(), 12_300).is_err());
        assert!(read(dir.path(), 20_000).is_ok());
    }

    #[test]
    fn a_cluster_restores_the_newest_checkpoint_every_process_holds() {
        let holds = |h: &[(usize, &[u64])]| -> BTreeMap<usize, Vec<u64>> {
            h.iter().map(|(p, at)| (*p, at.to_vec())).collect()
        };
        // Process 1 wrote its mark for 400 before the crash, process 0 had not yet.
        assert_eq!(
            newest_common(&holds(&[(0, &[200, 100]), (1, &[400, 200])])),
            Some(200)
        );
        assert_eq!(
            newest_common(&holds(&[(0, &[400, 200]), (1, &[400, 200])])),
            Some(400)
        );
        assert_eq!(newest_common(&holds(&[(0, &[400]), (1, &[600])])), None);
        assert_eq!(newest_common(&holds(&[(0, &[]), (1, &[600])])), None);
    }

    #[test]
    fn in_a_cluster_the_others_wait_for_grants_and_process_0_for_every_process() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let signals = Signals::new(Box::new(|_| {}));
        let ck = Checkpoints::new(
            1,
            100,
            Duration::ZERO,
            Restore::taken(None),
            Box::new(move |t| tx.lock().unwrap().send(t).unwrap()),
        );
        ck.join_cluster(1, 2, signals);
        ck.restore(&BTreeMap::new());
        let part = Part::new(Some(&ck), "op", 1).unwrap();
        ck.ready();
        assert_eq!(ck.allow(0, 1_000), 0, "nothing granted yet");
        ck.hear(&Signal::Grant(700));
        assert_eq!(ck.allow(0, 1_000), 700);
        ck.hear(&Signal::Ask(800));
        ck.hear(&Signal::Grant(800));
        assert_eq!(ck.allow(0, 1_000), 800, "held at the time asked");
        assert!(part.due(800));
        part.give(800, &1u8);
        assert!(!part.due(800), "given once");
        let t = rx.try_recv().unwrap();
        assert_eq!((t.at, t.processes), (800, 2));
        assert_eq!(ck.allow(0, 1_000), 800, "the grant still holds it");
        ck.hear(&Signal::Grant(1_000));
        assert_eq!(ck.allow(0, 1_000), 1_000);

        // Process 0 asks past what it granted, and holds its own input there until every
        // process has taken its parts.
        let lead = Checkpoints::new(
            1,
            100,
            Duration::ZERO,
            Restore::taken(None),
            Box::new(|_| {}),
        );
        lead.join_cluster(0, 2, Signals::new(Box::new(|_| {})));
        lead.restore(&BTreeMap::new());
        let part = Part::new(Some(&lead), "op", 0).unwrap();
        lead.ready();
        assert_eq!(lead.allow(0, 1_000), 1_000);
        lead.grant();
        lead.maybe_ask();
        let asked = lead.allow(0, 5_000);
        assert_eq!(
            asked, 2_100,
            "past its input and its grant (1 000 + 10 ticks)"
        );
        part.give(asked, &1u8);
        assert_eq!(
            lead.allow(0, 5_000),
            asked,
            "held until every process took it"
        );
        lead.hear(&Signal::Took {
            process: 0,
            at: asked,
        });
        assert_eq!(lead.allow(0, 5_000), asked);
        lead.hear(&Signal::Took {
            process: 1,
            at: asked,
        });
        assert_eq!(lead.allow(0, 5_000), 5_000);
        assert!(lead.is_taken(asked));
    }

    #[test]
    fn the_hold_is_past_every_worker_and_lifts_when_every_part_is_in() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let ck = Checkpoints::new(
            2,
            100,
            Duration::ZERO,
            Restore::taken(None),
            Box::new(move |t| tx.lock().unwrap().send(t).unwrap()),
        );
        let (a, b) = (
            Part::new(Some(&ck), "op", 0).unwrap(),
            Part::new(Some(&ck), "op", 1).unwrap(),
        );
        assert_eq!(ck.allow(0, 1_000), 1_000);
        assert_eq!(ck.allow(1, 1_200), 1_200);
        ck.maybe_ask();
        assert!(!a.due(1_300), "not before every worker is ready");
        ck.ready();
        ck.ready();
        ck.maybe_ask();
        assert_eq!(ck.allow(0, 5_000), 1_300, "held at the time asked");
        assert!(a.due(1_300) && !a.due(1_200));
        a.give(1_300, &7u32);
        assert!(!a.due(1_300) && b.due(1_300));
        assert!(!ck.is_taken(1_300));
        b.give(1_300, &8u32);
        assert!(ck.is_taken(1_300));
        assert_eq!(ck.allow(0, 5_000), 5_000, "the hold is lifted");
        let t = rx.try_recv().unwrap();
        assert_eq!((t.at, t.parts.len()), (1_300, 2));
        assert_eq!(ck.ask_final(2_000), 5_100, "past the furthest worker");
        assert_eq!(ck.ask_final(9_999), 5_100, "asked once");
    }
}
