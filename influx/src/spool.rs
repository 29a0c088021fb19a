//! The spool: batches waiting for the server, one file each, oldest first. Bounded in bytes:
//! when full, the oldest batches are deleted and their points counted as dropped. Survives a
//! restart of citywatch (the files are reloaded in order).

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

struct Entry {
    seq: u64,
    bytes: u64,
    points: u64,
}

/// A directory of spooled batches.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    bytes: u64,
    next_seq: u64,
}

impl Spool {
    /// Opens `dir`, reloading what a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, u64)> = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(seq) = name.strip_suffix(".lp").and_then(|s| s.parse().ok()) {
                found.push((seq, e.metadata()?.len()));
            } else if name.ends_with(".tmp") {
                // A batch half-written when the process died: its points were never acknowledged
                // as spooled, and the batch is still in the spool's predecessor (memory): gone.
                fs::remove_file(e.path())?;
            }
        }
        found.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            entries: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
        };
        for (seq, bytes) in found {
            let points = fs::read_to_string(spool.path(seq))?.lines().count() as u64;
            spool.entries.push_back(Entry { seq, bytes, points });
            spool.bytes += bytes;
            spool.next_seq = seq + 1;
        }
        Ok(spool)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:012}.lp"))
    }

    /// Adds a batch at the end. Returns the points dropped (oldest batches) to stay in bounds.
    pub fn push(&mut self, lines: &str) -> io::Result<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let tmp = self.dir.join(format!("{seq:012}.tmp"));
        fs::write(&tmp, lines)?;
        fs::rename(&tmp, self.path(seq))?;
        let bytes = lines.len() as u64;
        self.entries.push_back(Entry {
            seq,
            bytes,
            points: lines.lines().count() as u64,
        });
        self.bytes += bytes;
        let mut dropped = 0;
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            fs::remove_file(self.path(old.seq))?;
            self.bytes -= old.bytes;
            dropped += old.points;
        }
        Ok(dropped)
    }

    /// The oldest batch: its sequence number and lines.
    pub fn oldest(&self) -> io::Result<Option<(u64, String)>> {
        match self.entries.front() {
            None => Ok(None),
            Some(e) => Ok(Some((e.seq, fs::read_to_string(self.path(e.seq))?))),
        }
    }

    /// Removes a batch once the server has it.
    pub fn remove(&mut self, seq: u64) -> io::Result<()> {
        if let Some(i) = self.entries.iter().position(|e| e.seq == seq) {
            let e = self.entries.remove(i).expect("position found");
            self.bytes -= e.bytes;
            fs::remove_file(self.path(seq))?;
        }
        Ok(())
    }

    /// Replaces a batch's lines (after part of it was written).
    pub fn replace(&mut self, seq: u64, lines: &str) -> io::Result<()> {
        let Some(i) = self.entries.iter().position(|e| e.seq == seq) else {
            return Ok(());
        };
        let tmp = self.dir.join(format!("{seq:012}.tmp"));
        fs::write(&tmp, lines)?;
        fs::rename(&tmp, self.path(seq))?;
        let e = &mut self.entries[i];
        self.bytes = self.bytes - e.bytes + lines.len() as u64;
        e.bytes = lines.len() as u64;
        e.points = lines.lines().count() as u64;
        Ok(())
    }

    /// Batches and bytes waiting.
    pub fn size(&self) -> (u64, u64) {
        (self.entries.len() as u64, self.bytes)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 40).unwrap();
        assert_eq!(s.push("a 1\nb 2\n").unwrap(), 0);
        assert_eq!(s.push("c 3\n").unwrap(), 0);
        assert_eq!(s.size(), (2, 12));
        drop(s);
        let mut s = Spool::open(dir.path(), 40).unwrap();
        assert_eq!(s.oldest().unwrap(), Some((1, "a 1\nb 2\n".into())));
        // 12 + 32 bytes > 40: the oldest batch (2 points) goes.
        let big = format!("{}\n", "d".repeat(31));
        assert_eq!(s.push(&big).unwrap(), 2);
        assert_eq!(s.oldest().unwrap().unwrap().0, 2);
        s.remove(2).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap().0, 3);
        s.remove(3).unwrap();
        assert!(s.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
