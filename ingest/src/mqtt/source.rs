//! The event loop: connect, subscribe, decode, dead-letter, queue, acknowledge.

use super::acks::{Acker, ReadyAck};
use super::config::MqttConfig;
use crate::deadletter::DeadLetters;
use crate::input_log::{Full, InputLog};
use crate::stats::{ConnectionState, IngestStats};
use crate::{IngestError, broker};
use model::time::now_ms;
use model::{Decoder, DecoderConfig, Ingested};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeReasonCode,
};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What a dataflow worker calls with the sequence numbers it handed to its input, each with
/// the event time it entered at.
pub type HandedFn = Box<dyn FnMut(&[(u64, u64)]) + Send>;

/// The largest packet MQTT can carry (its remaining length's maximum). The client takes any
/// packet a broker can deliver: one it refused would drop the connection, and the broker would
/// deliver the same message again on reconnecting, for ever. An oversized payload reaches the
/// decoder instead, which dead-letters it as `too_large` and lets it be acknowledged; the
/// broker's `message_size_limit` is what bounds the memory one message takes.
pub const MQTT_MAX_PACKET: usize = 268_435_455;

/// A connection that lasted this long was healthy: the next failure starts the backoff anew.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Called with every event taken (decoded, not a duplicate), and when it was received: what
/// alerts want to know of events besides conditions is kept by whoever taps the stream.
pub type Tap = Arc<dyn Fn(&model::Event, u64) + Send + Sync>;

/// A running MQTT ingest.
pub struct Ingest {
    rx: crossbeam_channel::Receiver<Ingested>,
    acker: Arc<Acker>,
    input_log: Option<Arc<InputLog>>,
    stats: Arc<IngestStats>,
    client: AsyncClient,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    ack_task: JoinHandle<()>,
}

struct Loop {
    client: AsyncClient,
    filter: String,
    /// `{prefix}notify/`: citywatch's own notifications and the units' acks, which the
    /// alerts stage handles; not device input.
    notify: String,
    decoder: Decoder,
    tx: crossbeam_channel::Sender<Ingested>,
    deadletters: Arc<DeadLetters>,
    stats: Arc<IngestStats>,
    acker: Arc<Acker>,
    backoff: (Duration, Duration),
    tap: Option<Tap>,
    complaint_log: Option<Arc<crate::ComplaintLog>>,
    input_log: Option<Arc<InputLog>>,
}

