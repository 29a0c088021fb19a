//! Which logged messages are accounted for: their consequences are journaled, so a restart
//! need not replay them.
//!
//! A message is logged, then handed to the dataflow at an event time `t` (its own time, or the
//! frontier if it came late). Once the alerts stage has journaled every condition before
//! `as_of`, every message handed at `t < as_of` is accounted for. The replay point is the
//! smallest sequence number that is not: logged but not yet handed, or handed at `as_of` or
//! later. It is kept in `mark.json` beside the segments, so a restart replays from there.
//!
//! Messages are not handed in the order they were logged: a device whose clock runs ahead is
//! handed at a later time than the message logged after it. So past the replay point there
//! can be messages already accounted for; the mark lists them as ranges (`skip`), and a
//! restart leaves them out, or they would count twice. They are few ranges: the messages
//! entered at the frontier's time or later are the last second or two of input.

use rangemap::RangeSet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The mark is written at most this often while running (and always at a clean stop): a
/// mark that lags only makes a restart replay a little more, which the alerts stage knows.
const WRITE_EVERY: Duration = Duration::from_millis(250);

/// What `mark.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The first message a restart replays.
    pub replay_from: u64,
    /// The event time before which every condition was journaled (for the operator's eye).
    pub as_of_ms: u64,
    /// Ranges `[from, to)` of messages after `replay_from` that are accounted for already:
    /// a restart does not replay them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<[u64; 2]>,
    /// In a cluster with checkpoints: the mark of the checkpoint before, kept until every
    /// process has moved past it (a restart of the cluster may have to go back to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<Mark>>,
}

impl Mark {
    /// Whether a restart replays message `seq`.
    pub fn replays(&self, seq: u64) -> bool {
        let after = self.skip.partition_point(|[from, _]| *from <= seq);
        seq >= self.replay_from && (after == 0 || seq >= self.skip[after - 1][1])
    }

    /// Whether a restart from this mark or the previous one replays `seq`.
    pub fn replays_any(&self, seq: u64) -> bool {
        self.replays(seq) || self.previous.as_ref().is_some_and(|p| p.replays(seq))
    }

    /// The first message any restart from this mark or the previous one needs.
    pub fn keep_from(&self) -> u64 {
        self.previous
            .as_ref()
            .map_or(self.replay_from, |p| p.replay_from.min(self.replay_from))
    }

    /// The times of the checkpoints this mark and the previous one name, newest first.
    pub fn checkpoints(&self) -> Vec<u64> {
        [
            Some(self.as_of_ms),
            self.previous.as_ref().map(|p| p.as_of_ms),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > 0)
        .collect()
    }

    /// This mark alone, without the one before.
    pub fn latest(&self) -> Mark {
        Mark {
            previous: None,
            ..self.clone()
        }
    }

    /// The mark that names the checkpoint at `at` (this one or the previous).
    pub fn naming(&self, at: u64) -> Option<Mark> {
        if self.as_of_ms == at {
            return Some(self.latest());
        }
        self.previous
            .as_deref()
            .filter(|p| p.as_of_ms == at)
            .cloned()
    }
}

#[derive(Debug)]
struct State {
    /// Logged, not yet handed to the dataflow.
    unplaced: BTreeSet<u64>,
    /// Per event time handed at, the sequence numbers handed there.
    placed: BTreeMap<u64, Vec<u64>>,
    /// Accounted for, past the replay point.
    done: RangeSet<u64>,
    /// The next sequence number the log will give.
    next: u64,
    mark: Mark,
    written: Option<(Mark, Instant)>,
}

/// The ledger of one process's input log.
#[derive(Debug)]
pub struct Ledger {
    state: Mutex<State>,
    path: PathBuf,
    /// One writer of the file at a time (they share its temporary name).
    writing: Mutex<()>,
}

