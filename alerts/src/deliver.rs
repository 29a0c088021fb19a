//! Delivering one notification through the [`Transport`] of its receiver's kind: a webhook
//! (signed, with an idempotency key header) or MQTT push (the key inside the payload).

use crate::journal::NotificationRow;
use crate::push::MqttPush;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// How a delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver has it.
    Delivered,
    /// Worth trying again (408, 429, 5xx, timeout, connection error).
    Retry(String),
    /// Trying again cannot help (other 4xx, unknown receiver kind).
    Fail(String),
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A way to reach receivers of one kind (`receivers.csv` `kind`). Webhooks and MQTT push are
/// built in; an SMS or WeCom adapter is one more implementation registered with
/// [`crate::Alerts::register`].
pub trait Transport: Send + Sync {
    /// Sends one notification (or one grouped message) to `n.target`.
    fn send<'a>(&'a self, n: &'a NotificationRow, timeout: Duration) -> BoxFuture<'a, Outcome>;
}

/// Signed HTTP POST.
pub struct Webhook {
    pub client: reqwest::Client,
}

impl Transport for Webhook {
    fn send<'a>(&'a self, n: &'a NotificationRow, timeout: Duration) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let sent = self
                .client
                .post(&n.target)
                .timeout(timeout)
                .header("content-type", "application/json")
                .header(
                    "x-citywatch-signature",
                    signature(&n.secret, n.body.as_bytes()),
                )
                .header("idempotency-key", &n.idempotency_key)
                .body(n.body.clone())
                .send()
                .await;
            match sent {
                Err(e) => Outcome::Retry(e.to_string()),
                Ok(r) if r.status().is_success() => Outcome::Delivered,
                Ok(r) => {
                    let status = r.status();
                    let text: String = r
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect();
                    let why = format!("{status}: {text}");
                    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
                    {
                        Outcome::Retry(why)
                    } else {
                        Outcome::Fail(why)
                    }
                }
            }
        })
    }
}

impl Transport for MqttPush {
    fn send<'a>(&'a self, n: &'a NotificationRow, timeout: Duration) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.publish(&n.target, mqtt_payload(n), timeout).await {
                Ok(()) => Outcome::Delivered,
                Err(e) => Outcome::Retry(e),
            }
        })
    }
}

/// One message for several notifications to one receiver (a group): `{"group", "count",
/// "alerts": [each notification's body with its `idempotency_key`]}`, with a key of its own
/// made of the rows' keys. A receiver drops a repeated alert by the key inside.
pub fn batch(rows: &[NotificationRow]) -> NotificationRow {
    let alerts: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut b: serde_json::Value =
                serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
            if let Some(o) = b.as_object_mut() {
                o.insert("idempotency_key".into(), r.idempotency_key.clone().into());
            }
            b
        })
        .collect();
    let first = &rows[0];
    let keys: Vec<&str> = rows.iter().map(|r| r.idempotency_key.as_str()).collect();
    let body = serde_json::json!({
        "group": first.group, "count": rows.len(), "alerts": alerts,
    });
    NotificationRow {
        body: body.to_string(),
        idempotency_key: format!("group-{:016x}", crate::fnv([keys.join(",").as_bytes()])),
        ..first.clone()
    }
}

/// The MQTT payload: the notification body with its idempotency key and receiver, since
/// MQTT 3.1.1 has no headers.
pub fn mqtt_payload(n: &NotificationRow) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_str(&n.body).unwrap_or(serde_json::Value::Null);
    if let Some(o) = body.as_object_mut() {
        o.insert("idempotency_key".into(), n.idempotency_key.clone().into());
        o.insert("receiver_id".into(), n.receiver_id.clone().into());
    }
    body.to_string().into_bytes()
}

/// The wait before attempt `attempts + 1`: 1 s doubling to 5 min, with up to 20 % jitter.
pub fn backoff_ms(attempts: u32, jitter: u64) -> u64 {
    let base = 1000u64
        .saturating_mul(1u64 << attempts.min(20))
        .min(300_000);
    base + (base / 5) * (jitter % 1000) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_ms(0, 0), 1000);
        assert_eq!(backoff_ms(3, 0), 8000);
        assert_eq!(backoff_ms(30, 0), 300_000);
        assert!(backoff_ms(3, 999) < 8000 + 1600);
    }
}
