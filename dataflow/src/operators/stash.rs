//! Records held until the frontier passes their time, by time.
//!
//! An operator that handles records in time order holds everything ahead of its frontier; in
//! a replay that is every event of a second of event time (30 000 at 100 000 elevators). A
//! container that arrives with records of one time is kept as it came, so holding costs no
//! copy and no growing list per time (whose reallocation, moving a second's worth of events
//! into fresh pages again and again, once took a seventh of a replay's time). A container of
//! several times is split by time, each record in the order it came.

use std::collections::BTreeMap;

/// Records of type `D` by time, in arrival order within a time.
pub(crate) struct Stash<D> {
    by_time: BTreeMap<u64, Vec<Vec<D>>>,
}

impl<D> Default for Stash<D> {
    fn default() -> Self {
        Stash {
            by_time: BTreeMap::new(),
        }
    }
}

impl<D> Stash<D> {
    /// Holds `container`'s records, `time` telling each one's.
    pub(crate) fn hold(&mut self, container: Vec<D>, time: impl Fn(&D) -> u64) {
        let Some(first) = container.first().map(&time) else {
            return;
        };
        if container.iter().all(|d| time(d) == first) {
            self.by_time.entry(first).or_default().push(container);
            return;
        }
        let mut split: BTreeMap<u64, Vec<D>> = BTreeMap::new();
        for d in container {
            split.entry(time(&d)).or_default().push(d);
        }
        for (t, records) in split {
            self.by_time.entry(t).or_default().push(records);
        }
    }

    /// The earliest time held.
    pub(crate) fn first_time(&self) -> Option<u64> {
        self.by_time.keys().next().copied()
    }

    /// The records of the earliest time, in arrival order, if that time is before `f`.
    pub(crate) fn pop_before(&mut self, f: u64) -> Option<(u64, impl Iterator<Item = D> + use<D>)> {
        let entry = self.by_time.first_entry().filter(|e| *e.key() < f)?;
        let t = *entry.key();
        Some((t, entry.remove().into_iter().flatten()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_by_time_in_the_order_they_came() {
        let mut stash = Stash::default();
        stash.hold(vec![(1, 'a'), (1, 'b')], |r| r.0);
        stash.hold(vec![(2, 'c'), (1, 'd'), (2, 'e')], |r| r.0);
        stash.hold(Vec::new(), |r: &(u64, char)| r.0);
        stash.hold(vec![(1, 'f')], |r| r.0);
        assert_eq!(stash.first_time(), Some(1));
        assert!(stash.pop_before(1).is_none());
        let (t, records) = stash.pop_before(2).unwrap();
        assert_eq!(
            (t, records.map(|r| r.1).collect::<String>()),
            (1, "abdf".into())
        );
        assert!(stash.pop_before(2).is_none());
        let (t, records) = stash.pop_before(u64::MAX).unwrap();
        assert_eq!(
            (t, records.map(|r| r.1).collect::<String>()),
            (2, "ce".into())
        );
        assert_eq!(stash.first_time(), None);
    }
}
