//! Records handled with the rules and reference data in force at their time.
//!
//! A record waits until the version input (rule sets, reference data: broadcast from worker 0)
//! has passed its time, then meets the state of the version in force then. Every worker of
//! every process therefore handles a record alike, however late a change reached it. State:
//! the stash of records ahead of the version frontier, and the states no pending record can
//! still need are forgotten.

use super::Held;
use super::conditions::RuleSetVersion;
use super::stash::Stash;
use std::collections::BTreeMap;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator as _;

/// How many results are given on at once.
const CHUNK: usize = 1024;

/// `logic` over each record of `input` with the state in force at its time: `initial` until a
/// version's `update` (given the version and the state it replaces) returns a new one.
pub fn at_version<'scope, D, R, S>(
    input: StreamVec<'scope, u64, (D, u64)>,
    versions: StreamVec<'scope, u64, RuleSetVersion>,
    name: &str,
    initial: S,
    mut update: impl FnMut(&RuleSetVersion, &S) -> Option<S> + 'static,
    mut logic: impl FnMut(&S, D, u64, &mut Vec<R>) + 'static,
) -> StreamVec<'scope, u64, R>
where
    D: Clone + 'static,
    R: Clone + 'static,
    S: 'static,
{
    input.binary_frontier(versions, Pipeline, Pipeline, name, move |_cap, _info| {
        let mut cap = Held::default();
        let mut stash: Stash<(D, u64)> = Stash::default();
        // States by activation time; before the first, `initial`.
        let mut known: BTreeMap<u64, S> = BTreeMap::new();
        // Given on in chunks and reused: a second of a replay's events at once would otherwise
        // grow a list of their results to the size of the second, again at every second.
        let mut out = Vec::new();
        move |(input, input_frontier), (versions, versions_frontier), output| {
            versions.for_each(|_cap, data| {
                for v in data.drain(..) {
                    let before = known
                        .range(..=v.activation)
                        .next_back()
                        .map_or(&initial, |(_, s)| s);
                    if let Some(next) = update(&v, before) {
                        known.insert(v.activation, next);
                    }
                }
            });
            input.for_each_stamp(|incap, data| {
                cap.keep(&incap);
                for batch in data {
                    stash.hold(std::mem::take(batch), |(_, t)| *t);
                }
            });
            let first = |f: &timely::progress::frontier::MutableAntichain<u64>| {
                f.frontier().first().copied().unwrap_or(u64::MAX)
            };
            let f = first(versions_frontier);
            while let Some((t, records)) = stash.pop_before(f) {
                let state = known.range(..=t).next_back().map_or(&initial, |(_, s)| s);
                for (d, _) in records {
                    logic(state, d, t, &mut out);
                    if out.len() >= CHUNK
                        && let Some(c) = cap.get()
                    {
                        output.session(c).give_iterator(out.drain(..));
                    }
                }
            }
            if let Some(c) = cap.get()
                && !out.is_empty()
            {
                output.session(c).give_iterator(out.drain(..));
            }
            // States no record can still need go (a record arrives at or after its input's
            // frontier).
            let oldest = stash.first_time().unwrap_or(u64::MAX);
            let keep_from = oldest.min(first(input_frontier)).min(f);
            if let Some((&keep, _)) = known.range(..=keep_from).next_back() {
                known = known.split_off(&keep);
            }
            cap.release_to(stash.first_time());
        }
    })
}
