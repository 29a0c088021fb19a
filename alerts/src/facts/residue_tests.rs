//! The recent pesticide-residue tests of each stall and goods, so that a hold (goods off sale
//! after a failed test, until a later test passes) is shown with the tests behind it
//! (`GET /api/v1/holds`). Tests are few (dozens a day per market); kept in the complaint log
//! too, so the history comes back at start.
//!
//! Bounded: at most [`MAX_KEYS`] stall-and-goods keys (the oldest forgotten first) and the
//! latest [`MAX_TESTS`] tests of each.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Stall-and-goods keys remembered at most.
pub const MAX_KEYS: usize = 100_000;

/// Tests remembered per stall and goods.
pub const MAX_TESTS: usize = 16;

/// One residue test as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord {
    pub ts: u64,
    /// Enzyme inhibition, %.
    pub inhibition_pct: f64,
    /// `pass` or `fail` (as reported, else from the inhibition).
    pub result: String,
}

/// The tests by key, and the keys in the order they came (the oldest forgotten first).
type ByKey = (HashMap<String, VecDeque<TestRecord>>, VecDeque<String>);

/// Recent tests by `market_id/stall_id/goods_code` (the residue rules' group).
#[derive(Debug, Default)]
pub struct ResidueTests {
    inner: Mutex<ByKey>,
}

impl ResidueTests {
    /// Remembers a test of `key` (one already remembered, same time and result, is not kept
    /// twice).
    pub fn record(&self, key: &str, test: TestRecord) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (by_key, order) = &mut *inner;
        if !by_key.contains_key(key) {
            if order.len() >= MAX_KEYS
                && let Some(oldest) = order.pop_front()
            {
                by_key.remove(&oldest);
            }
            order.push_back(key.to_owned());
        }
        let tests = by_key.entry(key.to_owned()).or_default();
        if tests.contains(&test) {
            return;
        }
        let at = tests.partition_point(|t| t.ts <= test.ts);
        tests.insert(at, test);
        if tests.len() > MAX_TESTS {
            tests.pop_front();
        }
    }

    /// The remembered tests of `key`, oldest first.
    pub fn of(&self, key: &str) -> Vec<TestRecord> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .get(key)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(ts: u64, result: &str) -> TestRecord {
        TestRecord {
            ts,
            inhibition_pct: if result == "fail" { 62.0 } else { 12.0 },
            result: result.into(),
        }
    }

    #[test]
    fn tests_are_kept_in_time_order_once_each_and_bounded() {
        let r = ResidueTests::default();
        r.record("M/S/cabbage", test(20, "fail"));
        r.record("M/S/cabbage", test(10, "fail"));
        r.record("M/S/cabbage", test(20, "fail"));
        r.record("M/S/spinach", test(5, "pass"));
        let times: Vec<u64> = r.of("M/S/cabbage").iter().map(|t| t.ts).collect();
        assert_eq!(times, [10, 20]);
        for ts in 100..100 + 2 * MAX_TESTS as u64 {
            r.record("M/S/cabbage", test(ts, "pass"));
        }
        let kept = r.of("M/S/cabbage");
        assert_eq!(kept.len(), MAX_TESTS);
        assert_eq!(kept.last().unwrap().ts, 100 + 2 * MAX_TESTS as u64 - 1);
        assert!(r.of("M/S/none").is_empty());
    }
}
