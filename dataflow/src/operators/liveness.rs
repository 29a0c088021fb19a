//! Liveness: which keys (elevators, cameras) were seen within the last `timeout` of event time.
//!
//! The firehose of observations (1 Hz frames) stays inside this operator; only changes leave
//! it: `+1` at the time a key comes online, `-1` at the time it goes offline (its last
//! observation plus the timeout, or an explicit "offline" observation). Observations are
//! handled in event-time order once the input frontier has passed them, so out-of-order input
//! within the lateness bound gives the same output as in-order input.
//!
//! State per key: its expiry and the deadline queued for it. The deadline queue holds at most
//! one live entry per online key, so memory is bounded by the number of keys, not the rate.

use super::stash::Stash;
use super::timers::Timers;
use crate::checkpoint::Part;
use crate::operators::Held;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use std::hash::Hash;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// An observation: the key, its event time, and whether it says "online" (`true`) or
/// announces going offline (`false`).
pub type Seen<K> = (K, u64, bool);

/// Extension trait turning a stream of observations into the collection of online keys.
pub trait Liveness<'scope, K: ExchangeData> {
    /// The collection of keys observed within the last `timeout_ms`.
    ///
    /// ```ignore
    /// let online = frames.map(|(id, t)| (id, t, true)).liveness(180_000, None);
    /// ```
    /// With a checkpoint `part`, its state is given at each checkpoint and restored at start
    /// (the keys online then come online again at the checkpoint's time).
    fn liveness(self, timeout_ms: u64, part: Option<Part>) -> VecCollection<'scope, u64, K, isize>;
}

#[derive(Debug, Clone, Copy)]
struct KeyState {
    expiry: u64,
    scheduled: u64,
}

impl<'scope, K> Liveness<'scope, K> for StreamVec<'scope, u64, Seen<K>>
where
    K: ExchangeData + Hash + Eq,
{
    fn liveness(self, timeout_ms: u64, part: Option<Part>) -> VecCollection<'scope, u64, K, isize> {
        let exchange = Exchange::new(|(k, _, _): &Seen<K>| k.hashed());
        self.unary_frontier(exchange, "Liveness", move |init, _info| {
            let mut cap = Held::default();
            let mut stash: Stash<Seen<K>> = Stash::default();
            let mut state: foldhash::HashMap<K, KeyState> = foldhash::HashMap::default();
            let mut deadlines: Timers<K> = Timers::default();
            let mut out: Vec<(K, u64, isize)> = Vec::new();
            if let Some((at, saved)) = part.as_ref().and_then(|p| p.restored::<Vec<(K, u64)>>()) {
                cap = Held::at(init.delayed(&at));
                restore(saved, at, &mut state, &mut deadlines, &mut out);
            }
            move |(input, frontier), output| {
                input.for_each_stamp(|incap, data| {
                    cap.keep(&incap);
                    for batch in data {
                        stash.hold(std::mem::take(batch), |(_, t, _)| *t);
                    }
                });
                let f = frontier.frontier().first().copied().unwrap_or(u64::MAX);
                loop {
                    let next_event = stash.first_time().filter(|t| *t < f);
                    let next_deadline = deadlines.next().filter(|t| *t < f);
                    match (next_event, next_deadline) {
                        (None, None) => break,
                        // A deadline at the same time as an observation goes first: offline at
                        // E then online again at E cancels out.
                        (Some(e), Some(d)) if d <= e => {
                            expire(&mut deadlines, &mut state, &mut out)
                        }
                        (None, Some(_)) => expire(&mut deadlines, &mut state, &mut out),
                        (Some(_), _) => {
                            let Some((t, batch)) = stash.pop_before(f) else {
                                break;
                            };
                            for (k, _, alive) in batch {
                                observe(
                                    k,
                                    t,
                                    alive,
                                    timeout_ms,
                                    &mut state,
                                    &mut deadlines,
                                    &mut out,
                                );
                            }
                        }
                    }
                }
                if let Some(c) = cap.get()
                    && !out.is_empty()
                {
                    output.session(c).give_iterator(out.drain(..));
                }
                if let Some(p) = part.as_ref().filter(|p| p.due(f)) {
                    let saved: Vec<(K, u64)> =
                        state.iter().map(|(k, s)| (k.clone(), s.expiry)).collect();
                    p.give(f, &saved);
                }
                let next = stash.first_time().into_iter();
                let next = next.chain(deadlines.next()).min();
                cap.release_to(next);
            }
        })
        .as_collection()
    }
}

/// The keys online at a checkpoint, with their expiry: online again from its time `at`.
fn restore<K: Hash + Eq + Ord + Clone>(
    saved: Vec<(K, u64)>,
    at: u64,
    state: &mut foldhash::HashMap<K, KeyState>,
    deadlines: &mut Timers<K>,
    out: &mut Vec<(K, u64, isize)>,
) {
    for (k, expiry) in saved {
        deadlines.push(expiry, k.clone());
        out.push((k.clone(), at, 1));
        state.insert(
            k,
            KeyState {
                expiry,
                scheduled: expiry,
            },
        );
    }
}

