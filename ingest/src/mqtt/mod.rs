//! The MQTT client: config, event loop, and in-order acknowledgements.

mod acks;
mod config;
mod source;
mod tls;

pub use config::MqttConfig;
pub use source::{Ingest, MQTT_MAX_PACKET, Tap};
pub use tls::client_config;
