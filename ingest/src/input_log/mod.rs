//! The input log: every device message, on disk before it is acknowledged to the broker.
//!
//! Acknowledging a message tells the broker to forget it, so from then on citywatch alone
//! must not lose it; but an alert is journaled only once the frontier passes the message, a
//! lateness later. Holding the acknowledgement that long would need the broker to keep
//! `rate × lateness` messages in flight (100 000 at 50 000 msgs/s and 2 s), far past what
//! brokers allow a session (Mosquitto: 20 by default; MQTT: 65 535 at most). So the message
//! goes to this log first (group commit: one write and one `fdatasync` for whatever arrived
//! meanwhile), is acknowledged once synced, and a restart replays what the [`Ledger`] does not
//! know to be accounted for.
//!
//! On disk: `DIR/<first seq, 20 digits>.log` segments of [`record`]s, rolled at
//! [`SEGMENT_BYTES`], deleted once wholly before the replay point; `DIR/mark.json`, the replay
//! point.

pub mod history;
pub mod ledger;
pub mod record;

pub use ledger::{Ledger, Mark};
pub use record::Record;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A segment is closed once it holds this much.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// One commit writes at most this much before syncing.
const COMMIT_BYTES: usize = 4 << 20;
/// The most records a restart replays; more means the journal stopped following for long,
/// and what lies before is left (and said so in the log).
pub const MAX_REPLAY: usize = 2_000_000;

/// How a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// `fdatasync` before acknowledging: survives a power cut.
    #[default]
    Fsync,
    /// Written to the operating system only: survives the process dying, not the machine.
    Os,
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("input log at {path}: {source}")]
pub struct LogError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct LogStats {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub commits: AtomicU64,
    pub write_errors: AtomicU64,
    /// Redeliveries of a message the log already held at start (not taken twice).
    pub duplicates: AtomicU64,
}

struct Entry {
    seq: u64,
    bytes: Vec<u8>,
    ack: Option<u64>,
}

/// What a commit calls with the acknowledgement numbers it made durable.
pub type DurableFn = Box<dyn FnMut(&[u64]) + Send>;

/// The open log.
pub struct InputLog {
    dir: PathBuf,
    ledger: Arc<Ledger>,
    next: Mutex<u64>,
    tx: Mutex<Option<crossbeam_channel::Sender<Entry>>>,
    rx: Mutex<Option<crossbeam_channel::Receiver<Entry>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Hashes of the replayed messages, for recognising the broker's redeliveries of them.
    replayed: Mutex<HashMap<u64, u32>>,
    stats: Arc<LogStats>,
    sync: SyncPolicy,
    /// How long an accounted-for segment is kept after its last write ([`history`]).
    keep_ms: u64,
}

/// What a start found in the log.
pub struct Recovered {
    pub log: Arc<InputLog>,
    /// The messages not accounted for, oldest first, to be replayed before live input.
    pub replay: Vec<Record>,
    pub mark: Mark,
}