impl Ingest {
    /// Starts the embedded broker if configured, then connects and subscribes in the
    /// background. Must be called inside a tokio runtime. With an input log, a message is
    /// acknowledged once the log has it on disk; without, once the dataflow has taken it.
    pub fn start(
        config: &MqttConfig,
        deadletters: Arc<DeadLetters>,
        complaint_log: Option<Arc<crate::ComplaintLog>>,
        input_log: Option<Arc<InputLog>>,
        tap: Option<Tap>,
    ) -> Result<Ingest, IngestError> {
        let (host, port) = config.endpoint()?;
        let max_packet = MQTT_MAX_PACKET;
        if config.is_embedded() {
            broker::start_embedded(
                config.embedded_broker_addr,
                config.embedded_broker_users.as_deref(),
                broker::MAX_PAYLOAD_BYTES,
            )?;
        }
        let mut options = MqttOptions::new(config.client_id.clone(), host, port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(config.keep_alive_secs.max(5)))
            .set_max_packet_size(max_packet, max_packet);
        if let Some(user) = &config.username {
            options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
        }
        options.set_transport(config.transport()?);
        // The request channel carries our acks; it is sized so acks never wait for room.
        let (client, eventloop) = AsyncClient::new(options, 4096);
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.max(1));
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let acker = Arc::new(Acker::new(ready_tx));
        if let Some(log) = &input_log {
            let acker = acker.clone();
            log.start(Box::new(move |acks| acker.handed(acks)))
                .map_err(|e| IngestError::InputLog(e.to_string()))?;
        }
        let stats = Arc::new(IngestStats::default());
        stats.watch_queue(rx.clone());
        if let Some(log) = &input_log {
            stats.watch_input_log(log);
        }
        let (stop, stop_rx) = watch::channel(false);
        let decoder = Decoder::new(DecoderConfig {
            prefix: config.prefix.clone(),
            max_payload_bytes: config.max_payload_bytes,
            ..DecoderConfig::default()
        });
        let looper = Loop {
            client: client.clone(),
            filter: config.filter(),
            notify: format!("{}notify/", config.prefix),
            decoder,
            tx,
            deadletters,
            stats: stats.clone(),
            acker: acker.clone(),
            backoff: (
                Duration::from_millis(config.reconnect_min_ms.max(1)),
                Duration::from_millis(config.reconnect_max_ms.max(1)),
            ),
            tap,
            complaint_log,
            input_log: input_log.clone(),
        };
        let task = tokio::spawn(looper.run(eventloop, stop_rx));
        let ack_task = tokio::spawn(send_acks(
            client.clone(),
            acker.clone(),
            stats.clone(),
            ready_rx,
        ));
        Ok(Ingest {
            rx,
            acker,
            input_log,
            stats,
            client,
            stop,
            task,
            ack_task,
        })
    }

    /// The queue of decoded events, for the dataflow's sources.
    pub fn receiver(&self) -> crossbeam_channel::Receiver<Ingested> {
        self.rx.clone()
    }

    /// Makes, for each dataflow worker, what it calls once events are in its input.
    /// With an input log the numbers are the log's and go to its ledger; without, they are
    /// acknowledgements, released now.
    pub fn handed_factory(&self) -> impl Fn() -> HandedFn + Send + Sync + 'static {
        let acker = self.acker.clone();
        let ledger = self.input_log.as_ref().map(|l| l.ledger());
        move || match ledger.clone() {
            Some(ledger) => Box::new(move |placed: &[(u64, u64)]| ledger.placed(placed)),
            None => {
                let acker = acker.clone();
                let mut seqs = Vec::new();
                Box::new(move |placed: &[(u64, u64)]| {
                    seqs.clear();
                    seqs.extend(placed.iter().map(|p| p.0));
                    acker.handed(&seqs)
                })
            }
        }
    }

    /// Ingest statistics.
    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    /// First half of a clean shutdown: stop taking new messages (the broker keeps and
    /// redelivers what it sends from now on). Then stop the dataflow, which drains the queue.
    pub fn stop_intake(&self) {
        let _ = self.stop.send(true);
    }

    /// Second half: wait until every event the dataflow took is acknowledged (at most
    /// `timeout`), then disconnect.
    pub async fn finish(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acker.outstanding() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let the ack task hand its last acks to the client before the disconnect request.
        tokio::task::yield_now().await;
        if self.acker.outstanding() > 0 {
            tracing::warn!(
                outstanding = self.acker.outstanding(),
                "shutdown with unacknowledged messages; the broker will redeliver them"
            );
        }
        let _ = self.client.disconnect().await;
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("mqtt event loop did not stop in time");
        }
        self.ack_task.abort();
    }
}

async fn send_acks(
    client: AsyncClient,
    acker: Arc<Acker>,
    stats: Arc<IngestStats>,
    mut ready: mpsc::UnboundedReceiver<ReadyAck>,
) {
    while let Some((generation, pkid, qos)) = ready.recv().await {
        if generation != acker.generation() {
            continue;
        }
        let mut publish = Publish::new("", qos, Vec::<u8>::new());
        publish.pkid = pkid;
        if client.ack(&publish).await.is_err() {
            return;
        }
        stats.acked(1);
    }
}

