//! Tumbling windows in event-time order: each key's inputs are folded, in time order once the
//! frontier has passed them, into the window their time falls in; a window is emitted (as
//! `(key, window start, aggregate)`) when the frontier passes its end, then forgotten.
//!
//! State: the stash of inputs ahead of the frontier (bounded by the lateness), the open
//! windows (at most lateness / width + 1 per key), and one small carry per key that lets a
//! window see transitions from the previous one (e.g. an elevator starting to move).

use crate::checkpoint::Part;
use crate::operators::Held;
use differential_dataflow::ExchangeData;
use differential_dataflow::hashable::Hashable;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// An aggregate over one window (kept in checkpoints, so serializable).
pub trait Window: Default + Clone + Serialize + DeserializeOwned + 'static {
    /// What one input contributes.
    type In: timely::ExchangeData + Clone;
    /// Per-key state carried from window to window.
    type Carry: Default + Clone + Serialize + DeserializeOwned + 'static;
    /// Folds one input at time `t`.
    fn add(&mut self, carry: &mut Self::Carry, t: u64, input: &Self::In);
}

/// Extension trait for streams of `(key, time, input)`.
pub trait Tumbling<'scope, K, W: Window> {
    /// Windows of `width_ms` per key, emitted as they close. With a checkpoint `part`, the
    /// open windows and carries are given at each checkpoint and restored at start, so a
    /// window open at a stop closes with all of its inputs.
    fn tumbling(self, width_ms: u64, part: Option<Part>) -> StreamVec<'scope, u64, (K, u64, W)>;
}

/// What a checkpoint keeps: the open windows by start, and the carries.
type Saved<K, W> = (Vec<(u64, Vec<(K, W)>)>, Vec<(K, <W as Window>::Carry)>);

impl<'scope, K, W> Tumbling<'scope, K, W> for StreamVec<'scope, u64, (K, u64, W::In)>
where
    K: ExchangeData + Hash + Eq,
    W: Window,
{
    fn tumbling(self, width_ms: u64, part: Option<Part>) -> StreamVec<'scope, u64, (K, u64, W)> {
        let width = width_ms.max(1);
        let exchange = Exchange::new(|(k, _, _): &(K, u64, W::In)| k.hashed());
        self.unary_frontier(exchange, "Tumbling", move |init, _info| {
            let mut cap = Held::default();
            let mut stash: BTreeMap<u64, Vec<(K, W::In)>> = BTreeMap::new();
            let mut open: BTreeMap<u64, HashMap<K, W>> = BTreeMap::new();
            let mut carry: HashMap<K, W::Carry> = HashMap::new();
            let mut out: Vec<(K, u64, W)> = Vec::new();
            if let Some((at, (windows, carries))) =
                part.as_ref().and_then(|p| p.restored::<Saved<K, W>>())
            {
                // The restored windows close at or after `at`.
                cap = Held::at(init.delayed(&at));
                open = windows
                    .into_iter()
                    .map(|(start, ws)| (start, ws.into_iter().collect()))
                    .collect();
                carry = carries.into_iter().collect();
            }
            move |(input, frontier), output| {
                input.for_each_stamp(|incap, data| {
                    cap.keep(&incap);
                    for batch in data {
                        for (k, t, v) in batch.drain(..) {
                            stash.entry(t).or_default().push((k, v));
                        }
                    }
                });
                let f = frontier.frontier().first().copied().unwrap_or(u64::MAX);
                while let Some(entry) = stash.first_entry() {
                    if *entry.key() >= f {
                        break;
                    }
                    let t = *entry.key();
                    let start = t - t % width;
                    let windows = open.entry(start).or_default();
                    for (k, v) in entry.remove() {
                        let c = carry.entry(k.clone()).or_default();
                        windows.entry(k).or_default().add(c, t, &v);
                    }
                }
                // A closed input (a stop, the end of a replay) would close every window at
                // once, cut short: none is emitted then (checkpoints keep them for the next
                // start), and nothing is owed any more.
                if f == u64::MAX {
                    open.clear();
                    cap.release_to(None);
                    return;
                }
                while let Some(entry) = open.first_entry() {
                    let start = *entry.key();
                    if start.saturating_add(width) > f {
                        break;
                    }
                    out.extend(entry.remove().into_iter().map(|(k, w)| (k, start, w)));
                }
                if let Some(c) = cap.get()
                    && !out.is_empty()
                {
                    output.session(c).give_iterator(out.drain(..));
                }
                if let Some(p) = part.as_ref().filter(|p| p.due(f)) {
                    let windows: Vec<(u64, Vec<(K, W)>)> = open
                        .iter()
                        .map(|(s, ws)| {
                            (*s, ws.iter().map(|(k, w)| (k.clone(), w.clone())).collect())
                        })
                        .collect();
                    let carries: Vec<(K, W::Carry)> =
                        carry.iter().map(|(k, c)| (k.clone(), c.clone())).collect();
                    p.give::<Saved<K, W>>(f, &(windows, carries));
                }
                let next = stash
                    .keys()
                    .next()
                    .copied()
                    .into_iter()
                    .chain(open.keys().next().copied())
                    .min();
                cap.release_to(next);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::{Inspect, Probe};

    #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sum {
        n: u32,
        total: i64,
        /// Rises since the previous input of the key, across windows.
        rises: u32,
    }

    impl Window for Sum {
        type In = i64;
        type Carry = Option<i64>;
        fn add(&mut self, last: &mut Option<i64>, _t: u64, v: &i64) {
            self.n += 1;
            self.total += v;
            if last.is_some_and(|l| *v > l) {
                self.rises += 1;
            }
            *last = Some(*v);
        }
    }

    fn run(input: Vec<(u32, u64, i64)>, close_at: u64) -> Vec<(u32, u64, Sum)> {
        timely::execute_directly(move |worker| {
            let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let sink = seen.clone();
            let (mut handle, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (handle, stream) = scope.new_input::<(u32, u64, i64)>();
                let (probe, _) = Tumbling::<u32, Sum>::tumbling(stream, 10, None)
                    .inspect(move |x: &(u32, u64, Sum)| sink.borrow_mut().push(x.clone()))
                    .probe();
                (handle, probe)
            });
            for x in input {
                handle.send(x);
            }
            handle.advance_to(close_at);
            while probe.less_than(&close_at) {
                worker.step();
            }
            let mut v = seen.borrow().clone();
            v.sort_by_key(|(k, s, _)| (*k, *s));
            v
        })
    }

    #[test]
    fn folds_in_time_order_and_emits_closed_windows_only() {
        // Out of order; the carry sees 1 → 3 → 2 → 5 in time order.
        let out = run(
            vec![(1, 12, 2), (1, 3, 1), (1, 8, 3), (1, 25, 5), (2, 4, 7)],
            20,
        );
        assert_eq!(
            out,
            vec![
                (
                    1,
                    0,
                    Sum {
                        n: 2,
                        total: 4,
                        rises: 1
                    }
                ),
                (
                    1,
                    10,
                    Sum {
                        n: 1,
                        total: 2,
                        rises: 0
                    }
                ),
                (
                    2,
                    0,
                    Sum {
                        n: 1,
                        total: 7,
                        rises: 0
                    }
                ),
            ]
        );
        // Window [20, 30) is still open at frontier 20.
        let later = run(vec![(1, 12, 2), (1, 3, 1), (1, 8, 3), (1, 25, 5)], 30);
        assert_eq!(
            later.last().unwrap(),
            &(
                1,
                20,
                Sum {
                    n: 1,
                    total: 5,
                    rises: 1
                }
            )
        );
    }
}
