//! Settings of the MQTT client.

use crate::IngestError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// How citywatch connects to the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `embedded` (start the embedded broker), `mqtt://host:port` or `mqtts://host:port`
    /// (TLS, port 8883 by default).
    pub url: String,
    /// Where the embedded broker listens.
    pub embedded_broker_addr: SocketAddr,
    /// The embedded broker's users (`name sha256-hex-of-password` per line); without it the
    /// broker takes anyone and listens on loopback only.
    pub embedded_broker_users: Option<PathBuf>,
    /// CA certificates (PEM) that sign the broker's certificate, for `mqtts://`; the system's
    /// roots without it.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for brokers that authenticate clients by certificate.
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub tls_client_key: Option<PathBuf>,
    /// Stable client id: the broker keeps this session's messages while citywatch is down.
    pub client_id: String,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password, if the broker wants one (prefer `CITYWATCH_MQTT_PASSWORD`).
    pub password: Option<String>,
    /// Topic prefix of the device contract.
    pub prefix: String,
    /// Keep-alive interval, seconds.
    pub keep_alive_secs: u64,
    /// Events the queue to the dataflow holds before ingest waits for room.
    pub queue_capacity: usize,
    /// Largest accepted payload, bytes (larger ones are dead-lettered as `too_large`).
    pub max_payload_bytes: usize,
    /// First reconnect delay, ms; doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, ms.
    pub reconnect_max_ms: u64,
    /// Subscribe as a member of this shared-subscription group (`$share/<group>/…`), so the
    /// broker gives each message to one member: the processes of a cluster.
    pub share_group: Option<String>,
}

const fn default_embedded_addr() -> SocketAddr {
    SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        1884,
    ))
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "embedded".into(),
            embedded_broker_addr: default_embedded_addr(),
            embedded_broker_users: None,
            tls_ca_file: None,
            tls_client_cert: None,
            tls_client_key: None,
            client_id: "citywatch".into(),
            username: None,
            password: None,
            prefix: model::topic::DEFAULT_PREFIX.into(),
            keep_alive_secs: 30,
            queue_capacity: 65_536,
            max_payload_bytes: 64 * 1024,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            share_group: None,
        }
    }
}

impl MqttConfig {
    /// Whether the embedded broker is wanted.
    pub fn is_embedded(&self) -> bool {
        self.url == "embedded"
    }

    /// The host and port to connect to.
    pub fn endpoint(&self) -> Result<(String, u16), IngestError> {
        if self.is_embedded() {
            return Ok((
                self.embedded_broker_addr.ip().to_string(),
                self.embedded_broker_addr.port(),
            ));
        }
        let bad = || IngestError::BadUrl(self.url.clone());
        let (rest, default_port) = match self.url.strip_prefix("mqtts://") {
            Some(rest) => (rest, 8883),
            None => (
                self.url
                    .strip_prefix("mqtt://")
                    .or_else(|| self.url.strip_prefix("tcp://"))
                    .ok_or_else(bad)?,
                1883,
            ),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .map_or((rest, Some(default_port)), |(h, p)| (h, p.parse().ok()));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match port {
            Some(port) if !host.is_empty() && !host.contains('/') => Ok((host.to_owned(), port)),
            _ => Err(bad()),
        }
    }

    /// Whether the connection to the broker is TLS (`mqtts://`).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("mqtts://")
    }

    /// The transport for every client citywatch connects to the broker: TCP, or TLS with the
    /// configured CA and client certificate.
    pub fn transport(&self) -> Result<rumqttc::Transport, IngestError> {
        if !self.is_tls() {
            return Ok(rumqttc::Transport::Tcp);
        }
        let config = super::tls::client_config(
            self.tls_ca_file.as_deref(),
            self.tls_client_cert
                .as_deref()
                .zip(self.tls_client_key.as_deref()),
        )?;
        Ok(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ))
    }

    /// The subscription filter: everything under the prefix (as a member of the share group,
    /// if there is one).
    pub fn filter(&self) -> String {
        match &self.share_group {
            Some(group) => format!("$share/{group}/{}#", self.prefix),
            None => format!("{}#", self.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let mut c = MqttConfig::default();
        assert_eq!(c.endpoint().unwrap(), ("127.0.0.1".into(), 1884));
        c.url = "mqtt://broker.local:1883".into();
        assert_eq!(c.endpoint().unwrap(), ("broker.local".into(), 1883));
        c.url = "mqtt://10.0.0.1".into();
        assert_eq!(c.endpoint().unwrap(), ("10.0.0.1".into(), 1883));
        c.url = "http://x:1".into();
        assert!(c.endpoint().is_err());
        c.url = "mqtt://x:notaport".into();
        assert!(c.endpoint().is_err());
        c.url = "mqtts://broker.local".into();
        assert_eq!(c.endpoint().unwrap(), ("broker.local".into(), 8883));
        assert!(c.is_tls());
        assert_eq!(c.filter(), "cw/v1/#");
    }
}
