//! What feeds the dataflow: sources of decoded events, and the event-time frontier.

pub use model::Ingested;
use serde::{Deserialize, Serialize};

/// What a source had to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// Some events (maybe fewer than asked).
    Data,
    /// Nothing right now; ask again later.
    Idle,
    /// Nothing, ever again.
    Done,
}

/// One worker's supply of events. Each worker owns one; they may share an underlying queue.
pub trait Source: Send {
    /// Appends up to `max` events to `out` without blocking.
    fn pull(&mut self, out: &mut Vec<Ingested>, max: usize) -> Pulled;
    /// Called once the events with these sequence numbers are in the dataflow input, each
    /// with the event time it entered at: `(seq, time)`.
    fn handed(&mut self, seqs: &[(u64, u64)]) {
        let _ = seqs;
    }
    /// Whether it is still giving what a log kept from before the start: the frontier waits
    /// for the end of it, so every such event is judged at its own time.
    fn replaying(&self) -> bool {
        false
    }
}

/// Told the sequence numbers of events handed to the dataflow input, each with its time.
pub type HandedFn = Box<dyn FnMut(&[(u64, u64)]) + Send>;

/// A source over a queue shared by all workers.
pub struct ChannelSource {
    rx: crossbeam_channel::Receiver<Ingested>,
    on_handed: Option<HandedFn>,
}

impl ChannelSource {
    /// Reads from `rx`; reports handed-over sequence numbers to `on_handed`.
    pub fn new(rx: crossbeam_channel::Receiver<Ingested>, on_handed: Option<HandedFn>) -> Self {
        ChannelSource { rx, on_handed }
    }
}

impl Source for ChannelSource {
    fn pull(&mut self, out: &mut Vec<Ingested>, max: usize) -> Pulled {
        let before = out.len();
        while out.len() - before < max {
            match self.rx.try_recv() {
                Ok(item) => out.push(item),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return if out.len() > before {
                        Pulled::Data
                    } else {
                        Pulled::Done
                    };
                }
            }
        }
        if out.len() > before {
            Pulled::Data
        } else {
            Pulled::Idle
        }
    }

    fn handed(&mut self, seqs: &[(u64, u64)]) {
        if let Some(f) = self.on_handed.as_mut() {
            f(seqs);
        }
    }
}

/// One source until it is done, then another: what a log replays at start, then live input.
pub struct ChainSource {
    first: Option<Box<dyn Source>>,
    then: Box<dyn Source>,
}

impl ChainSource {
    pub fn new(first: Box<dyn Source>, then: Box<dyn Source>) -> Self {
        ChainSource {
            first: Some(first),
            then,
        }
    }
}

impl Source for ChainSource {
    fn pull(&mut self, out: &mut Vec<Ingested>, max: usize) -> Pulled {
        if let Some(first) = self.first.as_mut() {
            match first.pull(out, max) {
                Pulled::Done => self.first = None,
                pulled => return pulled,
            }
        }
        self.then.pull(out, max)
    }

    fn handed(&mut self, seqs: &[(u64, u64)]) {
        // What the first source gives carries the same log's numbers as live input (or none).
        self.then.handed(seqs);
    }

    fn replaying(&self) -> bool {
        self.first.is_some()
    }
}

/// A source over a fixed list of events (replay, tests, benchmarks).
pub struct VecSource {
    items: std::vec::IntoIter<Ingested>,
}

impl VecSource {
    /// Gives `items` in order, then reports `Done`.
    pub fn new(items: Vec<Ingested>) -> Self {
        VecSource {
            items: items.into_iter(),
        }
    }
}

impl Source for VecSource {
    fn pull(&mut self, out: &mut Vec<Ingested>, max: usize) -> Pulled {
        let before = out.len();
        out.extend(self.items.by_ref().take(max));
        if out.len() > before {
            Pulled::Data
        } else {
            Pulled::Done
        }
    }
}

/// What drives the frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// Live operation: the frontier follows the wall clock minus the lateness, so absence is
    /// detected even when every device is silent, and a device whose clock runs ahead cannot
    /// pull the frontier into the future.
    #[default]
    Wall,
    /// Replay: the frontier follows the newest event time seen minus the lateness.
    Event,
}

/// The input frontier of one worker: where events enter, and which are late.
#[derive(Debug, Clone)]
pub struct Frontier {
    tick_ms: u64,
    lateness_ms: u64,
    mode: ClockMode,
    epoch: u64,
}

impl Frontier {
    /// A frontier at time 0.
    pub fn new(tick_ms: u64, lateness_ms: u64, mode: ClockMode) -> Self {
        Frontier {
            tick_ms: tick_ms.max(1),
            lateness_ms,
            mode,
            epoch: 0,
        }
    }

    /// The current input time: every event enters at this time or later.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The differential time of an event at `time_ms`, and whether it is late (behind the
    /// frontier, so entered at the frontier instead).
    pub fn place(&self, time_ms: u64) -> (u64, bool) {
        let tick = time_ms - time_ms % self.tick_ms;
        if tick >= self.epoch {
            (tick, false)
        } else {
            (self.epoch, true)
        }
    }

    /// Where the frontier should be given the newest event time seen (by any worker) and the
    /// wall clock; `None` when it should stay.
    pub fn target(&self, newest_ms: u64, wall_ms: u64) -> Option<u64> {
        let lead = match self.mode {
            ClockMode::Wall => wall_ms,
            ClockMode::Event => newest_ms,
        };
        let t = lead.saturating_sub(self.lateness_ms);
        let t = t - t % self.tick_ms;
        (t > self.epoch).then_some(t)
    }

    /// The time just past `newest_ms`: advancing there closes every event seen so far.
    pub fn past(&self, newest_ms: u64) -> u64 {
        let t = newest_ms + self.tick_ms;
        (t - t % self.tick_ms).max(self.epoch)
    }

    /// Moves the frontier to `t` (never backwards).
    pub fn advance(&mut self, t: u64) {
        self.epoch = self.epoch.max(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_behind_the_frontier_are_late_and_enter_at_it() {
        let mut f = Frontier::new(100, 2000, ClockMode::Event);
        assert_eq!(f.place(12_345), (12_300, false));
        assert_eq!(f.target(12_345, 0), Some(10_300));
        f.advance(10_300);
        assert_eq!(f.place(10_300), (10_300, false));
        assert_eq!(f.place(10_299), (10_300, true));
        assert_eq!(f.target(12_345, 0), None);
        assert_eq!(f.past(12_345), 12_400);
    }

    #[test]
    fn wall_mode_follows_the_clock_not_the_devices() {
        let f = Frontier::new(100, 2000, ClockMode::Wall);
        assert_eq!(f.target(99_999_999, 50_050), Some(48_000));
    }
}