impl InputLog {
    /// Opens (or creates) the log in `dir`: cuts a torn tail, drops segments wholly before
    /// the replay point once last written more than `keep_ms` ago, and returns what is to be
    /// replayed.
    pub fn open(
        dir: &Path,
        sync: SyncPolicy,
        capacity: usize,
        keep_ms: u64,
    ) -> Result<Recovered, LogError> {
        let err = |source| LogError {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mark_path = dir.join("mark.json");
        let mark = Ledger::read_mark(&mark_path);
        let (replay, next) = recover(dir, &mark, keep_ms).map_err(err)?;
        let next = next.max(mark.replay_from);
        let ledger = Arc::new(Ledger::new(mark_path, mark.clone(), next));
        for r in &replay {
            ledger.logged(r.seq);
        }
        let replayed = replay.iter().fold(HashMap::new(), |mut m, r| {
            *m.entry(content_hash(&r.topic, &r.payload)).or_insert(0) += 1;
            m
        });
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let log = Arc::new(InputLog {
            dir: dir.to_owned(),
            ledger,
            next: Mutex::new(next),
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
            writer: Mutex::new(None),
            replayed: Mutex::new(replayed),
            stats: Arc::default(),
            sync,
            keep_ms,
        });
        Ok(Recovered { log, replay, mark })
    }

    /// Starts the writer; `durable` hears the acknowledgement numbers of each commit.
    pub fn start(self: &Arc<Self>, durable: DurableFn) -> std::io::Result<()> {
        let Some(rx) = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        let next = *self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let file = open_segment(&self.dir, next)?;
        let writer = Writer {
            dir: self.dir.clone(),
            file,
            last: next.checked_sub(1),
            ledger: self.ledger.clone(),
            stats: self.stats.clone(),
            sync: self.sync,
            keep_ms: self.keep_ms,
            durable,
        };
        let handle = std::thread::Builder::new()
            .name("input-log".into())
            .spawn(move || writer.run(rx))?;
        *self.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// Logs a message; `ack` is its acknowledgement number, released once it is synced.
    /// Returns its sequence number, or the entry back when the writer is behind (the caller
    /// waits and tries again: that is the backpressure).
    pub fn try_append(
        &self,
        topic: &str,
        payload: &[u8],
        received_ms: u64,
        ack: Option<u64>,
    ) -> Result<u64, Full> {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else {
            return Err(Full::Closed);
        };
        if tx.is_full() {
            return Err(Full::Behind);
        }
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = *next;
        let mut bytes = Vec::with_capacity(payload.len() + topic.len() + 32);
        record::encode(seq, received_ms, topic, payload, &mut bytes);
        // Only this call sends, under the lock: the check above keeps room.
        tx.send(Entry { seq, bytes, ack })
            .map_err(|_| Full::Closed)?;
        *next += 1;
        self.ledger.logged(seq);
        Ok(seq)
    }

    /// Whether a redelivered message is one the log replayed at start (then it is not taken
    /// again; each logged copy answers one redelivery).
    pub fn already_replayed(&self, topic: &str, payload: &[u8]) -> bool {
        let mut r = self.replayed.lock().unwrap_or_else(PoisonError::into_inner);
        if r.is_empty() {
            return false;
        }
        let h = content_hash(topic, payload);
        match r.get_mut(&h) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    r.remove(&h);
                }
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.clone()
    }

    pub fn stats(&self) -> Arc<LogStats> {
        self.stats.clone()
    }

    /// Commits what is queued and stops the writer (at a clean stop, after the intake).
    pub fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = h.join();
        }
    }
}

/// Why a message could not be logged now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The writer has a full queue: wait.
    Behind,
    /// The log is closed (stopping).
    Closed,
}

fn content_hash(topic: &str, payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut h);
    payload.hash(&mut h);
    h.finish()
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The segments of `dir`, by first sequence number.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the log from the mark's replay point, leaving out what it skips: the records to
/// replay and the next sequence number.
/// A damaged tail is cut off (a write the crash interrupted was never acknowledged);
/// segments wholly before `replay_from` are not read, and deleted once last written more than
/// `keep_ms` ago.
fn recover(dir: &Path, mark: &Mark, keep_ms: u64) -> std::io::Result<(Vec<Record>, u64)> {
    let replay_from = mark.keep_from();
    let all = segments(dir)?;
    let mut replay = Vec::new();
    let mut next = 0;
    let now = now_ms();
    for (i, (first, path)) in all.iter().enumerate() {
        let later = all.get(i + 1).map(|(f, _)| *f);
        if later.is_some_and(|l| l <= replay_from) {
            if history::expired(path, keep_ms, now) {
                std::fs::remove_file(path)?;
            }
            continue;
        }
        let file = std::fs::File::open(path)?;
        let scanned = record::read_all(std::io::BufReader::new(file), |s| mark.replays_any(s))?;
        if scanned.damaged {
            tracing::warn!(path = %path.display(), good_bytes = scanned.good_len, "input log: cutting a torn or damaged tail");
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(scanned.good_len)?;
        }
        next = next.max(*first);
        if let Some(last) = scanned.last_seq {
            next = next.max(last + 1);
        }
        replay.extend(scanned.records);
    }
    if replay.len() > MAX_REPLAY {
        let left = replay.len() - MAX_REPLAY;
        tracing::error!(
            left,
            "input log: more to replay than a start takes; the oldest are left"
        );
        replay.drain(..left);
    }
    Ok((replay, next))
}

