//! The alerts as a stage of their own: condition snapshots go from the dataflow's worker into
//! a bounded queue, and one thread journals them (and hands them on), so a slow disk under
//! the journal slows the alerts, not the dataflow, until the queue is full; then the worker
//! waits (back-pressure, measured), and nothing is dropped.
//!
//! The queue keeps the snapshots' order, so the journal sees the changes in time order as
//! before. A clean stop closes it and waits until the thread has handled what it holds
//! ([`Stage::finish`]); what a crash leaves in it is fed again from the input log (the replay
//! mark follows the journal, not the queue).

use control::{ConditionsFn, ConditionsSnapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The queue's figures, for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    depth: AtomicU64,
    capacity: AtomicU64,
    waits: AtomicU64,
    waited_micros: AtomicU64,
}

impl QueueStats {
    /// Snapshots waiting to be journaled.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// How many snapshots the queue holds at most.
    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Times the dataflow waited for room, and for how long in all (seconds).
    pub fn waits(&self) -> (u64, f64) {
        (
            self.waits.load(Ordering::Relaxed),
            self.waited_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

/// The running stage.
pub struct Stage {
    tx: Mutex<Option<crossbeam_channel::Sender<ConditionsSnapshot>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<QueueStats>,
}

impl Stage {
    /// Starts the thread that hands each snapshot to `handle`, in order, with room for
    /// `capacity` snapshots waiting.
    pub fn start(capacity: usize, handle: ConditionsFn) -> Arc<Stage> {
        let capacity = capacity.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<ConditionsSnapshot>(capacity);
        let stats = Arc::new(QueueStats::default());
        stats.capacity.store(capacity as u64, Ordering::Relaxed);
        let thread = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("alerts".into())
                .spawn(move || {
                    for snapshot in rx {
                        handle(snapshot);
                        stats.depth.fetch_sub(1, Ordering::Relaxed);
                    }
                })
                .expect("spawning the alerts stage")
        };
        Arc::new(Stage {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            stats,
        })
    }

    /// What the dataflow calls: queues the snapshot, waiting for room when the queue is full.
    pub fn sender(self: &Arc<Self>) -> ConditionsFn {
        let stage = self.clone();
        Arc::new(move |snapshot| stage.send(snapshot))
    }

    fn send(&self, snapshot: ConditionsSnapshot) {
        let Some(tx) = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            tracing::warn!(
                as_of = snapshot.as_of,
                "alerts stage closed: snapshot not journaled (the input log feeds it again at the next start)"
            );
            return;
        };
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        let snapshot = match tx.try_send(snapshot) {
            Ok(()) => return,
            Err(crossbeam_channel::TrySendError::Full(s)) => s,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                self.stats.depth.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        self.stats.waits.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        if tx.send(snapshot).is_err() {
            self.stats.depth.fetch_sub(1, Ordering::Relaxed);
        }
        self.stats
            .waited_micros
            .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// The queue's figures.
    pub fn stats(&self) -> Arc<QueueStats> {
        self.stats.clone()
    }

    /// Closes the queue and waits until every snapshot in it is handled (at a clean stop,
    /// once the dataflow has published its last).
    pub fn finish(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(as_of: u64) -> ConditionsSnapshot {
        ConditionsSnapshot {
            as_of,
            ..ConditionsSnapshot::default()
        }
    }

    #[test]
    fn snapshots_are_handled_in_order_and_a_full_queue_makes_the_sender_wait() {
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stage = Stage::start(2, {
            let seen = seen.clone();
            Arc::new(move |s: ConditionsSnapshot| {
                // The journal is slow: each snapshot waits for the test to let it through.
                let _ = gate_rx.recv();
                seen.lock().unwrap().push(s.as_of);
            })
        });
        let send = stage.sender();
        let sender = std::thread::spawn(move || {
            for t in 1..=5 {
                send(snapshot(t));
            }
        });
        // Two in the queue (and one in the slow handler, once it has taken it): the sender
        // waits for room until the handler takes the next.
        while stage.stats().waits().0 < 1 {
            std::thread::yield_now();
        }
        assert!(stage.stats().depth() >= 3, "two queued, one waiting");
        for _ in 0..5 {
            gate_tx.send(()).unwrap();
        }
        sender.join().unwrap();
        stage.finish();
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(stage.stats().depth(), 0);
        assert_eq!(stage.stats().capacity(), 2);
    }
}