fn observe<K: Hash + Eq + Ord + Clone>(
    k: K,
    t: u64,
    alive: bool,
    timeout_ms: u64,
    state: &mut foldhash::HashMap<K, KeyState>,
    deadlines: &mut Timers<K>,
    out: &mut Vec<(K, u64, isize)>,
) {
    match (state.get_mut(&k), alive) {
        (Some(s), true) => s.expiry = s.expiry.max(t + timeout_ms),
        (Some(_), false) => {
            state.remove(&k);
            out.push((k, t, -1));
        }
        (None, true) => {
            let expiry = t + timeout_ms;
            state.insert(
                k.clone(),
                KeyState {
                    expiry,
                    scheduled: expiry,
                },
            );
            deadlines.push(expiry, k.clone());
            out.push((k, t, 1));
        }
        (None, false) => {}
    }
}

fn expire<K: Hash + Eq + Ord + Clone>(
    deadlines: &mut Timers<K>,
    state: &mut foldhash::HashMap<K, KeyState>,
    out: &mut Vec<(K, u64, isize)>,
) {
    let Some((d, k)) = deadlines.pop() else {
        return;
    };
    match state.get_mut(&k) {
        Some(s) if s.scheduled == d && s.expiry == d => {
            state.remove(&k);
            out.push((k, d, -1));
        }
        Some(s) if s.scheduled == d => {
            s.scheduled = s.expiry;
            deadlines.push(s.expiry, k);
        }
        // A deadline left behind by an explicit offline observation.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::{Inspect, Probe};

    /// Feeds `(key, time, alive)` observations, one input epoch per entry of `rounds`, and
    /// returns the consolidated output updates.
    fn run(rounds: Vec<(u64, Vec<Seen<u32>>)>, close_at: u64) -> Vec<(u32, u64, isize)> {
        timely::execute_directly(move |worker| {
            let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let sink = seen.clone();
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Seen<u32>>();
                let out = stream.liveness(10, None);
                let (probe, _) = out
                    .inner
                    .inspect(move |u: &(u32, u64, isize)| sink.borrow_mut().push(*u))
                    .probe();
                (input, probe)
            });
            for (epoch, data) in rounds {
                input.advance_to(epoch);
                for d in data {
                    input.send(d);
                }
            }
            input.advance_to(close_at);
            while probe.less_than(&close_at) {
                worker.step();
            }
            // What was emitted by the time the frontier reached `close_at`.
            let mut all = seen.borrow().clone();
            differential_dataflow::consolidation::consolidate_updates(&mut all);
            all
        })
    }

    #[test]
    fn online_until_timeout_after_last_observation() {
        let out = run(
            vec![(0, vec![(1, 0, true), (1, 5, true), (1, 12, true)])],
            100,
        );
        assert_eq!(out, vec![(1, 0, 1), (1, 22, -1)]);
    }

    #[test]
    fn gap_longer_than_timeout_goes_offline_and_back() {
        let out = run(vec![(0, vec![(1, 0, true), (1, 30, true)])], 100);
        assert_eq!(out, vec![(1, 0, 1), (1, 10, -1), (1, 30, 1), (1, 40, -1)]);
    }

    #[test]
    fn out_of_order_input_gives_the_in_order_result() {
        let in_order = run(
            vec![(0, vec![(7, 3, true), (7, 9, true), (7, 25, true)])],
            100,
        );
        let shuffled = run(
            vec![(0, vec![(7, 25, true), (7, 3, true), (7, 9, true)])],
            100,
        );
        assert_eq!(in_order, shuffled);
        assert_eq!(
            in_order,
            vec![(7, 3, 1), (7, 19, -1), (7, 25, 1), (7, 35, -1)]
        );
    }

    #[test]
    fn explicit_offline_ends_the_interval_at_once() {
        let out = run(
            vec![(0, vec![(2, 0, true), (2, 4, false), (2, 6, true)])],
            100,
        );
        assert_eq!(out, vec![(2, 0, 1), (2, 4, -1), (2, 6, 1), (2, 16, -1)]);
    }

    #[test]
    fn nothing_is_retracted_before_the_frontier_passes_the_expiry() {
        // Frontier stops at 15: the key seen at 0 expired at 10, the one seen at 8 has not.
        let out = run(vec![(0, vec![(1, 0, true), (2, 8, true)])], 15);
        assert_eq!(out, vec![(1, 0, 1), (1, 10, -1), (2, 8, 1)]);
    }

    #[test]
    fn matches_a_naive_recomputation_on_random_input() {
        // Oracle: a key is online at time t iff some "alive" observation lies in (t - 10, t]
        // after its last "offline" observation.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20 {
            let obs: Vec<Seen<u32>> = (0..60)
                .map(|_| ((next() % 3) as u32, next() % 80, next() % 8 != 0))
                .collect();
            let out = run(vec![(0, obs.clone())], 1000);
            for key in 0..3u32 {
                for t in 0..200u64 {
                    let mut online = false;
                    let mut expiry = 0u64;
                    let mut sorted: Vec<_> =
                        obs.iter().filter(|o| o.0 == key && o.1 <= t).collect();
                    sorted.sort_by_key(|o| o.1);
                    for o in sorted {
                        if online && expiry <= o.1 {
                            online = false;
                        }
                        if o.2 {
                            if !online {
                                online = true;
                                expiry = o.1 + 10;
                            } else {
                                expiry = expiry.max(o.1 + 10);
                            }
                        } else {
                            online = false;
                        }
                    }
                    let naive = online && expiry > t;
                    let inc: isize = out
                        .iter()
                        .filter(|u| u.0 == key && u.1 <= t)
                        .map(|u| u.2)
                        .sum();
                    assert_eq!(inc == 1, naive, "key {key} at {t}: {obs:?} -> {out:?}");
                    assert!(inc == 0 || inc == 1);
                }
            }
        }
    }
}
