//! The embedded MQTT broker (rumqttd) for the quick start: `--mqtt embedded` runs citywatch
//! with no external broker.
//!
//! rumqttd keeps each subscription's messages in an in-memory commit log; a subscriber that
//! falls further behind than the log's size loses messages (the log rotates regardless of
//! acknowledgements). The log is sized here so that citywatch's own subscription can fall
//! [`RETAINED_BYTES`] behind before that happens, and persistent sessions live in memory only:
//! for production, use Mosquitto with the settings in `docs/operations.md`.
//!
//! Security: the embedded broker authenticates clients against a users file
//! (`embedded_broker_users`: `name sha256-hex-of-password` per line) but has no topic ACLs
//! and no TLS: any authenticated client may publish and read any topic. Units' answers are
//! signed (`alerts::ack_signature`), so forging one needs a unit's secret even here; forged
//! device frames or notifications do not. It therefore refuses to listen beyond loopback
//! without a users file; a deployment on a network uses Mosquitto with the ACLs in
//! `docs/operations.md`.

use crate::IngestError;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of one commit-log segment.
const SEGMENT_BYTES: usize = 8 << 20;
/// Segments kept per subscription filter.
const SEGMENTS: usize = 32;
/// How far (in payload bytes) a subscriber may fall behind before the broker drops messages.
pub const RETAINED_BYTES: usize = SEGMENT_BYTES * SEGMENTS;

/// Largest message the embedded broker takes from a publisher, bytes: the same as the
/// `message_size_limit` that `docs/operations.md` gives Mosquitto.
pub const MAX_PAYLOAD_BYTES: usize = 1_179_648;

/// Reads a users file: `name sha256-hex` per line (`#` comments and blank lines skipped).
pub fn read_users(path: &Path) -> Result<HashMap<String, String>, IngestError> {
    let bad = |message: String| IngestError::Users {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (name, hash) = line
            .split_once(char::is_whitespace)
            .map(|(n, h)| (n, h.trim()))
            .ok_or_else(|| bad(format!("line {}: expected \"name sha256-hex\"", n + 1)))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "line {}: the password of {name:?} must be given as 64 hex digits of its SHA-256",
                n + 1
            )));
        }
        users.insert(name.to_owned(), hash.to_ascii_lowercase());
    }
    if users.is_empty() {
        return Err(bad("no users: the broker would refuse everyone".into()));
    }
    Ok(users)
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts the broker on `addr` (MQTT 3.1.1 and 5 on the same port is not possible with
/// rumqttd, so 3.1.1 only), taking only the clients of the `users` file if one is given, and
/// returns once it accepts connections.
pub fn start_embedded(
    addr: SocketAddr,
    users: Option<&Path>,
    max_packet_bytes: usize,
) -> Result<(), IngestError> {
    let fail = |message: String| IngestError::Broker { addr, message };
    let users = users.map(read_users).transpose()?;
    if users.is_none() && !addr.ip().is_loopback() {
        return Err(fail(
            "the embedded broker listens beyond loopback only with authentication \
             (embedded_broker_users); it has no topic ACLs or TLS: on a network, use Mosquitto"
                .into(),
        ));
    }
    // rumqttd reports a bind failure only in its own thread: find out here, clearly.
    drop(TcpListener::bind(addr).map_err(|e| fail(e.to_string()))?);
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: max_packet_bytes,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    if let Some(users) = users {
        let users = Arc::new(users);
        connections.set_auth_handler(move |_client, user: String, pass: String| {
            let users = users.clone();
            async move {
                let ok = users
                    .get(&user)
                    .is_some_and(|hash| *hash == sha256_hex(&pass));
                if !ok {
                    tracing::warn!(user = %user, "embedded broker refused a client: bad user name or password");
                }
                ok
            }
        });
    }
    let server = ServerSettings {
        name: "embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_files_hold_hashes_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let hash = sha256_hex("s3cret");
        std::fs::write(&path, format!("# units\nMU-02 {hash}\n\n")).unwrap();
        assert_eq!(read_users(&path).unwrap()["MU-02"], hash);
        std::fs::write(&path, "MU-02 s3cret\n").unwrap();
        let err = read_users(&path).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("SHA-256"), "{err}");
        std::fs::write(&path, "# nobody\n").unwrap();
        assert!(read_users(&path).is_err());
    }

    #[test]
    fn refuses_a_network_address_without_users() {
        let err = start_embedded("0.0.0.0:0".parse().unwrap(), None, 1024)
            .unwrap_err()
            .to_string();
        assert!(err.contains("beyond loopback"), "{err}");
    }
}
