//! The latest evidence image of each kitchen camera and detection kind, so that an alert
//! opened on a detection can carry a link to what the camera saw.
//!
//! Detections are few (an AI model's findings, not frames), so a map under a mutex is cheap;
//! it holds one entry per (kitchen, camera, kind) and never more than [`MAX_ENTRIES`]: when
//! full, the oldest tenth is dropped.

use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 100_000;

/// One camera's latest evidence for one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Event time of the detection, epoch ms.
    pub ts: u64,
    /// The contract's `snapshot`: URL or id of the image.
    pub snapshot: String,
}

/// Latest snapshot by (kitchen id, camera id, kind).
#[derive(Debug, Default)]
pub struct Evidence {
    latest: Mutex<HashMap<(String, String, String), Snapshot>>,
}

impl Evidence {
    /// Keeps `snapshot` as the latest of its camera and kind, unless a later one is kept.
    pub fn record(&self, kitchen_id: &str, camera_id: &str, kind: &str, ts: u64, snapshot: &str) {
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (kitchen_id.to_owned(), camera_id.to_owned(), kind.to_owned());
        if latest.get(&key).is_some_and(|s| s.ts > ts) {
            return;
        }
        if latest.len() >= MAX_ENTRIES && !latest.contains_key(&key) {
            let mut times: Vec<u64> = latest.values().map(|s| s.ts).collect();
            let cut = MAX_ENTRIES / 10;
            times.select_nth_unstable(cut);
            let oldest = times[cut];
            latest.retain(|_, s| s.ts > oldest);
        }
        latest.insert(
            key,
            Snapshot {
                ts,
                snapshot: snapshot.to_owned(),
            },
        );
    }

    /// The latest snapshot of a camera for a kind; with no kind, the latest of any kind.
    pub fn latest(
        &self,
        kitchen_id: &str,
        camera_id: &str,
        kind: Option<&str>,
    ) -> Option<Snapshot> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match kind {
            Some(kind) => latest
                .get(&(kitchen_id.to_owned(), camera_id.to_owned(), kind.to_owned()))
                .cloned(),
            None => latest
                .iter()
                .filter(|((k, c, _), _)| k == kitchen_id && c == camera_id)
                .map(|(_, s)| s)
                .max_by_key(|s| s.ts)
                .cloned(),
        }
    }

    /// Entries kept now.
    pub fn len(&self) -> usize {
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_per_camera_and_kind() {
        let e = Evidence::default();
        e.record("K1", "C1", "rodent", 10, "a.jpg");
        e.record("K1", "C1", "rodent", 5, "late.jpg");
        e.record("K1", "C1", "smoking", 20, "b.jpg");
        e.record("K1", "C2", "rodent", 30, "c.jpg");
        let get = |kind| e.latest("K1", "C1", kind).map(|s| s.snapshot);
        assert_eq!(
            get(Some("rodent")).as_deref(),
            Some("a.jpg"),
            "an older one never wins"
        );
        assert_eq!(get(Some("smoking")).as_deref(), Some("b.jpg"));
        assert_eq!(get(None).as_deref(), Some("b.jpg"), "any kind: the latest");
        assert_eq!(e.latest("K9", "C1", None), None);
    }

    #[test]
    fn stays_bounded_by_dropping_the_oldest() {
        let e = Evidence::default();
        for i in 0..(MAX_ENTRIES as u64 + 1) {
            e.record("K", &i.to_string(), "rodent", i, "s");
        }
        assert!(e.len() <= MAX_ENTRIES);
        assert!(e.len() >= MAX_ENTRIES * 9 / 10 - 1);
        assert!(e.latest("K", "0", None).is_none(), "the oldest went first");
        assert!(e.latest("K", &MAX_ENTRIES.to_string(), None).is_some());
    }
}
