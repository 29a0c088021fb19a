//! The MQTT client: config, event loop, and in-order acknowledgements.

mod acks;
mod config;
mod source;

pub use config::MqttConfig;
pub use source::Ingest;
