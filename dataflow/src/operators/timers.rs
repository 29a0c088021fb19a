//! Timers due at frontier times, kept per time.
//!
//! Many groups' timers fall on the same tick (timers are tick-floored, and a `for` or an
//! absence timeout starts at frames that arrive together), so a heap ordered by
//! `(time, key)` spends its time comparing key strings. Kept as one list of keys per time,
//! a push and a pop touch only the ordered map of times. Within a time, keys come out in no
//! particular order: each group's timers are independent of the others'.

use std::collections::BTreeMap;

/// Keys whose timers are due at each time. An entry may be stale: the caller checks, when it
/// comes out, whether the key still wants it (as with a lazy heap).
#[derive(Debug)]
pub(crate) struct Timers<K> {
    due: BTreeMap<u64, Vec<K>>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            due: BTreeMap::new(),
        }
    }
}

impl<K> Timers<K> {
    /// Queues `key` at `t`.
    pub fn push(&mut self, t: u64, key: K) {
        self.due.entry(t).or_default().push(key);
    }

    /// The earliest time anything is queued at.
    pub fn next(&self) -> Option<u64> {
        self.due.first_key_value().map(|(t, _)| *t)
    }

    /// Takes one key of the earliest time.
    pub fn pop(&mut self) -> Option<(u64, K)> {
        let mut first = self.due.first_entry()?;
        let t = *first.key();
        let key = first.get_mut().pop();
        if first.get().is_empty() {
            first.remove();
        }
        key.map(|k| (t, k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_by_time_each_once() {
        let mut timers = Timers::default();
        for (t, k) in [(300, "c"), (100, "a"), (300, "d"), (200, "b"), (100, "e")] {
            timers.push(t, k);
        }
        assert_eq!(timers.next(), Some(100));
        let mut out = Vec::new();
        while let Some((t, k)) = timers.pop() {
            out.push((t, k));
        }
        out.sort();
        assert_eq!(
            out,
            [(100, "a"), (100, "e"), (200, "b"), (300, "c"), (300, "d")]
        );
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn times_come_out_in_order() {
        let mut timers = Timers::default();
        for (t, k) in [(300, 1), (100, 2), (200, 3), (100, 4)] {
            timers.push(t, k);
        }
        let times: Vec<u64> = std::iter::from_fn(|| timers.pop().map(|(t, _)| t)).collect();
        assert_eq!(times, [100, 100, 200, 300]);
    }
}
