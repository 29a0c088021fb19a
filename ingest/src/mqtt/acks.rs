//! In-order acknowledgements.
//!
//! MQTT requires PUBACKs in the order the PUBLISHes arrived (and rumqttd disconnects a client
//! that breaks it), but events reach the dataflow through several workers. Each QoS 1 message
//! gets a sequence number on arrival; workers report the numbers they have handed to the
//! dataflow; an ack is released only when every earlier message has been handed over too.
//! Packet ids restart with each connection, so acks for a previous connection are dropped:
//! the broker redelivers those messages on the new one.

use rumqttc::QoS;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use tokio::sync::mpsc::UnboundedSender;

/// An ack ready to send: (connection generation, packet id, QoS).
pub(crate) type ReadyAck = (u64, u16, QoS);

struct Entry {
    generation: u64,
    pkid: u16,
    qos: QoS,
    handed: bool,
}

struct State {
    generation: u64,
    next_seq: u64,
    pending: BTreeMap<u64, Entry>,
}

pub(crate) struct Acker {
    state: Mutex<State>,
    ready: UnboundedSender<ReadyAck>,
}

impl Acker {
    pub(crate) fn new(ready: UnboundedSender<ReadyAck>) -> Acker {
        Acker {
            state: Mutex::new(State {
                generation: 0,
                next_seq: 0,
                pending: BTreeMap::new(),
            }),
            ready,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection: forget what the old one was owed.
    pub(crate) fn new_generation(&self) -> u64 {
        let mut s = self.lock();
        s.generation += 1;
        s.pending.clear();
        s.generation
    }

    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Registers an arriving message; returns its sequence number.
    pub(crate) fn register(&self, pkid: u16, qos: QoS) -> u64 {
        let mut s = self.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        let generation = s.generation;
        s.pending.insert(
            seq,
            Entry {
                generation,
                pkid,
                qos,
                handed: false,
            },
        );
        seq
    }

    /// Marks messages handed over and releases every ack now in order.
    pub(crate) fn handed(&self, seqs: &[u64]) {
        let mut s = self.lock();
        for seq in seqs {
            if let Some(e) = s.pending.get_mut(seq) {
                e.handed = true;
            }
        }
        let generation = s.generation;
        while let Some(first) = s.pending.first_entry() {
            if !first.get().handed {
                break;
            }
            let e = first.remove();
            if e.generation == generation {
                // The receiver lives as long as the ingest task; after that nothing is owed.
                let _ = self.ready.send((e.generation, e.pkid, e.qos));
            }
        }
    }

    /// Messages registered but not yet released.
    pub(crate) fn outstanding(&self) -> usize {
        self.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_acks_in_arrival_order_only() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let a = Acker::new(tx);
        let g = a.new_generation();
        let s: Vec<u64> = (1..=4)
            .map(|pkid| a.register(pkid, QoS::AtLeastOnce))
            .collect();
        a.handed(&[s[1], s[3]]);
        assert!(rx.try_recv().is_err(), "nothing before the first is handed");
        a.handed(&[s[0]]);
        assert_eq!(rx.try_recv().unwrap(), (g, 1, QoS::AtLeastOnce));
        assert_eq!(rx.try_recv().unwrap(), (g, 2, QoS::AtLeastOnce));
        assert!(rx.try_recv().is_err());
        a.handed(&[s[2]]);
        assert_eq!(rx.try_recv().unwrap().1, 3);
        assert_eq!(rx.try_recv().unwrap().1, 4);
        assert_eq!(a.outstanding(), 0);
    }

    #[test]
    fn a_new_connection_drops_acks_owed_to_the_old_one() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let a = Acker::new(tx);
        a.new_generation();
        let old = a.register(7, QoS::AtLeastOnce);
        let g2 = a.new_generation();
        let new = a.register(1, QoS::AtLeastOnce);
        a.handed(&[old, new]);
        assert_eq!(rx.try_recv().unwrap(), (g2, 1, QoS::AtLeastOnce));
        assert!(rx.try_recv().is_err());
    }
}
