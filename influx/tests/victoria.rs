//! The sink against a real server that speaks the InfluxDB v2 write API (VictoriaMetrics,
//! started on a free port), and against a minimal HTTP server for what VictoriaMetrics does
//! not do (it skips bad lines instead of answering 400, and does not show request headers).

use influx::{Field, InfluxConfig, InfluxSink, Point};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::Victoria;

fn config(url: String, batch: usize) -> InfluxConfig {
    InfluxConfig {
        url: Some(url),
        org: "bureau".into(),
        bucket: "citywatch".into(),
        token: Some("secret-token".into()),
        batch_points: batch,
        batch_interval_ms: 20,
        attempts: 2,
        timeout_ms: 1000,
        ..InfluxConfig::default()
    }
}

const T0: u64 = 1_795_737_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_exact_points_with_chinese_tags() {
    let vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = InfluxSink::start(&config(vm.url(), 3), dir.path())
        .unwrap()
        .unwrap();
    let tx = sink.sender();
    tx.send([
        Point::new("elevators", T0)
            .tag("district", "渝中 区,解放碑=1")
            .field("online", Field::I64(42))
            .field("offline", Field::I64(3)),
        Point::new("cameras", T0)
            .tag("venue_type", "学校 食堂")
            .field("online", Field::F64(2.5)),
        Point::new("cameras", T0 + 1000)
            .tag("venue_type", "学校 食堂")
            .field("online", Field::F64(3.0)),
        Point::new("market_goods_1m", T0)
            .tag("market_id", "M-JFB")
            .tag("goods_code", "猪肉")
            .field("turnover_yuan", Field::F64(1234.56)),
    ]);
    let stats = sink.stats();
    sink.shutdown(Duration::from_secs(10)).await;
    assert_eq!(stats.points_written(), 4);

    let e = vm.export(r#"{__name__="elevators_online"}"#).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["metric"]["district"], "渝中 区,解放碑=1");
    assert_eq!(e[0]["values"], serde_json::json!([42]));
    assert_eq!(e[0]["timestamps"], serde_json::json!([T0]));
    let c = vm.export(r#"{__name__="cameras_online"}"#).await;
    assert_eq!(c[0]["metric"]["venue_type"], "学校 食堂");
    assert_eq!(c[0]["values"], serde_json::json!([2.5, 3]));
    assert_eq!(c[0]["timestamps"], serde_json::json!([T0, T0 + 1000]));
    let m = vm
        .export(r#"{__name__="market_goods_1m_turnover_yuan"}"#)
        .await;
    assert_eq!(m[0]["metric"]["goods_code"], "猪肉");
    assert_eq!(m[0]["values"], serde_json::json!([1234.56]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_writes_nothing_twice() {
    let mut vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = InfluxSink::start(&config(vm.url(), 50), dir.path())
        .unwrap()
        .unwrap();
    let tx = sink.sender();
    let stats = sink.stats();
    const N: u64 = 3000;
    let point = |i: u64| {
        Point::new("outage_test", T0 + i)
            .tag("run", "1")
            .field("value", Field::I64(i as i64))
    };
    for i in 0..1000 {
        tx.send([point(i)]);
    }
    // Down mid-stream: keep producing.
    vm.stop();
    for i in 1000..2000 {
        tx.send([point(i)]);
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Wait until the sink has given up on the server and spooled (signal: the spool grows).
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.spool().0 == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing spooled while the server was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    vm.run();
    for i in 2000..N {
        tx.send([point(i)]);
    }
    sink.shutdown(Duration::from_secs(60)).await;
    assert_eq!(stats.spool(), (0, 0), "spool drained");
    assert_eq!(stats.points_dropped(), (0, 0));
    assert!(stats.batches_retried() > 0);
    assert_eq!(stats.points_written(), N);

    let series = vm.export(r#"{__name__="outage_test_value"}"#).await;
    assert_eq!(series.len(), 1);
    let ts: Vec<u64> = series[0]["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    let values: Vec<i64> = series[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as i64)
        .collect();
    assert_eq!(ts.len() as u64, N, "every point exactly once");
    let expected: Vec<u64> = (0..N).map(|i| T0 + i).collect();
    assert_eq!(ts, expected);
    assert_eq!(values, (0..N as i64).collect::<Vec<_>>());
}

/// A minimal HTTP/1.1 server that records each request and answers 400 to bodies holding a
/// line with `bad`, like InfluxDB does for unparsable points.
async fn strict_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    use std::io::Read;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 8192];
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let chunked = head
                        .to_ascii_lowercase()
                        .contains("transfer-encoding: chunked");
                    let body_start = end + 4;
                    let body = if chunked {
                        let Some(body) = dechunk(&buf[body_start..]) else {
                            continue;
                        };
                        body
                    } else {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() < body_start + len {
                            continue;
                        }
                        buf[body_start..body_start + len].to_vec()
                    };
                    let mut text = String::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_string(&mut text)
                        .unwrap();
                    let bad = text.lines().any(|l| l.contains("bad"));
                    log.lock().unwrap().push((head, text));
                    let reply = if bad {
                        let body = r#"{"code":"invalid","message":"unable to parse line"}"#;
                        format!(
                            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
                    };
                    sock.write_all(reply.as_bytes()).await.unwrap();
                    buf.clear();
                }
            });
        }
    });
    (port, seen)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).ok()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v2_request_and_splitting_out_a_refused_point() {
    let (port, seen) = strict_server().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = InfluxSink::start(&config(format!("http://127.0.0.1:{port}"), 8), dir.path())
        .unwrap()
        .unwrap();
    let tx = sink.sender();
    let stats = sink.stats();
    tx.send((0..8).map(|i| {
        let tag = if i == 5 { "bad" } else { "good" };
        Point::new("m", T0 + i)
            .tag("kind", tag)
            .field("v", Field::I64(i as i64))
    }));
    sink.shutdown(Duration::from_secs(10)).await;
    assert_eq!(stats.points_written(), 7);
    assert_eq!(stats.points_rejected(), 1);

    let seen = seen.lock().unwrap().clone();
    let (head, body) = &seen[0];
    assert!(
        head.starts_with("POST /api/v2/write?bucket=citywatch&org=bureau&precision=ms HTTP/1.1"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("authorization: token secret-token"),
        "{head}"
    );
    assert!(lower.contains("content-encoding: gzip"), "{head}");
    assert_eq!(body.lines().count(), 8);
    // Everything good was written exactly once, in the requests that got 204.
    let mut written: Vec<&str> = seen
        .iter()
        .filter(|(_, b)| !b.contains("bad"))
        .flat_map(|(_, b)| b.lines())
        .collect();
    written.sort();
    assert_eq!(written.len(), 7);
    written.dedup();
    assert_eq!(written.len(), 7);

    let rejected = std::fs::read_to_string(Path::new(dir.path()).join("rejected.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(rejected.lines().next().unwrap()).unwrap();
    assert_eq!(entry["line"], format!("m,kind=bad v=5i {}", T0 + 5));
    assert!(
        entry["message"].as_str().unwrap().contains("400"),
        "{entry}"
    );
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .contains("unable to parse line"),
        "{entry}"
    );
}
