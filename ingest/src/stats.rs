//! Ingest counters and gauges.

use model::{Reason, Stream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// State of the MQTT connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected; retrying with backoff.
    Disconnected = 0,
    /// Connected, subscription not yet confirmed.
    Connected = 1,
    /// Subscribed: messages flow.
    Subscribed = 2,
}

impl ConnectionState {
    /// Every state, for metrics.
    pub const ALL: [ConnectionState; 3] = [
        ConnectionState::Disconnected,
        ConnectionState::Connected,
        ConnectionState::Subscribed,
    ];

    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connected => "connected",
            ConnectionState::Subscribed => "subscribed",
        }
    }
}

/// What ingest has seen, read by `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct IngestStats {
    messages: [AtomicU64; Stream::ALL.len()],
    deadletters: [AtomicU64; Reason::ALL.len()],
    deadletters_dropped: AtomicU64,
    state: AtomicU8,
    transitions: [AtomicU64; 3],
    backpressure_waits: AtomicU64,
    backpressure_micros: AtomicU64,
    acks: AtomicU64,
    deferred: AtomicU64,
    queue: std::sync::OnceLock<crossbeam_channel::Receiver<model::Ingested>>,
    input_log: std::sync::OnceLock<(
        std::sync::Arc<crate::input_log::LogStats>,
        std::sync::Arc<crate::input_log::Ledger>,
    )>,
    ever_subscribed: AtomicBool,
    /// Why the connection last failed, and when (epoch ms); cleared once subscribed.
    last_error: std::sync::Mutex<Option<(String, u64)>>,
}

impl IngestStats {
    pub(crate) fn watch_input_log(&self, log: &crate::InputLog) {
        let _ = self.input_log.set((log.stats(), log.ledger()));
    }
    /// The input log's counters and ledger, when it is on.
    pub fn input_log(
        &self,
    ) -> Option<&(
        std::sync::Arc<crate::input_log::LogStats>,
        std::sync::Arc<crate::input_log::Ledger>,
    )> {
        self.input_log.get()
    }
    pub(crate) fn message(&self, s: Stream) {
        self.messages[s as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn rejected(&self, r: Reason) {
        self.deadletters[r as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dropped_deadletters(&self, n: u64) {
        self.deadletters_dropped.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn set_state(&self, s: ConnectionState) {
        let old = self.state.swap(s as u8, Ordering::Relaxed);
        if old != s as u8 {
            self.transitions[s as usize].fetch_add(1, Ordering::Relaxed);
        }
        if s == ConnectionState::Subscribed {
            self.ever_subscribed.store(true, Ordering::Relaxed);
            *self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }
    pub(crate) fn failed(&self, why: String, at_ms: u64) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((why, at_ms));
    }
    /// Why the connection last failed and when (epoch ms), until it is subscribed again.
    pub fn last_error(&self) -> Option<(String, u64)> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    pub(crate) fn waited(&self, micros: u64) {
        self.backpressure_waits.fetch_add(1, Ordering::Relaxed);
        self.backpressure_micros
            .fetch_add(micros, Ordering::Relaxed);
    }
    pub(crate) fn acked(&self, n: u64) {
        self.acks.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn deferred(&self) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn watch_queue(&self, rx: crossbeam_channel::Receiver<model::Ingested>) {
        let _ = self.queue.set(rx);
    }

    /// Valid messages received on a stream.
    pub fn messages(&self, s: Stream) -> u64 {
        self.messages[s as usize].load(Ordering::Relaxed)
    }
    /// Rejected messages for a reason.
    pub fn deadletters(&self, r: Reason) -> u64 {
        self.deadletters[r as usize].load(Ordering::Relaxed)
    }
    /// Dead letters dropped from the full store (oldest first).
    pub fn deadletters_dropped(&self) -> u64 {
        self.deadletters_dropped.load(Ordering::Relaxed)
    }
    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        match self.state.load(Ordering::Relaxed) {
            2 => ConnectionState::Subscribed,
            1 => ConnectionState::Connected,
            _ => ConnectionState::Disconnected,
        }
    }
    /// How often the connection entered a state.
    pub fn transitions(&self, s: ConnectionState) -> u64 {
        self.transitions[s as usize].load(Ordering::Relaxed)
    }
    /// Times the event loop waited for room in the queue, and the total wait in seconds.
    pub fn backpressure(&self) -> (u64, f64) {
        (
            self.backpressure_waits.load(Ordering::Relaxed),
            self.backpressure_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
    /// QoS 1 messages acknowledged to the broker.
    pub fn acks(&self) -> u64 {
        self.acks.load(Ordering::Relaxed)
    }
    /// Messages left unacknowledged during shutdown (the broker redelivers them).
    pub fn deferred_total(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }
    /// Events waiting in the queue to the dataflow, and its capacity.
    pub fn queue(&self) -> (u64, u64) {
        self.queue.get().map_or((0, 0), |rx| {
            (rx.len() as u64, rx.capacity().unwrap_or(0) as u64)
        })
    }
    /// Whether the subscription is live now.
    pub fn is_subscribed(&self) -> bool {
        self.state() == ConnectionState::Subscribed
    }
}
