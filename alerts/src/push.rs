//! MQTT push: notifications published with QoS 1 to a receiver's topic
//! (`cw/v1/notify/{receiver_id}`), confirmed by the broker's PUBACK; and the maintenance
//! units' answers on `cw/v1/notify/{unit}/ack`, which become alert actions.
//!
//! A PUBACK names only a packet id, so publishes are issued one at a time in order, and the
//! event loop pairs each outgoing publish with the delivery waiting for it. When the
//! connection drops, every waiting delivery is told to retry, and the client is built anew,
//! so nothing from the old connection is re-sent behind the outbox's back (the outbox is the
//! only retry mechanism; the idempotency key in every payload lets a unit drop a repeat).

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// Largest push message; grouped messages are cut to fit well below it (and below the
/// embedded broker's payload limit).
pub const MAX_PACKET_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Waiting {
    /// Publishes requested, not yet given a packet id by the event loop, in order.
    queued: VecDeque<Waiter>,
    /// Publishes sent, waiting for their PUBACK.
    sent: HashMap<u16, Waiter>,
}

impl Waiting {
    fn fail_all(&mut self, why: &str) {
        for w in self
            .queued
            .drain(..)
            .chain(self.sent.drain().map(|(_, w)| w))
        {
            let _ = w.send(Err(why.to_owned()));
        }
    }
}

/// An answer from a unit on `…/notify/{unit}/ack`: gets the unit segment, the topic and the
/// raw payload; returns whether the answer is settled (journaled, or refused for good) and
/// may be acknowledged to the broker. `false` leaves it with the broker, which sends it again.
pub type AckHandler = Arc<dyn Fn(&str, &str, &[u8]) -> bool + Send + Sync>;

/// Where and how to connect.
#[derive(Clone)]
pub struct PushConfig {
    pub host: String,
    pub port: u16,
    /// Its own client id (not the ingest's): the broker keeps acks sent while it is down.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The contract prefix, e.g. `cw/v1/`.
    pub prefix: String,
    /// TCP, or TLS as the ingest's connection (`ingest::MqttConfig::transport`).
    pub transport: rumqttc::Transport,
}

/// The push connection. Cheap to clone.
#[derive(Clone)]
pub struct MqttPush {
    client: Arc<tokio::sync::Mutex<AsyncClient>>,
    waiting: Arc<Mutex<Waiting>>,
}

impl MqttPush {
    /// Connects in the background (reconnecting for ever) and subscribes to the acks.
    pub fn start(config: PushConfig, on_ack: AckHandler) -> MqttPush {
        let (client, eventloop) = connect(&config);
        let push = MqttPush {
            client: Arc::new(tokio::sync::Mutex::new(client.clone())),
            waiting: Arc::default(),
        };
        tokio::spawn(drive(push.clone(), config, client, eventloop, on_ack));
        push
    }

    /// Publishes one notification with QoS 1; `Ok` once the broker has it.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        {
            // In order: the event loop matches outgoing publishes to waiters first come, first served.
            let client = self.client.lock().await;
            self.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .queued
                .push_back(tx);
            if let Err(e) = client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
            {
                self.waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .queued
                    .pop_back();
                return Err(format!("mqtt: {e}"));
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("mqtt: connection reset".into()),
            Err(_) => Err(format!("mqtt: no PUBACK within {} ms", timeout.as_millis())),
        }
    }
}

fn connect(c: &PushConfig) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some(user) = &c.username {
        options.set_credentials(user.clone(), c.password.clone().unwrap_or_default());
    }
    options.set_transport(c.transport.clone());
    AsyncClient::new(options, 256)
}

/// Runs the event loop. It keeps its own handle of the client and takes the publishers' lock
/// only after dropping the old event loop, when a publisher holding the lock cannot be
/// waiting for this loop any more (its channel is closed).
async fn drive(
    push: MqttPush,
    config: PushConfig,
    mut client: AsyncClient,
    mut eventloop: EventLoop,
    on_ack: AckHandler,
) {
    let acks = format!("{}notify/+/ack", config.prefix);
    let notify = format!("{}notify/", config.prefix);
    let mut backoff = Duration::from_millis(200);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(200);
                tracing::info!(broker = %format!("{}:{}", config.host, config.port), "notification push connected");
                if let Err(e) = client.try_subscribe(acks.clone(), QoS::AtLeastOnce) {
                    tracing::warn!(error = %e, "cannot subscribe to unit acks");
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut w = push.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(waiter) = w.queued.pop_front() {
                    w.sent.insert(pkid, waiter);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let waiter = push
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .sent
                    .remove(&ack.pkid);
                if let Some(w) = waiter {
                    let _ = w.send(Ok(()));
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = p.topic.clone();
                let settled = match topic
                    .strip_prefix(&notify)
                    .and_then(|rest| rest.strip_suffix("/ack"))
                {
                    Some(unit) => on_ack(unit, &topic, &p.payload),
                    None => true,
                };
                // Acknowledged once settled. If the channel is full the broker sends it again,
                // and a repeated action changes nothing.
                if settled {
                    let _ = client.try_ack(&p);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "notification push disconnected");
                push.waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .fail_all("mqtt: connection lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                // A fresh client: nothing of the old connection is re-sent unasked.
                let (fresh_client, fresh) = connect(&config);
                eventloop = fresh;
                client = fresh_client.clone();
                // Swap and clear under the publishers' lock: no publisher can queue a waiter
                // for the new client that this clearing would throw away.
                let mut slot = push.client.lock().await;
                *slot = fresh_client;
                push.waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .fail_all("mqtt: connection lost");
                drop(slot);
            }
        }
    }
}
