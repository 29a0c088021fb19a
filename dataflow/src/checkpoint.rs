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

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The format of a checkpoint file; a file of another format is not loaded. 2: the rules'
/// groups keep their own timeline (clock, machines at the latest event, catch-up) and each
/// firing episode how late it was known. 3: and what a group keeps to reorder after a gap.
pub const FORMAT: u32 = 3;
const MAGIC: &[u8; 4] = b"CWCK";
/// Magic, format, CRC-32 of the body.
const HEAD: usize = 12;
const NONE: u64 = u64::MAX;

/// The state of every operator at one frontier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Taken {
    /// The frontier: every input before it is in the state, none at or after it.
    pub at: u64,
    /// Timely workers of the process that took it (state is spread by worker).
    pub workers: usize,
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
    remove_where(dir, |name| {
        name.strip_suffix(".ckpt")
            .and_then(|t| t.parse::<u64>().ok())
            .is_some_and(|t| t < at)
    });
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

/// The coordination of checkpoints among one process's workers, and the state restored.
pub struct Checkpoints {
    workers: usize,
    tick_ms: u64,
    every: Duration,
    restored: Option<Taken>,
    /// The time asked for, [`NONE`] when none: read by every operator at every activation.
    asked: AtomicU64,
    coord: Mutex<Coord>,
    on_taken: TakenFn,
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
}

impl Checkpoints {
    /// Checkpoints every `every` among `workers` workers, restoring `restored` (dropped, with a
    /// warning, when it was taken with another number of workers: its state is spread by
    /// worker). Each complete checkpoint goes to `on_taken`.
    pub fn new(
        workers: usize,
        tick_ms: u64,
        every: Duration,
        restored: Option<Taken>,
        on_taken: TakenFn,
    ) -> Arc<Checkpoints> {
        let restored = restored.filter(|t| {
            let same = t.workers == workers;
            if !same {
                tracing::warn!(
                    taken_with = t.workers,
                    workers,
                    "checkpoint: taken with another number of workers; the state starts afresh"
                );
            }
            same
        });
        Arc::new(Checkpoints {
            workers,
            tick_ms: tick_ms.max(1),
            every,
            restored,
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
            }),
            on_taken,
        })
    }

    fn coord(&self) -> std::sync::MutexGuard<'_, Coord> {
        self.coord.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The frontier of the restored checkpoint: every worker's input starts there.
    pub fn restored_at(&self) -> Option<u64> {
        self.restored.as_ref().map(|t| t.at)
    }

    /// A worker has built its dataflow (every part it will give is expected).
    pub fn ready(&self) {
        self.coord().ready += 1;
    }

    /// Where worker `worker` may move its input, wanting `t`: not past a time asked for.
    pub fn allow(&self, worker: usize, t: u64) -> u64 {
        let mut c = self.coord();
        let asked = self.asked.load(Ordering::SeqCst);
        let t = if asked == NONE { t } else { t.min(asked) };
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
        let at = self.past_every_epoch(&c, 0);
        c.parts.clear();
        c.asked_when = Instant::now();
        self.asked.store(at, Ordering::SeqCst);
    }

    /// Asks for the last checkpoint before a stop, at `end` or later; the time asked. A
    /// periodic one still being taken becomes this one (moved to `end` if that is later: no
    /// operator is past the time it held, so each will see its frontier arrive at the new one).
    pub fn ask_final(&self, end: u64) -> u64 {
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
            if self.asked.load(Ordering::SeqCst) != at {
                return;
            }
            c.parts.insert((name.to_owned(), worker), bytes);
            if c.parts.len() < c.expected.len() {
                return;
            }
            c.last = Instant::now();
            c.taken = Some(at);
            self.asked.store(NONE, Ordering::SeqCst);
            Taken {
                at,
                workers: self.workers,
                parts: std::mem::take(&mut c.parts),
                held: c.asked_when.elapsed(),
            }
        };
        (self.on_taken)(taken);
    }
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
        self.ck.asked.load(Ordering::SeqCst) == frontier
            && !self
                .ck
                .coord()
                .parts
                .contains_key(&(self.name.to_owned(), self.worker))
    }

    /// Hands in this part's state at `at`.
    pub fn give<T: Serialize>(&self, at: u64, state: &T) {
        self.ck.deposit(self.name, self.worker, at, encode(state));
    }

    /// What the restored checkpoint holds for this part, and its time; none (with an error
    /// logged) when it does not decode.
    pub fn restored<T: DeserializeOwned>(&self) -> Option<(u64, T)> {
        let taken = self.ck.restored.as_ref()?;
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
    fn the_hold_is_past_every_worker_and_lifts_when_every_part_is_in() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let ck = Checkpoints::new(
            2,
            100,
            Duration::ZERO,
            None,
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
