//! The MQTT client: config, event loop, and in-order acknowledgements.

mod acks;
mod config;
mod facts;
mod source;

pub use config::MqttConfig;
pub use facts::Facts;
pub use source::Ingest;
