//! How a worker's loop ends: a clean stop on the wall clock, or the end of a replay. Both
//! close every event taken, wait until the outputs at the end are handed on, and only then
//! close the inputs (the sinks publish nothing at a closed input).

use super::{advance, final_time, published};
use crate::build::Inputs;
use crate::checkpoint::Checkpoints;
use crate::feed::Frontier;
use crate::stats::Stats;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// What a worker's ending reads: its checkpoints, the stats that say what is published, the
/// probe at the dataflow's end and the flag that closes the sinks.
pub(super) struct Ending<'a> {
    pub ck: Option<&'a Arc<Checkpoints>>,
    pub stats: &'a Stats,
    pub probe: &'a ProbeHandle<u64>,
    pub closed: &'a AtomicBool,
    /// This process's index of the worker (checkpoint holds are per local worker).
    pub local: usize,
    pub conditions_on: bool,
    pub in_cluster: bool,
    /// Whether this worker's process publishes (in a cluster only process 0 does).
    pub publishes_here: bool,
    pub lateness_ms: u64,
}

/// Whether the loop goes on after a step of a stop.
pub(super) enum Stop {
    Waiting,
    Done,
}

impl Ending<'_> {
    /// One step of a clean stop on the wall clock, which journals everything it took and
    /// fires nothing the clock has not reached: the frontier moves past the newest event taken
    /// (within the lateness; a second more at most, for a device whose clock runs ahead), the
    /// outputs are published up to there, a last checkpoint is taken there, and only then do
    /// the inputs close. `began` is set at the first step: the end and when the stop began.
    pub(super) fn stop_step(
        &self,
        worker: &mut Worker,
        frontier: &mut Frontier,
        inputs: &mut Inputs,
        began: &mut Option<(u64, Instant)>,
    ) -> Stop {
        let (end, since) = *began.get_or_insert_with(|| {
            let end = final_time(self.ck, frontier.past(self.stats.newest_ms()));
            (end, Instant::now())
        });
        let patience = Duration::from_millis(self.lateness_ms + 1000);
        if frontier.epoch() < end && since.elapsed() < patience {
            worker.step_or_park(Some(Duration::from_millis(2)));
            return Stop::Waiting;
        }
        let _ = advance(frontier, inputs, self.ck, self.local, end, self.stats);
        // One process waits until the outputs at `end` are handed on (the sinks run on this
        // process's worker 0) and, with checkpoints, the last one is taken: the replay mark can
        // then move to it. Bounded: a lost peer of a cluster must not hold the stop for ever.
        // In a cluster a stop takes no checkpoint of its own (each process stops on its own).
        let done = || {
            !self.probe.less_than(&end)
                && (!self.publishes_here || published(self.stats, end, self.conditions_on))
                && (self.in_cluster || self.ck.is_none_or(|c| c.is_taken(end)))
        };
        while !done() && since.elapsed() < patience * 3 {
            worker.step_or_park(Some(Duration::from_millis(2)));
        }
        // What is not journaled by now the input log feeds again at the start.
        self.closed.store(true, Ordering::SeqCst);
        Stop::Done
    }

    /// The end of a replay: once every worker has fed its last event, every event seen is
    /// closed, so that the last snapshot includes them all.
    pub(super) fn finish_replay(
        &self,
        worker: &mut Worker,
        frontier: &mut Frontier,
        inputs: &mut Inputs,
        drained: &AtomicUsize,
        peers: usize,
    ) {
        drained.fetch_add(1, Ordering::SeqCst);
        while drained.load(Ordering::SeqCst) < peers {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        let end = final_time(self.ck, frontier.past(self.stats.newest_ms()));
        let _ = advance(frontier, inputs, self.ck, self.local, end, self.stats);
        while self.probe.less_than(&end)
            || !published(self.stats, end, self.conditions_on)
            || self.ck.is_some_and(|c| !c.is_taken(end))
        {
            worker.step();
        }
        self.closed.store(true, Ordering::SeqCst);
    }
}
