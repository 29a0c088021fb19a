//! Signals between the processes of a cluster, beside the data: how far process 0's alert
//! journal is, so that every process can tell which of the messages in its own input log are
//! accounted for (docs/cluster.md, "What a restart keeps").
//!
//! Any thread of a process may [`Signals::send`]; the process's first worker feeds what was
//! sent into a small dataflow of its own that broadcasts it to every worker of every process,
//! and each process's first worker hands what arrives to the process's listener. Timely keeps
//! the order of what one worker sends to another, so a process hears another's signals in the
//! order they were sent. The dataflow's time never moves: signals act when they arrive, not at
//! a frontier, and it holds nothing.

use crate::checkpoint::Checkpoints;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use timely::dataflow::InputHandleVec;
use timely::dataflow::operators::Inspect;
use timely::dataflow::operators::vec::{Broadcast, Input as _};
use timely::worker::Worker;

/// What one process tells every process (itself included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// Process 0's alert journal holds every condition before this event time.
    Journaled(u64),
    /// Process 0 asks every process for a checkpoint at this time.
    Ask(u64),
    /// Process 0 lets the others move their input up to this time.
    Grant(u64),
    /// A process has every part of its checkpoint at `at` (process 0 then lets the input go on).
    Took { process: usize, at: u64 },
    /// A process's checkpoint at `at` is on its disk.
    Wrote { process: usize, at: u64 },
    /// A process's replay mark on disk names its checkpoint at `at`.
    Marked { process: usize, at: u64 },
    /// At start: the checkpoints a process could restore (the cluster restores the newest
    /// that every process holds).
    Holds { process: usize, at: Vec<u64> },
}

/// Hears every signal of the cluster, on the process's first worker.
pub type SignalFn = Box<dyn Fn(Signal) + Send + Sync>;

/// One process's way in and out.
pub struct Signals {
    tx: crossbeam_channel::Sender<Signal>,
    rx: crossbeam_channel::Receiver<Signal>,
    listener: SignalFn,
}

impl Signals {
    /// Signals heard by `listener`.
    pub fn new(listener: SignalFn) -> Arc<Signals> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Arc::new(Signals { tx, rx, listener })
    }

    /// Sends `signal` to every process, from any thread.
    pub fn send(&self, signal: Signal) {
        let _ = self.tx.send(signal);
    }
}

/// A worker's end of the signals' dataflow.
pub(crate) struct Relay {
    input: InputHandleVec<u64, Signal>,
    /// On the process's first worker only: it sends for the process and hears for it.
    signals: Option<Arc<Signals>>,
}

impl Relay {
    /// Builds the signals' dataflow on `worker`; `first_here`: the process's first worker.
    /// The checkpoints (if any) hear the signals first, then the process's listener.
    pub(crate) fn build(
        worker: &mut Worker,
        signals: &Arc<Signals>,
        checkpoints: Option<Arc<Checkpoints>>,
        first_here: bool,
    ) -> Relay {
        let heard = first_here.then(|| signals.clone());
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Signal>();
            stream.broadcast().inspect(move |s| {
                if let Some(h) = &heard {
                    if let Some(ck) = &checkpoints {
                        ck.hear(s);
                    }
                    (h.listener)(s.clone());
                }
            });
            input
        });
        Relay {
            input,
            signals: first_here.then(|| signals.clone()),
        }
    }

    /// Sends what this process has to say (the caller steps the worker).
    pub(crate) fn pump(&mut self) {
        if let Some(s) = &self.signals {
            let mut sent = false;
            for signal in s.rx.try_iter() {
                self.input.send(signal);
                sent = true;
            }
            if sent {
                self.input.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_signal_reaches_the_process_once_through_its_first_worker() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let signals = Signals::new(Box::new({
            let heard = heard.clone();
            move |s| heard.lock().unwrap().push(s)
        }));
        signals.send(Signal::Journaled(5));
        signals.send(Signal::Journaled(7));
        let (s, h) = (signals.clone(), heard.clone());
        timely::execute(timely::Config::process(2), move |worker| {
            let mut relay = Relay::build(worker, &s, None, worker.index() == 0);
            while h.lock().unwrap().len() < 2 {
                relay.pump();
                worker.step();
            }
        })
        .unwrap()
        .join();
        assert_eq!(
            *heard.lock().unwrap(),
            [Signal::Journaled(5), Signal::Journaled(7)]
        );
    }
}