impl Loop {
    async fn run(self, mut eventloop: EventLoop, mut stop: watch::Receiver<bool>) {
        let mut backoff = self.backoff.0;
        let mut connected_at: Option<Instant> = None;
        let mut draining = false;
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                _ = stop.changed(), if !draining => {
                    draining = true;
                    tracing::info!("mqtt intake stopped; draining");
                    continue;
                }
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    // The backoff starts anew only after a healthy while, not at every
                    // ConnAck: a connection that fails at once (a refused subscription, a
                    // packet it cannot take) must not reconnect in a tight loop.
                    connected_at = Some(Instant::now());
                    self.acker.new_generation();
                    self.stats.set_state(ConnectionState::Connected);
                    tracing::info!(session_present = ack.session_present, "mqtt connected");
                    if let Err(e) = self
                        .client
                        .try_subscribe(self.filter.clone(), QoS::AtLeastOnce)
                    {
                        tracing::error!(error = %e, "cannot request subscription");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                    {
                        self.stats.set_state(ConnectionState::Subscribed);
                        tracing::info!(filter = %self.filter, "mqtt subscribed");
                    } else {
                        tracing::error!(filter = %self.filter, codes = ?ack.return_codes, "mqtt subscription refused");
                        self.stats.failed(
                            format!(
                                "subscription to {} refused by the broker (not authorised?)",
                                self.filter
                            ),
                            now_ms(),
                        );
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if draining => {
                    let _ = p;
                    self.stats.deferred();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => self.publish(p).await,
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    self.stats.set_state(ConnectionState::Disconnected);
                    tracing::info!("mqtt disconnected");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.set_state(ConnectionState::Disconnected);
                    if draining {
                        return;
                    }
                    if connected_at
                        .take()
                        .is_some_and(|t| t.elapsed() >= HEALTHY_AFTER)
                    {
                        backoff = self.backoff.0;
                    }
                    self.stats.failed(e.to_string(), now_ms());
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt connection lost");
                    tokio::select! {
                        _ = tokio::time::sleep(jitter(backoff)) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(self.backoff.1);
                }
            }
        }
    }

    async fn publish(&self, p: Publish) {
        let received_ms = now_ms();
        let seq = (p.qos != QoS::AtMostOnce).then(|| self.acker.register(p.pkid, p.qos));
        if p.topic.starts_with(&self.notify) {
            if let Some(seq) = seq {
                self.acker.handed(&[seq]);
            }
            return;
        }
        match self.decoder.decode(&p.topic, &p.payload, received_ms) {
            Ok(envelope) => {
                if p.dup
                    && let Some(log) = &self.input_log
                    && log.already_replayed(&p.topic, &p.payload)
                {
                    // Logged before the last stop and replayed at this start: taken once.
                    if let Some(seq) = seq {
                        self.acker.handed(&[seq]);
                    }
                    return;
                }
                self.stats.message(envelope.event.stream());
                if let Some(log) = &self.complaint_log
                    && matches!(
                        envelope.event.stream(),
                        model::Stream::ComplaintNew
                            | model::Stream::ComplaintStatus
                            | model::Stream::MarketResidue
                    )
                {
                    // On disk before it can be acknowledged (the decoder took it as UTF-8 JSON).
                    let payload = String::from_utf8_lossy(&p.payload);
                    if let Err(e) = log.append(&p.topic, &payload, received_ms) {
                        tracing::error!(error = %e, path = %log.path().display(), "cannot log a complaint: its deadline will not survive a restart");
                    }
                }
                if let Some(tap) = &self.tap {
                    tap(&envelope.event, received_ms);
                }
                let seq = match &self.input_log {
                    None => seq,
                    Some(log) => match self.log(log, &p, received_ms, seq).await {
                        Some(logged) => Some(logged),
                        // Stopping: not acknowledged, so the broker delivers it again.
                        None => return,
                    },
                };
                self.enqueue(Ingested { envelope, seq }).await;
            }
            Err(rejection) => {
                self.stats.rejected(rejection.reason);
                tracing::debug!(reason = %rejection.reason, message = %rejection.message, "payload rejected");
                let dropped = self
                    .deadletters
                    .put(&p.topic, &p.payload, &rejection, received_ms);
                self.stats.dropped_deadletters(dropped);
                // Kept in the dead-letter store: as safe as handed to the dataflow.
                if let Some(seq) = seq {
                    self.acker.handed(&[seq]);
                }
            }
        }
    }

    /// Logs a message, waiting while the log's writer is behind; its ack follows the sync.
    /// `None` when the log is closed (stopping).
    async fn log(
        &self,
        log: &InputLog,
        p: &Publish,
        received_ms: u64,
        ack: Option<u64>,
    ) -> Option<u64> {
        self.with_room(
            || match log.try_append(&p.topic, &p.payload, received_ms, ack) {
                Ok(seq) => Room::Taken(seq),
                Err(Full::Behind) => Room::Full,
                Err(Full::Closed) => Room::Gone,
            },
        )
        .await
    }

    /// Hands an event to the queue. When the queue is full the loop waits here (and counts
    /// the wait): unacknowledged QoS 1 messages then stay with the broker, which is the
    /// backpressure; memory stays bounded by the queue.
    async fn enqueue(&self, item: Ingested) {
        let mut item = Some(item);
        self.with_room(|| {
            let Some(i) = item.take() else {
                return Room::Gone;
            };
            match self.tx.try_send(i) {
                Ok(()) => Room::Taken(()),
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    item = Some(back);
                    Room::Full
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => Room::Gone,
            }
        })
        .await;
    }

    /// Tries `attempt` until it is taken or there is no one to take it, waiting a
    /// millisecond at a time while it is full; a wait that ended in taking is counted.
    async fn with_room<T>(&self, mut attempt: impl FnMut() -> Room<T>) -> Option<T> {
        let mut waited: Option<Instant> = None;
        loop {
            match attempt() {
                Room::Taken(t) => {
                    if let Some(start) = waited {
                        self.stats.waited(start.elapsed().as_micros() as u64);
                    }
                    return Some(t);
                }
                Room::Full => {
                    waited.get_or_insert_with(Instant::now);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Room::Gone => return None,
            }
        }
    }
}

/// What an attempt to hand something on found.
enum Room<T> {
    Taken(T),
    Full,
    /// Nobody will take it any more (stopping).
    Gone,
}

/// Up to 20 % random extra delay, so many clients do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos() as u64);
    d + d.mul_f64((nanos % 1000) as f64 / 5000.0)
}