/// The segment a writer starts on: the newest, while it has room (the one a restart
/// continues), else a new one from `first`. Returns it, its first sequence number and length.
fn open_segment(dir: &Path, first: u64) -> std::io::Result<(std::fs::File, u64, u64)> {
    if let Some((f, path)) = segments(dir)?.pop() {
        let len = std::fs::metadata(&path)?.len();
        if len < SEGMENT_BYTES {
            return Ok((
                std::fs::OpenOptions::new().append(true).open(&path)?,
                f,
                len,
            ));
        }
    }
    Ok((new_segment(dir, first)?, first, 0))
}

/// A new or removed file's name is durable once its directory is synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The wall clock, epoch ms.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Writer {
    dir: PathBuf,
    /// The open segment, its first sequence number and its length.
    file: (std::fs::File, u64, u64),
    /// The last sequence number written.
    last: Option<u64>,
    ledger: Arc<Ledger>,
    stats: Arc<LogStats>,
    sync: SyncPolicy,
    keep_ms: u64,
    durable: DurableFn,
}

impl Writer {
    fn run(mut self, rx: crossbeam_channel::Receiver<Entry>) {
        let mut buf = Vec::with_capacity(COMMIT_BYTES);
        let mut acks = Vec::new();
        let mut records = 0u64;
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(e) = next.take() {
                buf.extend_from_slice(&e.bytes);
                acks.extend(e.ack);
                self.last = Some(e.seq);
                records += 1;
                if buf.len() < COMMIT_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&buf);
            (self.durable)(&acks);
            self.stats.records.fetch_add(records, Ordering::Relaxed);
            self.stats
                .bytes
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            buf.clear();
            acks.clear();
            records = 0;
            self.roll_and_trim();
        }
    }

    /// Writes and syncs `buf`, retrying until it is on disk: nothing is acknowledged before,
    /// so a full disk stops the intake (the broker keeps the messages) instead of losing them.
    fn commit(&mut self, buf: &[u8]) {
        let mut delay = Duration::from_millis(100);
        loop {
            let (file, _, len) = &mut self.file;
            let written = file.write_all(buf).and_then(|()| match self.sync {
                SyncPolicy::Fsync => file.sync_data(),
                SyncPolicy::Os => Ok(()),
            });
            match written {
                Ok(()) => {
                    *len += buf.len() as u64;
                    return;
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, dir = %self.dir.display(), "input log: cannot write; intake waits");
                    // A partial write is cut off before the retry.
                    let _ = file.set_len(*len);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn roll_and_trim(&mut self) {
        if self.file.2 < SEGMENT_BYTES {
            return;
        }
        let next = self.last.map_or(0, |l| l + 1);
        match new_segment(&self.dir, next) {
            Ok(f) => self.file = (f, next, 0),
            Err(e) => tracing::warn!(error = %e, "input log: cannot start a new segment"),
        }
        // What the mark on disk needs, not the newer one in memory: a crash now restarts by
        // the one on disk.
        let from = self.ledger.keep_from();
        let now = now_ms();
        if let Ok(all) = segments(&self.dir) {
            for w in all.windows(2) {
                if w[1].0 <= from && history::expired(&w[0].1, self.keep_ms, now) {
                    let _ = std::fs::remove_file(&w[0].1);
                }
            }
        }
    }
}

fn new_segment(dir: &Path, first: u64) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(segment_name(first)))?;
    sync_dir(dir);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(log: &Arc<InputLog>, n: u64) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let payload = format!("{{\"i\":{i}}}");
                log.try_append("cw/v1/t", payload.as_bytes(), 1000 + i, Some(i))
                    .unwrap()
            })
            .collect()
    }

    fn started(dir: &Path) -> (Recovered, Arc<Mutex<Vec<u64>>>) {
        let r = InputLog::open(dir, SyncPolicy::Fsync, 64, 0).unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let a = acked.clone();
        r.log
            .start(Box::new(move |acks| {
                a.lock().unwrap().extend_from_slice(acks)
            }))
            .unwrap();
        (r, acked)
    }

    #[test]
    fn what_is_not_accounted_for_is_replayed_and_acks_follow_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (r, acked) = started(dir.path());
        assert!(r.replay.is_empty());
        let seqs = write(&r.log, 5);
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        let ledger = r.log.ledger();
        ledger.placed(&[(0, 100), (1, 100), (2, 200), (3, 300), (4, 300)]);
        ledger.accounted(250);
        ledger.flush();
        r.log.close();
        assert_eq!(*acked.lock().unwrap(), [0, 1, 2, 3, 4]);

        let (again, _) = started(dir.path());
        let seqs: Vec<u64> = again.replay.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 4]);
        assert_eq!(again.replay[0].payload, b"{\"i\":3}");
        assert_eq!(again.replay[1].received_ms, 1004);
        // Numbering goes on; a redelivery of a replayed message is recognised once.
        assert_eq!(write(&again.log, 1), [5]);
        assert!(again.log.already_replayed("cw/v1/t", b"{\"i\":4}"));
        assert!(!again.log.already_replayed("cw/v1/t", b"{\"i\":4}"));
        assert!(!again.log.already_replayed("cw/v1/t", b"{\"i\":1}"));
        again.log.close();
    }

    #[test]
    fn messages_accounted_for_past_the_replay_point_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = started(dir.path());
        write(&r.log, 6);
        // 1 comes from a device whose clock runs ahead: entered after the others, it holds
        // the replay point while 2, 3 and 5 are accounted for; 4 was late (entered at 300).
        let ledger = r.log.ledger();
        ledger.placed(&[(0, 100), (1, 900), (2, 100), (3, 200), (4, 300), (5, 200)]);
        ledger.accounted(250);
        ledger.flush();
        r.log.close();
        let mark = Ledger::read_mark(&dir.path().join("mark.json"));
        assert_eq!(
            (mark.replay_from, mark.skip.clone()),
            (1, vec![[2, 4], [5, 6]])
        );

        let (again, _) = started(dir.path());
        let seqs: Vec<u64> = again.replay.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 4]);
        // Numbering goes on past the skipped tail.
        assert_eq!(write(&again.log, 1), [6]);
        again.log.close();
    }

    #[test]
    fn a_torn_tail_is_cut_and_writing_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = started(dir.path());
        write(&r.log, 3);
        r.log.close();
        let (_, seg) = segments(dir.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&seg).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let (again, _) = started(dir.path());
        assert_eq!(again.replay.len(), 2, "the torn third is gone");
        assert_eq!(write(&again.log, 1), [2]);
        again.log.close();
        let (third, _) = started(dir.path());
        let seqs: Vec<u64> = third.replay.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1, 2]);
        third.log.close();
    }

    /// Three segments of ten records each (received at their sequence number, topic `t` or
    /// `u` by parity), and a mark that replays from 25.
    fn three_segments(dir: &Path) {
        for first in [0u64, 10, 20] {
            let mut b = Vec::new();
            for s in first..first + 10 {
                let topic = if s % 2 == 0 { "t" } else { "u" };
                record::encode(s, s, topic, b"x", &mut b);
            }
            std::fs::write(dir.join(segment_name(first)), b).unwrap();
        }
        let mark = Mark {
            replay_from: 25,
            ..Mark::default()
        };
        std::fs::write(dir.join("mark.json"), serde_json::to_vec(&mark).unwrap()).unwrap();
    }

    #[test]
    fn segments_before_the_replay_point_are_kept_as_history_for_their_time() {
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        let r = InputLog::open(dir.path(), SyncPolicy::Fsync, 64, 3_600_000).unwrap();
        let firsts: Vec<u64> = segments(dir.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(firsts, [0, 10, 20], "written just now: kept");
        assert_eq!(
            r.replay.first().map(|r| r.seq),
            Some(25),
            "and not replayed"
        );
        let read = history::received_since(dir.path(), 7, |t| t == "t").unwrap();
        let seqs: Vec<u64> = read.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28]);
    }

    #[test]
    fn segments_wholly_before_the_replay_point_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        let (r, _) = started(dir.path());
        let firsts: Vec<u64> = segments(dir.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(firsts, [20]);
        assert_eq!(r.replay.first().map(|r| r.seq), Some(25));
        assert_eq!(write(&r.log, 1), [30]);
        r.log.close();
    }
}
