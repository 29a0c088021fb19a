//! The log as recent history: a segment is kept `keep_ms` after its last write even once the
//! alerts have accounted for it, so that "why did this rule not fire for this device" can be
//! answered from what the devices sent (docs/explain.md). Only whole segments go, and only
//! those wholly before the replay point: retention never shortens what a restart replays.

use super::record::{self, Record};
use std::path::Path;
use std::time::UNIX_EPOCH;

/// When the file at `path` was last written, epoch ms.
fn written_ms(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Whether a segment wholly before the replay point may be deleted at `now_ms`: it was last
/// written more than `keep_ms` before.
pub(crate) fn expired(path: &Path, keep_ms: u64, now_ms: u64) -> bool {
    keep_ms == 0 || written_ms(path).is_none_or(|w| w.saturating_add(keep_ms) < now_ms)
}

/// The logged messages of `dir` received at or after `since_ms` whose topic `wanted` admits,
/// in log order. A segment deleted while it is read is passed over.
pub fn received_since(
    dir: &Path,
    since_ms: u64,
    wanted: impl Fn(&str) -> bool,
) -> std::io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for (_, path) in super::segments(dir)? {
        // A segment last written before `since_ms` holds nothing received after it.
        if written_ms(&path).is_some_and(|w| w < since_ms) {
            continue;
        }
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let scanned = record::read_matching(std::io::BufReader::new(file), |r| {
            r.received_ms >= since_ms && wanted(&r.topic)
        })?;
        out.extend(scanned.records);
    }
    Ok(out)
}
