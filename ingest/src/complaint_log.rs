//! The complaint log: every complaint and status update taken from the broker, kept on disk
//! before it is handed to the dataflow, and fed again at the next start. A handling deadline
//! runs for days (7 working days to decide, 45 to mediate) while the dataflow keeps its clocks
//! in memory: without the log, a restart would forget every running clock and open complaint.
//!
//! One JSON line per message (`topic`, `payload`, `received_ms`), synced to disk before the
//! message is acknowledged. Bounded by age: at start, and every [`COMPACT_EVERY`] appends while
//! running, lines older than the retention (90 days, as long as the dataflow remembers a
//! complaint) are dropped and the file rewritten.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A logged message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Logged {
    pub topic: String,
    pub payload: String,
    pub received_ms: u64,
}

/// Appends between two compactions while running (a district logs a few hundred a day).
pub const COMPACT_EVERY: u64 = 100_000;

/// The open log.
#[derive(Debug)]
pub struct ComplaintLog {
    path: PathBuf,
    /// The file, and the appends since it was last compacted.
    file: Mutex<(std::fs::File, u64)>,
    retention_ms: u64,
    compact_every: u64,
}

impl ComplaintLog {
    /// Opens `dir/complaints.jsonl`, drops what was received more than `retention_ms` before
    /// `now_ms`, and returns the log and what it kept, oldest first, to be fed again.
    /// Unreadable lines (a write cut short by a crash) are skipped and counted in the log
    /// output.
    pub fn open(
        dir: &Path,
        now_ms: u64,
        retention_ms: u64,
    ) -> std::io::Result<(ComplaintLog, Vec<Logged>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("complaints.jsonl");
        let mut kept = Vec::new();
        compact(&path, now_ms.saturating_sub(retention_ms), Some(&mut kept))?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok((
            ComplaintLog {
                path,
                file: Mutex::new((file, 0)),
                retention_ms,
                compact_every: COMPACT_EVERY,
            },
            kept,
        ))
    }

    /// Appends a message and syncs it to disk; now and then drops what is past retention.
    pub fn append(&self, topic: &str, payload: &str, received_ms: u64) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&Logged {
            topic: topic.to_owned(),
            payload: payload.to_owned(),
            received_ms,
        })?;
        line.push(b'\n');
        let mut guard = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (f, appended) = &mut *guard;
        f.write_all(&line)?;
        f.sync_data()?;
        *appended += 1;
        if *appended >= self.compact_every {
            *appended = 0;
            // The message is logged either way: a failed compaction only leaves the file longer.
            let keep_from = received_ms.saturating_sub(self.retention_ms);
            match compact(&self.path, keep_from, None) {
                Ok(()) => *f = std::fs::OpenOptions::new().append(true).open(&self.path)?,
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.path.display(), "complaint log: compaction failed")
                }
            }
        }
        Ok(())
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Rewrites the log at `path` without what was received before `keep_from_ms`, line by line
/// (atomically: a crash leaves the old file whole); what it keeps also goes to `kept` if given.
fn compact(
    path: &Path,
    keep_from_ms: u64,
    mut kept: Option<&mut Vec<Logged>>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(".complaints.jsonl.tmp");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut skipped = 0usize;
    if path.exists() {
        let reader = std::io::BufReader::new(std::fs::File::open(path)?);
        for line in reader.lines() {
            match serde_json::from_str::<Logged>(&line?) {
                Ok(l) if l.received_ms >= keep_from_ms => {
                    serde_json::to_writer(&mut w, &l)?;
                    w.write_all(b"\n")?;
                    if let Some(k) = kept.as_mut() {
                        k.push(l);
                    }
                }
                Ok(_) => {}
                Err(_) => skipped += 1,
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(skipped, path = %path.display(), "complaint log: unreadable lines skipped");
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_across_a_restart_and_bounded_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let (log, replay) = ComplaintLog::open(dir.path(), 0, 0).unwrap();
        assert!(replay.is_empty());
        log.append("cw/v1/complaint/new", r#"{"complaint_id":"C1"}"#, 1_000)
            .unwrap();
        log.append(
            "cw/v1/complaint/C1/status",
            r#"{"status":"accepted"}"#,
            5_000,
        )
        .unwrap();
        drop(log);
        // A write cut short by a crash.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("complaints.jsonl"))
            .unwrap()
            .write_all(b"{\"topic\":\"cw/v1/compl")
            .unwrap();
        let (log, replay) = ComplaintLog::open(dir.path(), 3_000, 1_000).unwrap();
        assert_eq!(
            replay,
            [Logged {
                topic: "cw/v1/complaint/C1/status".into(),
                payload: r#"{"status":"accepted"}"#.into(),
                received_ms: 5_000
            }]
        );
        log.append("cw/v1/complaint/new", r#"{"complaint_id":"C2"}"#, 6_000)
            .unwrap();
        drop(log);
        let (_, replay) = ComplaintLog::open(dir.path(), 0, 0).unwrap();
        assert_eq!(
            replay.len(),
            2,
            "the old line and the torn one are gone: {replay:?}"
        );
    }

    #[test]
    fn a_running_log_drops_what_is_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = ComplaintLog::open(dir.path(), 0, 1_000).unwrap();
        log.compact_every = 3;
        for t in [100, 200, 5_000] {
            log.append("cw/v1/complaint/new", "{}", t).unwrap();
        }
        // The third append compacted: 100 and 200 are more than 1 000 ms before 5 000.
        log.append("cw/v1/complaint/new", "{}", 5_100).unwrap();
        drop(log);
        let lines = std::fs::read_to_string(dir.path().join("complaints.jsonl")).unwrap();
        let times: Vec<u64> = lines
            .lines()
            .map(|l| serde_json::from_str::<Logged>(l).unwrap().received_ms)
            .collect();
        assert_eq!(times, [5_000, 5_100]);
    }
}
