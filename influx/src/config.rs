//! Settings of the InfluxDB sink.

use crate::InfluxError;
use serde::{Deserialize, Serialize};

/// Where and how to write. The sink is off unless `url` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    /// Server base URL, e.g. `http://127.0.0.1:8086`.
    pub url: Option<String>,
    /// Organization.
    pub org: String,
    /// Bucket.
    pub bucket: String,
    /// API token (from `CITYWATCH_INFLUX_TOKEN`; never a flag).
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// A batch is written when it has this many points…
    pub batch_points: usize,
    /// … or when its oldest point has waited this long, ms.
    pub batch_interval_ms: u64,
    /// Writes in flight at once.
    pub max_in_flight: usize,
    /// Timeout of one write request, ms.
    pub timeout_ms: u64,
    /// Attempts per batch before it goes to the spool.
    pub attempts: u32,
    /// Disk for batches waiting for the server, bytes; oldest dropped first (and counted).
    pub spool_max_bytes: u64,
    /// Points waiting between the dataflow and the sink; beyond this, points are dropped and counted.
    pub queue_points: usize,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig {
            url: None,
            org: "citywatch".into(),
            bucket: "citywatch".into(),
            token: None,
            batch_points: 5000,
            batch_interval_ms: 1000,
            max_in_flight: 2,
            timeout_ms: 10_000,
            attempts: 3,
            spool_max_bytes: 256 << 20,
            queue_points: 200_000,
        }
    }
}

impl InfluxConfig {
    /// Checks the settings; `Ok(None)` when the sink is off.
    pub fn validate(&self) -> Result<Option<&str>, InfluxError> {
        let Some(url) = self.url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let bad = |field, message: &str| {
            Err(InfluxError::Config {
                field,
                message: message.to_owned(),
            })
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return bad("url", "must start with http:// or https://");
        }
        if url.starts_with("https://") {
            return bad(
                "url",
                "https is not built in; put a TLS-terminating proxy on loopback in front of the server",
            );
        }
        if self.org.is_empty() {
            return bad("org", "must not be empty");
        }
        if self.bucket.is_empty() {
            return bad("bucket", "must not be empty");
        }
        if self.batch_points == 0
            || self.max_in_flight == 0
            || self.attempts == 0
            || self.queue_points == 0
        {
            return bad(
                "batch_points",
                "batch_points, max_in_flight, attempts and queue_points must be at least 1",
            );
        }
        Ok(Some(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_without_url_and_checks_the_rest() {
        assert!(InfluxConfig::default().validate().unwrap().is_none());
        let mut c = InfluxConfig {
            url: Some("http://127.0.0.1:8086".into()),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap(), Some("http://127.0.0.1:8086"));
        c.bucket.clear();
        assert!(c.validate().unwrap_err().to_string().contains("bucket"));
        c.url = Some("127.0.0.1:8086".into());
        assert!(c.validate().unwrap_err().to_string().contains("url"));
    }
}
