//! Facts for alerts from every message of the streams that carry them, whichever process of a
//! cluster was given the message: the kitchen cameras' evidence images and whom each
//! complaint is about. A subscription of its own, outside the share group, at QoS 0 (a missed
//! fact only leaves an alert without its image or merchant name; it loses no event).

use super::config::MqttConfig;
use super::source::{Remembered, remember};
use crate::IngestError;
use model::{Decoder, DecoderConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

/// A running facts subscription; stops when dropped.
pub struct Facts {
    task: JoinHandle<()>,
}

impl Drop for Facts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Facts {
    /// Subscribes as `<client_id>-facts` and records into `evidence`, `complaints` and
    /// `residue`. Must be called inside a tokio runtime.
    pub fn start(
        config: &MqttConfig,
        evidence: Arc<crate::Evidence>,
        complaints: Arc<crate::Complaints>,
        residue: Arc<crate::ResidueTests>,
    ) -> Result<Facts, IngestError> {
        let (host, port) = config.endpoint()?;
        let mut options = MqttOptions::new(format!("{}-facts", config.client_id), host, port);
        let max_packet = super::source::MQTT_MAX_PACKET;
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(config.keep_alive_secs.max(5)))
            .set_max_packet_size(max_packet, max_packet);
        if let Some(user) = &config.username {
            options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
        }
        options.set_transport(config.transport()?);
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let filters = [
            format!("{}kitchen/+/camera/+/detection", config.prefix),
            format!("{}complaint/new", config.prefix),
            format!("{}complaint/+/status", config.prefix),
            format!("{}market/+/residue", config.prefix),
        ];
        let decoder = Decoder::new(DecoderConfig {
            prefix: config.prefix.clone(),
            max_payload_bytes: config.max_payload_bytes,
            ..DecoderConfig::default()
        });
        let retry = Duration::from_millis(config.reconnect_min_ms.max(1));
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            if let Err(e) = client.try_subscribe(f.clone(), QoS::AtMostOnce) {
                                tracing::error!(error = %e, filter = %f, "cannot request facts subscription");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let received_ms = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        // Rejections are the ingest's to keep: here a bad message is skipped.
                        if let Ok(envelope) = decoder.decode(&p.topic, &p.payload, received_ms) {
                            let kept = Remembered {
                                evidence: &evidence,
                                complaints: &complaints,
                                residue: &residue,
                            };
                            remember(kept, &envelope.event, received_ms);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "facts subscription lost; reconnecting");
                        tokio::time::sleep(retry).await;
                    }
                }
            }
        });
        Ok(Facts { task })
    }
}
