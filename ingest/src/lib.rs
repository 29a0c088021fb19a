//! MQTT ingest: the first hop of the data path (`ingest → dataflow → alerts → notifications`).
//!
//! Subscribes to the device contract with QoS 1 on a persistent session, decodes every
//! message with `model`, keeps rejected ones in the dead-letter store, and hands typed events
//! to the dataflow through a bounded queue. A QoS 1 message is acknowledged to the broker only
//! once the input log has it on disk (or, with the log off, once the dataflow has taken it),
//! in the order it arrived, so a crash of citywatch loses nothing the broker was told we have.
//!
//! # Layout
//! - [`mqtt`]: the client (config, event loop, ack sequencing).
//! - [`broker`]: the embedded broker (rumqttd) for the quick start.
//! - [`deadletter`]: the bounded on-disk store of rejected messages.
//! - [`complaint_log`]: complaints and their status updates on disk, fed again at start so that
//!   handling deadlines survive a restart.
//! - [`input_log`]: every device message on disk before its acknowledgement, and which of them
//!   a restart must feed again.
//! - [`stats`]: counters and gauges for `/metrics` and `/readyz`.

pub mod broker;
pub mod complaint_log;
pub mod deadletter;
pub mod input_log;
pub mod mqtt;
pub mod stats;

pub use complaint_log::ComplaintLog;
pub use deadletter::{DeadLetter, DeadLetters};
pub use input_log::InputLog;
pub use mqtt::{Ingest, MqttConfig, Tap};
pub use stats::{ConnectionState, IngestStats};

/// Why ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The broker URL is neither `embedded` nor `mqtt://host:port`.
    #[error("mqtt url {0:?}: expected \"embedded\" or mqtt://host:port")]
    BadUrl(String),
    /// The dead-letter directory could not be used.
    #[error("dead-letter store at {path}: {source}")]
    DeadLetterIo {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The embedded broker did not start.
    #[error("embedded broker on {addr}: {message}")]
    Broker {
        addr: std::net::SocketAddr,
        message: String,
    },
    /// The embedded broker's users file cannot be used.
    #[error("embedded broker users file {path}: {message}")]
    Users {
        path: std::path::PathBuf,
        message: String,
    },
    /// The input log's writer did not start.
    #[error("input log: {0}")]
    InputLog(String),
    /// TLS towards the broker cannot be set up (a certificate or key file).
    #[error("mqtt tls: {0}")]
    Tls(String),
}
