//! citywatch against the secure Mosquitto of `examples/mosquitto/` (TLS, client certificates,
//! per-client topic ACLs), started with exactly that file (paths and port moved into a
//! temporary directory): a device publishes only as itself, a unit reads only its own
//! notifications and answers only for itself, a client without a certificate gets nowhere, and
//! citywatch connects with its own certificate over `mqtts://`.

mod common;

use common::*;
use rumqttc::{AsyncClient, Event, Packet, QoS, Transport};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../alerts/tests/common/certs.rs"]
mod certs;

/// Mosquitto with the repository's secure configuration.
struct SecureMosquitto {
    child: Child,
    port: u16,
}

impl SecureMosquitto {
    fn start(dir: &Path) -> SecureMosquitto {
        let port = free_port();
        let shipped =
            std::fs::read_to_string(repo().join("examples/mosquitto/mosquitto.conf")).unwrap();
        let here = format!("{}/", dir.display());
        let conf = shipped
            .replace("/etc/mosquitto/citywatch/", &here)
            .replace("/var/lib/mosquitto/", &here)
            .replace(
                "listener 8883 0.0.0.0",
                &format!("listener {port} 127.0.0.1"),
            );
        assert_ne!(conf, shipped);
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        std::fs::copy(repo().join("examples/mosquitto/acl"), dir.join("acl")).unwrap();
        // Mosquitto started as root drops to its own user: it must read and write here.
        let open = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            let mode = if p.is_dir() { 0o777 } else { 0o644 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        open(dir);
        for f in std::fs::read_dir(dir).unwrap() {
            open(&f.unwrap().path());
        }
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
            .spawn()
            .expect("mosquitto is installed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        SecureMosquitto { child, port }
    }
}

impl Drop for SecureMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of the secure broker as `name` (its certificate), or without one.
struct Client {
    client: AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<Result<Packet, String>>,
}

impl Client {
    fn connect(dir: &Path, port: u16, id: &str, cert: Option<&str>) -> Client {
        let pair: Option<(PathBuf, PathBuf)> =
            cert.map(|c| (dir.join(format!("{c}.crt")), dir.join(format!("{c}.key"))));
        let tls = ingest::mqtt::client_config(
            Some(&dir.join("ca.crt")),
            pair.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .unwrap();
        let mut opts = testkit::mqtt_options(id, "localhost", port);
        opts.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let ev = eventloop.poll().await;
                let failed = ev.is_err();
                let sent = match ev {
                    Ok(Event::Incoming(p)) => tx.send(Ok(p)),
                    Ok(_) => Ok(()),
                    Err(e) => tx.send(Err(e.to_string())),
                };
                if failed || sent.is_err() {
                    return;
                }
            }
        });
        Client { client, events }
    }

    /// The next packet the broker sends matching `want`, within 20 s.
    async fn next(&mut self, want: impl Fn(&Packet) -> bool) -> Result<Packet, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(p))) if want(&p) => return Ok(p),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) => return Err("closed".into()),
                Err(_) => return Err("nothing within 20 s".into()),
            }
        }
    }

    /// Publishes with QoS 1 and waits for the broker's PUBACK. A publish the ACL denies gets
    /// a PUBACK that Mosquitto 2.0.11 gives an MQTT 3.1.1 client with a reason code it has no
    /// room for, and the client drops the connection: that is an `Err`, and so is a publish
    /// the client can no longer send because that drop came first.
    async fn publish(&mut self, topic: &str, payload: String) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        self.next(|p| matches!(p, Packet::PubAck(_)))
            .await
            .map(drop)
    }

    /// Subscribes; the granted return codes.
    async fn subscribe(&mut self, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        match self.next(|p| matches!(p, Packet::SubAck(_))).await.unwrap() {
            Packet::SubAck(a) => a.return_codes,
            _ => unreachable!(),
        }
    }
}

