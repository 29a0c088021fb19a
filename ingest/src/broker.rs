//! The embedded MQTT broker (rumqttd) for the quick start: `--mqtt embedded` runs citywatch
//! with no external broker.
//!
//! rumqttd keeps each subscription's messages in an in-memory commit log; a subscriber that
//! falls further behind than the log's size loses messages (the log rotates regardless of
//! acknowledgements). The log is sized here so that citywatch's own subscription can fall
//! [`RETAINED_BYTES`] behind before that happens, and persistent sessions live in memory only:
//! for production, use Mosquitto with the settings in `docs/operations.md`.

use crate::IngestError;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Size of one commit-log segment.
const SEGMENT_BYTES: usize = 8 << 20;
/// Segments kept per subscription filter.
const SEGMENTS: usize = 32;
/// How far (in payload bytes) a subscriber may fall behind before the broker drops messages.
pub const RETAINED_BYTES: usize = SEGMENT_BYTES * SEGMENTS;

/// Starts the broker on `addr` (MQTT 3.1.1 and 5 on the same port is not possible with
/// rumqttd, so 3.1.1 only) and returns once it accepts connections.
pub fn start_embedded(addr: SocketAddr, max_packet_bytes: usize) -> Result<(), IngestError> {
    let fail = |message: String| IngestError::Broker { addr, message };
    // rumqttd reports a bind failure only in its own thread: find out here, clearly.
    drop(TcpListener::bind(addr).map_err(|e| fail(e.to_string()))?);
    let server = ServerSettings {
        name: "embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_packet_bytes,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100_000,
            max_outgoing_packet_count: 500,
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENTS,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("embedded".to_owned(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| fail(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            tracing::info!(%addr, "embedded broker listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(fail("did not start listening within 10 s".into()))
}
