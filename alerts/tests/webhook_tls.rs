//! Webhooks over https: a receiver whose certificate is signed by its own CA gets signed
//! notifications once that CA is given (`webhook_ca_file`), and none without it; the secret is
//! read from the reference data at delivery, so a rotated one signs what is still pending.

mod common;

use control::{Active, ConditionsSnapshot};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T0: u64 = 1_795_737_600_000;

/// Bodies an https receiver took, with their signature header.
type Got = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An https receiver: one request per connection, answered 204.
async fn serve_https(dir: &Path) -> (u16, Got) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Got = Arc::default();
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, sink) = (acceptor.clone(), sink.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // a client that does not trust us
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = tls.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "request cut short");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = tls.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let sig = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-citywatch-signature:"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                sink.lock()
                    .unwrap()
                    .push((sig, buf[head_end..head_end + length].to_vec()));
                let _ = tls
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, got)
}

/// The common district with its receivers at `url` and signing with `secret`.
fn reference(url: &str, secret: &str) -> Arc<control::Reference> {
    let mut r = (*common::reference(0)).clone();
    for rc in &mut r.receivers {
        rc.target = url.to_owned();
        rc.secret = secret.to_owned();
    }
    Arc::new(r)
}

fn firing() -> ConditionsSnapshot {
    let active = Active {
        rule: "e.safety".into(),
        group: "E1".into(),
        value: 1.0,
        since: T0,
        late_by_ms: 0,
    };
    ConditionsSnapshot {
        as_of: T0 + 1,
        active: Default::default(),
        changes: vec![(active, true, T0)],
        ..ConditionsSnapshot::default()
    }
}

fn rules() -> Vec<rules::Rule> {
    rules::load_str(
        "r.toml",
        "[[rule]]\nid = \"e.safety\"\nseverity = \"critical\"\nstream = \"elevator_status\"\nmode = \"state\"\nfilter = 'has(event.safety_circuit_ok) && !event.safety_circuit_ok'\ngroup_by = [\"elevator_id\"]\nroute = [\"maintenance_unit\", \"office\"]\n",
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_with_its_own_ca_gets_notifications_signed_with_the_current_secret() {
    let dir = tempfile::tempdir().unwrap();
    common::certs::certificates(dir.path(), &[]);
    let (port, got) = serve_https(dir.path()).await;
    let url = format!("https://localhost:{port}/hook");

    // Without the receiver's CA, the certificate is not trusted: nothing is delivered.
    let untrusting = alerts::Alerts::open_with(
        &dir.path().join("untrusting.db"),
        reference(&url, "s3cret"),
        alerts::Options {
            policies: alerts::Policies::default(),
            ..alerts::Options::default()
        },
    )
    .unwrap();
    untrusting.apply(&firing(), &rules()).unwrap();
    tokio::spawn(untrusting.clone().run());
    common::until("a failed attempt", || {
        untrusting
            .journal()
            .notifications(None, 10)
            .unwrap()
            .iter()
            .any(|n| n.attempts > 0 && n.last_error.is_some())
    })
    .await;
    assert!(got.lock().unwrap().is_empty());

    // With it: delivered. The rows are made under the old secret and sent under the new one.
    let a = alerts::Alerts::open_with(
        &dir.path().join("alerts.db"),
        reference(&url, "old-secret"),
        alerts::Options {
            policies: alerts::Policies::default(),
            webhook_ca_file: Some(dir.path().join("ca.crt")),
            ..alerts::Options::default()
        },
    )
    .unwrap();
    a.apply(&firing(), &rules()).unwrap();
    let pending = a.journal().notifications(None, 10).unwrap();
    assert_eq!(pending.len(), 2);
    assert!(
        pending.iter().all(|n| n.secret.is_empty()),
        "no secret in the journal"
    );
    a.set_reference(reference(&url, "s3cret"));
    tokio::spawn(a.clone().run());
    common::until("two notifications delivered", || {
        let notes = a.journal().notifications(None, 10).unwrap();
        notes.iter().all(|n| n.status == "delivered")
    })
    .await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for (sig, body) in got {
        assert_eq!(sig, alerts::deliver::signature("s3cret", &body));
    }
}

#[test]
fn a_bad_ca_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), "nothing").unwrap();
    let err = alerts::Alerts::open_with(
        &dir.path().join("a.db"),
        reference("https://localhost/", "x"),
        alerts::Options {
            webhook_ca_file: Some(dir.path().join("ca.crt")),
            ..alerts::Options::default()
        },
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("ca.crt"), "{err}");
}
