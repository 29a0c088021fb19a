//! The dead-letter store: every rejected message with its topic, raw payload, reason,
//! message and receive time. Bounded on disk (segment files, oldest dropped first and
//! counted) and mirrored in memory for listing; reloaded from disk at start.

use crate::IngestError;
use model::{Reason, Rejection};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// One rejected message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Position in the store, increasing.
    pub id: u64,
    /// When it arrived, epoch ms.
    pub received_ms: u64,
    /// The MQTT topic.
    pub topic: String,
    /// The stable reason code.
    #[schema(value_type = String, example = "wrong_type")]
    pub reason: Reason,
    /// The payload field at fault, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Which message, which field, why.
    pub message: String,
    /// The raw payload when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The raw payload in hex when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
    /// The payload's whole size in bytes, when only its first [`MAX_KEPT_BYTES`] are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_from: Option<u64>,
}

/// Most bytes of one payload kept: a message of any size the broker delivers is dead-lettered
/// without the store (or the memory mirroring it) growing with it.
pub const MAX_KEPT_BYTES: usize = 64 * 1024;

/// The payload as kept: text when it is UTF-8 (a character cut at the end does not make it
/// binary), else hex; at most [`MAX_KEPT_BYTES`].
fn kept(payload: &[u8]) -> (Option<String>, Option<String>, Option<u64>) {
    let cut = &payload[..payload.len().min(MAX_KEPT_BYTES)];
    let truncated = (cut.len() < payload.len()).then_some(payload.len() as u64);
    match std::str::from_utf8(cut) {
        Ok(s) => (Some(s.to_owned()), None, truncated),
        Err(e) if truncated.is_some() && e.error_len().is_none() => (
            Some(String::from_utf8_lossy(&cut[..e.valid_up_to()]).into_owned()),
            None,
            truncated,
        ),
        Err(_) => (
            None,
            Some(cut.iter().map(|b| format!("{b:02x}")).collect()),
            truncated,
        ),
    }
}

impl DeadLetter {
    /// The payload bytes exactly as received.
    pub fn payload_bytes(&self) -> Vec<u8> {
        match (&self.payload, &self.payload_hex) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(h)) => (0..h.len() / 2)
                .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
                .collect(),
            (None, None) => Vec::new(),
        }
    }
}

struct Segment {
    seq: u64,
    path: PathBuf,
    bytes: u64,
    entries: u64,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    file: Option<File>,
    entries: VecDeque<DeadLetter>,
    next_id: u64,
    dropped: u64,
}

/// The store. Cheap to share behind an `Arc`.
pub struct DeadLetters {
    inner: Mutex<Inner>,
}

/// Segments per store: the store drops one segment (an eighth of its size) at a time.
const SEGMENTS: u64 = 8;

impl DeadLetters {
    /// Opens (or creates) the store in `dir`, keeping at most `max_bytes` on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<DeadLetters, IngestError> {
        let io = |source| IngestError::DeadLetterIo {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".jsonl")?.parse().ok())
            .collect();
        seqs.sort_unstable();
        let mut inner = Inner {
            dir: dir.to_owned(),
            max_bytes: max_bytes.max(SEGMENTS * 1024),
            segment_bytes: (max_bytes / SEGMENTS).max(1024),
            segments: VecDeque::new(),
            file: None,
            entries: VecDeque::new(),
            next_id: 1,
            dropped: 0,
        };
        for seq in seqs {
            let path = dir.join(format!("{seq:012}.jsonl"));
            let file = File::open(&path).map_err(io)?;
            let (mut bytes, mut entries) = (0, 0);
            for line in BufReader::new(file).lines() {
                let line = line.map_err(io)?;
                bytes += line.len() as u64 + 1;
                // A torn last line (crash mid-write) is skipped, not fatal.
                if let Ok(dl) = serde_json::from_str::<DeadLetter>(&line) {
                    inner.next_id = inner.next_id.max(dl.id + 1);
                    inner.entries.push_back(dl);
                    entries += 1;
                }
            }
            inner.segments.push_back(Segment {
                seq,
                path,
                bytes,
                entries,
            });
        }
        Ok(DeadLetters {
            inner: Mutex::new(inner),
        })
    }

    /// Keeps a rejected message. Returns how many old entries were dropped to make room.
    pub fn put(&self, topic: &str, payload: &[u8], rejection: &Rejection, received_ms: u64) -> u64 {
        let (payload, payload_hex, truncated_from) = kept(payload);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let dl = DeadLetter {
            id: inner.next_id,
            received_ms,
            topic: topic.to_owned(),
            reason: rejection.reason,
            field: rejection.field.clone(),
            message: rejection.message.clone(),
            payload,
            payload_hex,
            truncated_from,
        };
        inner.next_id += 1;
        let line = serde_json::to_string(&dl).unwrap_or_default() + "\n";
        let dropped = inner.append(line.as_bytes());
        inner.entries.push_back(dl);
        dropped
    }

    /// The newest entries first, optionally of one reason, at most `limit`.
    pub fn list(&self, reason: Option<Reason>, limit: usize) -> Vec<DeadLetter> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .entries
            .iter()
            .rev()
            .filter(|d| reason.is_none_or(|r| d.reason == r))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Entries kept now, and entries dropped since the store was opened.
    pub fn counts(&self) -> (u64, u64) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (inner.entries.len() as u64, inner.dropped)
    }
}

