//! The InfluxDB 2 sink: time series from the dataflow, over the v2 HTTP write API.
//!
//! A side branch of the data path (`dataflow → influx`): the dataflow hands it points and
//! never waits for it. Points are batched by size and time and written with the `influxdb2`
//! client (gzip, millisecond precision, bounded concurrency). Failed writes (5xx, timeouts,
//! refused connections) are retried, then spooled to disk and replayed in order when the
//! server is back; a rejected batch (4xx) is split until the bad points are found, and those
//! are kept with the server's message.
//!
//! # Layout
//! - [`config`]: settings and their validation.
//! - [`line`]: points and line protocol encoding (escaping).
//! - [`points`]: which points citywatch writes (the measurements of `docs/influx.md`).
//! - [`spool`]: the bounded on-disk queue of batches.
//! - [`sink`]: the running sink, its sender and statistics.

pub mod config;
pub mod line;
pub mod points;
pub mod sink;
pub mod spool;

pub use config::InfluxConfig;
pub use line::{Field, Point};
pub use sink::{InfluxSink, PointSender, SinkStats};

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// A setting is invalid.
    #[error("influx setting {field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    /// The spool directory could not be used.
    #[error("influx spool at {path}: {source}")]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