impl Ledger {
    pub(crate) fn new(path: PathBuf, mark: Mark, next: u64) -> Ledger {
        Ledger {
            state: Mutex::new(State {
                unplaced: BTreeSet::new(),
                placed: BTreeMap::new(),
                done: mark.skip.iter().map(|[a, b]| *a..*b).collect(),
                next,
                written: Some((mark.clone(), Instant::now())),
                mark,
            }),
            path,
            writing: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the mark of a log directory (none yet: replay everything there is).
    pub(crate) fn read_mark(path: &std::path::Path) -> Mark {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// `seq` is logged (or, at start, found unaccounted in the log).
    pub(crate) fn logged(&self, seq: u64) {
        let mut s = self.lock();
        s.unplaced.insert(seq);
        s.next = s.next.max(seq + 1);
    }

    /// These messages are in the dataflow's input, each at its event time: `(seq, time)`.
    pub fn placed(&self, items: &[(u64, u64)]) {
        let mut s = self.lock();
        for &(seq, t) in items {
            if s.unplaced.remove(&seq) {
                s.placed.entry(t).or_default().push(seq);
            }
        }
    }

    /// Goes by `mark` from now on (the one a start chose among those on disk): messages it
    /// does not replay are accounted for, and it is written down at once.
    pub fn adopt(&self, mark: Mark) {
        {
            let mut s = self.lock();
            s.unplaced.retain(|seq| mark.replays(*seq));
            s.placed.clear();
            s.done = mark.skip.iter().map(|[a, b]| *a..*b).collect();
            s.mark = mark.clone();
            s.written = None;
        }
        self.write(mark);
    }

    /// Every condition before the checkpoint at `at` is journaled and every process of the
    /// cluster has the checkpoint: moves the replay point there, keeping the mark before as
    /// `previous`, and writes it down at once.
    pub fn accounted_to_checkpoint(&self, at: u64) {
        let before = { self.lock().mark.latest() };
        self.accounted(at);
        let mark = {
            let mut s = self.lock();
            if before.as_of_ms > 0 && before.as_of_ms < s.mark.as_of_ms {
                s.mark.previous = Some(Box::new(before));
            }
            s.mark.clone()
        };
        self.write(mark);
    }

    /// Every condition before `as_of` is journaled: moves the replay point, and writes it down
    /// now and then.
    pub fn accounted(&self, as_of: u64) {
        let mark = {
            let mut s = self.lock();
            let open = s.placed.split_off(&as_of);
            let closed = std::mem::replace(&mut s.placed, open);
            for seq in closed.into_values().flatten() {
                s.done.insert(seq..seq + 1);
            }
            let first_open = s.placed.values().flatten().min().copied();
            let replay_from = [s.unplaced.first().copied(), first_open]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(s.next);
            // Never backwards: a late snapshot of a slower path must not undo a newer mark.
            let replay_from = replay_from.max(s.mark.replay_from);
            if replay_from > 0 {
                s.done.remove(0..replay_from);
            }
            let previous = s.mark.previous.take();
            s.mark = Mark {
                replay_from,
                as_of_ms: as_of.max(s.mark.as_of_ms),
                skip: s.done.iter().map(|r| [r.start, r.end]).collect(),
                previous,
            };
            match &s.written {
                Some((m, at)) if *m == s.mark || at.elapsed() < WRITE_EVERY => return,
                _ => s.mark.clone(),
            }
        };
        self.write(mark);
    }

    /// Writes the current mark now (at a clean stop).
    pub fn flush(&self) {
        let mark = self.lock().mark.clone();
        self.write(mark);
    }

    /// The mark on disk now: what a restart would go by.
    pub fn written(&self) -> Mark {
        self.lock()
            .written
            .as_ref()
            .map(|(m, _)| m.clone())
            .unwrap_or_default()
    }

    /// The first message a restart would replay.
    pub fn replay_from(&self) -> u64 {
        self.lock().mark.replay_from
    }

    /// The first message a restart by the mark on disk could need: the log keeps it and
    /// everything after.
    pub fn keep_from(&self) -> u64 {
        self.written().keep_from()
    }

    /// Written whole or not at all, and synced: it must never claim more than the journal
    /// holds, and a lost write only means a longer replay.
    fn write(&self, mark: Mark) {
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        // A newer mark may have been written meanwhile: never write an older one over it.
        if self.lock().written.as_ref().is_some_and(|(m, _)| {
            m.replay_from > mark.replay_from || m.as_of_ms > mark.as_of_ms || *m == mark
        }) {
            return;
        }
        let tmp = self.path.with_extension("json.tmp");
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &serde_json::to_vec(&mark)?)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &self.path)
        })();
        match written {
            Ok(()) => self.lock().written = Some((mark, Instant::now())),
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "input log: cannot write the replay mark")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::new(dir.path().join("mark.json"), Mark::default(), 0);
        (dir, l)
    }

    #[test]
    fn the_replay_point_is_the_first_message_not_journaled() {
        let (_d, l) = ledger();
        for seq in 0..5 {
            l.logged(seq);
        }
        // 0 and 1 at 100, 2 late at 300, 3 early (its device's clock ahead) at 900; 4 not
        // yet handed.
        l.placed(&[(0, 100), (1, 100), (3, 900), (2, 300)]);
        l.accounted(200);
        assert_eq!(l.replay_from(), 2);
        l.accounted(400);
        assert_eq!(l.replay_from(), 3);
        l.flush();
        assert!(
            Ledger::read_mark(&l.path).skip.is_empty(),
            "4 is not handed yet"
        );
        l.placed(&[(4, 400)]);
        l.accounted(500);
        assert_eq!(l.replay_from(), 3, "3 waits for 900");
        l.flush();
        assert_eq!(
            Ledger::read_mark(&l.path).skip,
            vec![[4, 5]],
            "4 is accounted for"
        );
        l.accounted(1000);
        assert_eq!(l.replay_from(), 5, "everything");
        l.flush();
        assert_eq!(
            Ledger::read_mark(&l.path),
            Mark {
                replay_from: 5,
                as_of_ms: 1000,
                ..Mark::default()
            }
        );
    }

    #[test]
    fn a_message_not_yet_handed_holds_the_mark() {
        let (_d, l) = ledger();
        l.logged(0);
        l.logged(1);
        l.placed(&[(1, 100)]);
        l.accounted(10_000);
        assert_eq!(l.replay_from(), 0);
        // Placing something twice (or something never logged) changes nothing.
        l.placed(&[(1, 50), (9, 50)]);
        l.placed(&[(0, 20_000)]);
        l.accounted(20_001);
        assert_eq!(l.replay_from(), 2);
    }

    #[test]
    fn a_move_to_a_checkpoint_keeps_the_one_before_until_the_next() {
        let (_d, l) = ledger();
        for seq in 0..6 {
            l.logged(seq);
        }
        l.placed(&[(0, 100), (1, 100), (2, 300), (3, 300), (4, 500)]);
        l.accounted_to_checkpoint(200);
        l.accounted_to_checkpoint(400);
        let on_disk = Ledger::read_mark(&l.path);
        assert_eq!((on_disk.replay_from, on_disk.as_of_ms), (4, 400));
        assert_eq!(on_disk.checkpoints(), [400, 200]);
        assert_eq!(
            on_disk.keep_from(),
            2,
            "the checkpoint at 200 needs 2 and 3 again"
        );
        let back = on_disk.naming(200).unwrap();
        assert!(back.replays(2) && back.replays(3) && !back.replays(1));
        assert!(on_disk.replays_any(2) && !on_disk.replays_any(1));
        l.accounted_to_checkpoint(600);
        let on_disk = Ledger::read_mark(&l.path);
        assert_eq!(on_disk.checkpoints(), [600, 400], "one before, not two");
        assert_eq!(on_disk.replay_from, 5, "5 is not handed yet");
        // A start that chose the checkpoint at 400 goes by its mark: 4 is to be fed again.
        l.adopt(on_disk.naming(400).unwrap());
        assert_eq!(l.replay_from(), 4);
        assert_eq!(Ledger::read_mark(&l.path).checkpoints(), [400]);
    }
}
