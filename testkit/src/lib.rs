//! Real servers for the workspace's tests, each on a free port and stopped when dropped: a
//! Mosquitto broker and VictoriaMetrics (which speaks the InfluxDB v2 write API); and the
//! options of a test's MQTT client; elevator frames built field by field ([`Frame`]).
//!
//! Beside the data path: a dev-dependency only. The tests of several crates start the same
//! servers; they do it here, once, rather than each with its own copy.

mod frame;
pub use frame::Frame;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The options of a test's MQTT client of `host:port`: a 30-s keep-alive and packets up to
/// 2 MiB both ways (the largest payloads the tests send or take).
pub fn mqtt_options(id: impl Into<String>, host: &str, port: u16) -> rumqttc::MqttOptions {
    let mut opts = rumqttc::MqttOptions::new(id, host, port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(2 << 20, 2 << 20);
    opts
}

/// Where [`free_port`] looks: below Linux's ephemeral range (32768–60999), so that no
/// outgoing connection (a test's client, the broker's, another process's) is given the port
/// between the moment it is chosen and the moment a server binds it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port nobody listens on now, handed out once per test process (never 1883 or 8080: they
/// lie outside the range).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Spread by process, so that the test binaries of one run start apart.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let start = std::process::id().wrapping_mul(7_919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free test port left in {TEST_PORTS:?}");
        let port = TEST_PORTS.start + ((start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until something listens on `port` (20 s at most).
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Mosquitto broker on a free port, with the queue settings of docs/operations.md.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nmax_inflight_messages 100\nmessage_size_limit 0\n"
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (apt-get install mosquitto)");
        wait_for_port(port, "mosquitto");
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VictoriaMetrics on a free port, ready (healthy) once started; it can be stopped and run
/// again on the same port and data.
pub struct Victoria {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Victoria {
    pub fn start() -> Victoria {
        let mut v = Victoria {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        v.run();
        v
    }

    /// Starts it (again) and waits until it is healthy.
    pub fn run(&mut self) {
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.dir.path().display()))
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics is installed (apt-get install victoria-metrics)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http_ok(self.port, "/health") {
            assert!(Instant::now() < deadline, "victoria-metrics did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it cleanly (SIGINT) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every sample of the series matching `selector`: (labels, values, timestamps), one JSON
    /// object a series, after the server has flushed what it was given.
    pub async fn export(&self, selector: &str) -> Vec<serde_json::Value> {
        let client = reqwest::Client::new();
        client
            .get(format!("{}/internal/force_flush", self.url()))
            .send()
            .await
            .unwrap();
        let body = client
            .get(format!("{}/api/v1/export", self.url()))
            .query(&[("match[]", selector), ("start", "0")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether `GET path` on the local `port` answers 200 (a readiness probe that needs no
/// runtime: the standard library only).
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn ports_are_handed_out_once_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| super::free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| super::TEST_PORTS.contains(p)));
    }
}