fn is_publish(p: &Packet) -> bool {
    matches!(p, Packet::Publish(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_secure_broker_each_client_may_be_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("broker");
    std::fs::create_dir_all(&certs).unwrap();
    certs::certificates(
        &certs,
        &["citywatch", "E0001", "E0002", "R-MU-02", "R-MU-03"],
    );
    let broker = SecureMosquitto::start(&certs);

    // The sample district with signing secrets for the units' receivers.
    let reference = reference_copy(dir.path());
    let receivers = std::fs::read_to_string(reference.join("receivers.csv"))
        .unwrap()
        .replace("R-MU-02,,MU-02", "R-MU-02,mu02-secret,MU-02")
        .replace("R-MU-03,,MU-03", "R-MU-03,mu03-secret,MU-03");
    std::fs::write(reference.join("receivers.csv"), receivers).unwrap();

    // A unit connects before the alert, so its notification reaches it.
    let mut mu02 = Client::connect(&certs, broker.port, "R-MU-02", Some("R-MU-02"));
    let granted = mu02.subscribe("cw/v1/notify/R-MU-02").await;
    assert!(
        matches!(granted[0], rumqttc::SubscribeReasonCode::Success(_)),
        "{granted:?}"
    );
    // Another unit tries to read it too (Mosquitto 2.0 grants the subscription and then
    // withholds what the ACL does not let it read), and reads its own.
    let mut mu03 = Client::connect(&certs, broker.port, "R-MU-03", Some("R-MU-03"));
    mu03.subscribe("cw/v1/notify/R-MU-02").await;
    mu03.subscribe("cw/v1/notify/R-MU-03").await;

    let data = dir.path().join("data");
    let cert = |f: &str| certs.join(f).to_str().unwrap().to_owned();
    let cw = Citywatch::start_with(
        &format!("mqtts://localhost:{}", broker.port),
        None,
        &data,
        &[
            "--reference",
            reference.to_str().unwrap(),
            "--rules",
            default_rules().to_str().unwrap(),
            "--clock",
            "event",
            "--mqtt-tls-ca-file",
            &cert("ca.crt"),
            "--mqtt-tls-client-cert",
            &cert("citywatch.crt"),
            "--mqtt-tls-client-key",
            &cert("citywatch.key"),
        ],
        &[],
    )
    .await;

    // Without a certificate nothing connects.
    let mut stranger = Client::connect(&certs, broker.port, "stranger", None);
    let err = stranger.next(|_| true).await.expect_err("refused");
    assert!(!err.is_empty());

    // E0001's terminal tries to speak for E0004, then reports a trapped passenger of its own.
    let t = now_ms() - now_ms() % 1000 - 60_000;
    let mut forger = Client::connect(&certs, broker.port, "E0001-forger", Some("E0001"));
    for ts in [t, t + 1000] {
        let (topic, payload) = trapped("E0004", ts);
        if forger
            .publish(&topic, String::from_utf8(payload).unwrap())
            .await
            .is_err()
        {
            break;
        }
    }
    let mut e0001 = Client::connect(&certs, broker.port, "E0001", Some("E0001"));
    // Later frames move the event-time frontier past the `for`.
    for i in 0..40u64 {
        let (topic, payload) = trapped("E0001", t + i * 1000);
        e0001
            .publish(&topic, String::from_utf8(payload).unwrap())
            .await
            .unwrap();
    }

    let Packet::Publish(p) = mu02.next(is_publish).await.unwrap() else {
        unreachable!()
    };
    let firing: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(firing["labels"]["elevator_id"], "E0001", "{firing}");
    let id = firing["id"].as_str().unwrap().to_owned();
    let conditions = cw.get("/api/v1/conditions").await.to_string();
    assert!(
        !conditions.contains("E0004"),
        "a device spoke for another: {conditions}"
    );

    // Then E0002, an MU-03 elevator: the first notification MU-03 reads is its own, so MU-02's,
    // published before it, never reached MU-03.
    let mut e0002 = Client::connect(&certs, broker.port, "E0002", Some("E0002"));
    for i in 0..40u64 {
        let (topic, payload) = trapped("E0002", t + 40_000 + i * 1000);
        e0002
            .publish(&topic, String::from_utf8(payload).unwrap())
            .await
            .unwrap();
    }
    let Packet::Publish(p) = mu03.next(is_publish).await.unwrap() else {
        unreachable!()
    };
    assert_eq!(p.topic, "cw/v1/notify/R-MU-03");
    let own: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(own["labels"]["elevator_id"], "E0002", "{own}");

    // MU-03 tries to close MU-02's alert on MU-02's topic: the broker refuses it. MU-02 answers.
    let ack = |secret: &str, topic: &str, action: &str| {
        let signed = alerts::ack_signature::Signed {
            alert_id: &id,
            action,
            by: None,
            comment: None,
            sig: None,
        };
        json!({"alert_id": id, "action": action,
            "sig": alerts::ack_signature::sign(secret, topic, &signed)})
        .to_string()
    };
    let mu02_topic = "cw/v1/notify/R-MU-02/ack";
    // Even with MU-02's secret in hand, MU-03 cannot publish on MU-02's topic: the ACL is a
    // second lock beside the signature.
    let _ = mu03
        .publish(mu02_topic, ack("mu02-secret", mu02_topic, "false_alarm"))
        .await;
    mu02.publish(mu02_topic, ack("mu02-secret", mu02_topic, "on_site"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = cw.get(&format!("/api/v1/alerts/{id}")).await;
        if d["alert"]["body"]["ops"]["field_state"] == "on_site" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unit's answer was not applied: {d}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = cw.metrics().await;
    assert!(
        m.contains("citywatch_unit_acks_total{outcome=\"applied\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("citywatch_unit_acks_total{outcome=\"rejected\"} 0\n"),
        "{m}"
    );
}