impl Inner {
    fn append(&mut self, line: &[u8]) -> u64 {
        let needs_new = self
            .segments
            .back()
            .is_none_or(|s| s.bytes + line.len() as u64 > self.segment_bytes);
        if needs_new || self.file.is_none() {
            let seq = self
                .segments
                .back()
                .map_or(1, |s| s.seq + if needs_new { 1 } else { 0 });
            let path = self.dir.join(format!("{seq:012}.jsonl"));
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open dead-letter segment");
                    self.file = None;
                }
            }
            if needs_new {
                self.segments.push_back(Segment {
                    seq,
                    path,
                    bytes: 0,
                    entries: 0,
                });
            }
        }
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.write_all(line)
        {
            tracing::error!(error = %e, "cannot write dead letter");
        }
        if let Some(s) = self.segments.back_mut() {
            s.bytes += line.len() as u64;
            s.entries += 1;
        }
        let mut dropped = 0;
        while self.segments.iter().map(|s| s.bytes).sum::<u64>() > self.max_bytes
            && self.segments.len() > 1
        {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            if let Err(e) = fs::remove_file(&old.path) {
                tracing::warn!(path = %old.path.display(), error = %e, "cannot remove dead-letter segment");
            }
            for _ in 0..old.entries {
                self.entries.pop_front();
            }
            dropped += old.entries;
        }
        self.dropped += dropped;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(reason: Reason) -> Rejection {
        model::Decoder::default()
            .decode(
                "cw/v1/elevator/E1/status",
                match reason {
                    Reason::NotJson => b"\xff\xfe{".as_slice(),
                    _ => b"[]".as_slice(),
                },
                0,
            )
            .unwrap_err()
    }

    #[test]
    fn keeps_lists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetters::open(dir.path(), 1 << 20).unwrap();
        store.put(
            "cw/v1/elevator/E1/status",
            b"\xff\xfe{",
            &rejection(Reason::NotJson),
            1,
        );
        store.put(
            "cw/v1/elevator/E1/status",
            b"[]",
            &rejection(Reason::NotObject),
            2,
        );
        let all = store.list(None, 10);
        assert_eq!(all.iter().map(|d| d.id).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(all[1].payload_hex.as_deref(), Some("fffe7b"));
        assert_eq!(all[1].payload_bytes(), b"\xff\xfe{");
        assert_eq!(store.list(Some(Reason::NotObject), 10).len(), 1);
        drop(store);
        let again = DeadLetters::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(again.list(None, 10), all);
        again.put("t", b"[]", &rejection(Reason::NotObject), 3);
        assert_eq!(again.list(None, 1)[0].id, 3);
    }

    #[test]
    fn a_huge_payload_is_kept_cut_and_says_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetters::open(dir.path(), 1 << 20).unwrap();
        let mut text = "库".repeat(MAX_KEPT_BYTES); // 3 bytes each: the cut splits one
        text.push('!');
        store.put("t", text.as_bytes(), &rejection(Reason::TooLarge), 1);
        store.put("t", &vec![0xffu8; 200_000], &rejection(Reason::TooLarge), 2);
        let listed = store.list(None, 10);
        let binary = &listed[0];
        assert_eq!(binary.truncated_from, Some(200_000));
        assert_eq!(binary.payload_bytes().len(), MAX_KEPT_BYTES);
        let cut = &listed[1];
        assert_eq!(cut.truncated_from, Some(text.len() as u64));
        let kept = cut.payload.as_deref().unwrap();
        assert!(
            kept.len() <= MAX_KEPT_BYTES && text.starts_with(kept),
            "cut on a character"
        );
        let small = DeadLetters::open(dir.path(), 1 << 20)
            .unwrap()
            .list(None, 1);
        assert_eq!(small[0].truncated_from, Some(200_000), "reloaded as kept");
    }

    #[test]
    fn bounded_oldest_dropped_first_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetters::open(dir.path(), 8 * 1024).unwrap();
        let r = rejection(Reason::NotObject);
        let mut dropped = 0;
        for i in 0..500 {
            dropped += store.put("cw/v1/elevator/E1/status", b"[]", &r, i);
        }
        let (kept, total_dropped) = store.counts();
        assert_eq!(kept + dropped, 500);
        assert_eq!(total_dropped, dropped);
        assert!(dropped > 0);
        let disk: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(disk <= 8 * 1024, "{disk}");
        let newest = store.list(None, 1);
        assert_eq!(newest[0].received_ms, 499);
        let oldest = store.list(None, usize::MAX).last().cloned().unwrap();
        assert_eq!(oldest.id, dropped + 1);
    }
}
