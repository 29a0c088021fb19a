//! `citywatch bench`: end to end on this machine. A generated city is published as fast as
//! the broker takes it (QoS 1, several connections) into a `citywatch run` child process
//! (embedded broker, default rules, event-time clock); then the alerts it raised are compared
//! with the simulator's ground truth. Before it, unless `--no-baseline`, the same city goes
//! through the same kind of broker alone (an embedded broker in this process and one plain
//! QoS 1 subscriber), so the pipeline is reported as a share of what the broker delivers.
//! Writes `report.json` and `summary.md`.

use crate::simulate::{SimulateArgs, Summary, simulate};
use anyhow::Context;
use serde_json::{Value, json};
use simulators::city::City;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Where the report, the generated reference data and citywatch's data go.
    #[arg(long)]
    pub out: PathBuf,
    /// A small run for quick checks (under 2 minutes): 2 000 elevators, 600 simulated seconds.
    #[arg(long)]
    pub smoke: bool,
    /// The rules to run [default: rules/default].
    #[arg(long, default_value = "rules/default")]
    pub rules: PathBuf,
    /// Elevators [default: 2 000 with --smoke, else 20 000].
    #[arg(long)]
    pub elevators: Option<u64>,
    /// Simulated seconds [default: 600].
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Kitchens (3 cameras each) [default: elevators / 20].
    #[arg(long)]
    pub kitchens: Option<u64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated seconds per wall-clock second; 0 publishes as fast as the broker takes it
    /// (latency then includes the backlog the pipeline builds).
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
    /// Timely workers of the citywatch under test.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Skip the broker-alone baseline.
    #[arg(long)]
    pub no_baseline: bool,
}

/// The broker alone: `city` published as the pipeline run will publish it, into an embedded
/// broker started in this process, and read by one plain QoS 1 subscriber that does nothing
/// with what it gets. Messages/s from the first publish to the last message received.
async fn broker_alone(sim_args: &SimulateArgs, city: &City) -> anyhow::Result<Value> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let port = free_port()?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    ingest::broker::start_embedded(addr, 2 << 20)?;
    let mut opts = MqttOptions::new(format!("bench-baseline-{port}"), "127.0.0.1", port);
    opts.set_max_packet_size(2 << 20, 2 << 20)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    client.subscribe("cw/v1/#", QoS::AtLeastOnce).await?;
    let received = Arc::new(AtomicU64::new(0));
    let last_ms = Arc::new(AtomicU64::new(0));
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let reader = {
        let (received, last_ms) = (received.clone(), last_ms.clone());
        tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(_))) => {
                        received.fetch_add(1, Ordering::Relaxed);
                        last_ms.store(crate::simulate::now_ms(), Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "baseline subscriber");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .context("the baseline subscriber was not subscribed in 10 s")??;
    let mut args = sim_args.clone();
    args.mqtt = Some(format!("mqtt://127.0.0.1:{port}"));
    args.truth = None;
    args.write_reference = None;
    let first_ms = crate::simulate::now_ms();
    let sim = simulate(&args, city.district.clone()).await?;
    let (mut seen, mut growth) = (0, Instant::now());
    while growth.elapsed() < Duration::from_secs(5) {
        let now = received.load(Ordering::Relaxed);
        if now >= sim.messages {
            break;
        }
        if now > seen {
            (seen, growth) = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();
    let got = received.load(Ordering::Relaxed).min(sim.messages);
    let seconds = (last_ms.load(Ordering::Relaxed).saturating_sub(first_ms) as f64 / 1000.0)
        .max(sim.wall_seconds);
    Ok(json!({
        "broker": "embedded (rumqttd), in the bench process",
        "subscriber": "one rumqttc client, QoS 1, counting only",
        "messages": sim.messages,
        "received": got,
        "messages_per_s": got as f64 / seconds,
        "publish_messages_per_s": sim.messages_per_s,
    }))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The citywatch under test; stopped (SIGTERM) when dropped.
struct UnderTest {
    child: Child,
}

impl Drop for UnderTest {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Resident memory and CPU seconds of a process, from /proc.
fn usage(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((rss_kb / 1024.0, ticks / 100.0))
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// How long after an incident starts its rule can have fired: the longest wait among the
/// injected kinds (a camera is offline 180 s after its last heartbeat) plus a margin.
const DETECTION_WINDOW_MS: u64 = 240_000;

/// Compares alerts with the ground truth: an incident is found when an alert of its rule,
/// for its device, started within the detection window after it.
fn accuracy(truth: &[Value], alerts: &[Value], end_ms: u64) -> Value {
    let rules: std::collections::BTreeSet<&str> =
        truth.iter().filter_map(|i| i["rule"].as_str()).collect();
    let counted: Vec<&Value> = truth
        .iter()
        .filter(|i| i["start_ms"].as_u64().unwrap_or(u64::MAX) + DETECTION_WINDOW_MS <= end_ms)
        .collect();
    let matches = |i: &Value, a: &Value| {
        let start = i["start_ms"].as_u64().unwrap_or(0);
        let since = a["since_ms"].as_u64().unwrap_or(0);
        a["rule"] == i["rule"]
            && a["group"]
                .as_str()
                .zip(i["device"].as_str())
                .is_some_and(|(g, d)| g == d || g.starts_with(&format!("{d}/")))
            && since + 1000 >= start
            && since <= start + DETECTION_WINDOW_MS
    };
    // Every alert of a rule the incidents exercise, judged against every incident.
    let relevant: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"].as_str().is_some_and(|r| rules.contains(r)))
        .collect();
    let found = counted
        .iter()
        .filter(|i| alerts.iter().any(|a| matches(i, a)))
        .count();
    let true_alerts = relevant
        .iter()
        .filter(|a| truth.iter().any(|i| matches(i, a)))
        .count();
    let mut per_rule = serde_json::Map::new();
    for rule in &rules {
        let of = |v: &&&Value| v["rule"] == *rule;
        let incidents: Vec<&&Value> = counted.iter().filter(of).collect();
        let found = incidents
            .iter()
            .filter(|i| alerts.iter().any(|a| matches(i, a)))
            .count();
        let alerts_n = relevant.iter().filter(of).count();
        let missed: Vec<&str> = incidents
            .iter()
            .filter(|i| !alerts.iter().any(|a| matches(i, a)))
            .filter_map(|i| i["device"].as_str())
            .collect();
        per_rule.insert(
            (*rule).to_owned(),
            json!({ "incidents": incidents.len(), "found": found, "alerts": alerts_n, "missed": missed }),
        );
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    json!({
        "recall": ratio(found, counted.len()),
        "precision": ratio(true_alerts, relevant.len()),
        "incidents": counted.len(),
        "found": found,
        "alerts": relevant.len(),
        "true_alerts": true_alerts,
        "per_rule": per_rule,
    })
}

/// Latency from the wall-clock time a simulated second was published to the time the alert
/// whose condition started in that second was journaled.
fn latencies(alerts: &[Value], sim: &Summary) -> Vec<f64> {
    let mut ms: Vec<f64> = alerts
        .iter()
        .filter_map(|a| {
            let since = a["since_ms"].as_u64()?;
            let second = since.checked_sub(sim.start_ms)? / 1000;
            let sent = *sim.second_sent_ms.get(second as usize)?;
            let opened = a["opened_ms"].as_u64()?;
            Some(opened as f64 - sent as f64)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let elevators = args
        .elevators
        .unwrap_or(if args.smoke { 2_000 } else { 20_000 });
    let seconds = args.seconds.unwrap_or(600);
    let sim_args = SimulateArgs {
        mqtt: None,
        out: None,
        reference: None,
        write_reference: Some(args.out.join("reference")),
        elevators,
        kitchens: args.kitchens.unwrap_or(elevators / 20),
        cameras_per_kitchen: 3,
        markets: (elevators / 500).max(2),
        scales_per_market: 30,
        merchants: (elevators / 20).max(20),
        seed: args.seed,
        seconds,
        speed: args.speed,
        start_ms: None,
        incident_every: 10,
        truth: Some(args.out.join("ground-truth.jsonl")),
        clients: 4,
        qos: 1,
        bad_every: 0,
        late_every: 0,
        late_ms: 0,
    };
    std::fs::create_dir_all(&args.out)?;
    let data = args.out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let city = City::generate(sim_args.size(), args.seed);
    city.write(&args.out.join("reference"))?;
    let baseline = if args.no_baseline {
        Value::Null
    } else {
        let b = broker_alone(&sim_args, &city).await?;
        tracing::info!(messages_per_s = %b["messages_per_s"], "broker alone");
        b
    };

    let (http, broker) = (free_port()?, free_port()?);
    let log = std::fs::File::create(args.out.join("citywatch.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "run",
            "--mqtt",
            "embedded",
            "--clock",
            "event",
            "--lateness-ms",
            "1000",
        ])
        .arg("--embedded-broker-addr")
        .arg(format!("127.0.0.1:{broker}"))
        .arg("--http")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--reference")
        .arg(args.out.join("reference"))
        .arg("--rules")
        .arg(&args.rules)
        .arg("--data-dir")
        .arg(&data)
        .arg("--workers")
        .arg(args.workers.to_string())
        .env(
            "CITYWATCH_MQTT_CLIENT_ID",
            format!("citywatch-bench-{http}"),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting citywatch run")?;
    let child = UnderTest { child };
    let pid = child.child.id();
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let ready = Instant::now();
    while get(&client, &format!("{base}/readyz")).await.is_err() {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "citywatch did not become ready; see {}",
            args.out.join("citywatch.log").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, cpu_before) = usage(pid).unwrap_or_default();

    // Publish, sampling citywatch's memory meanwhile.
    let mut rss_max: f64 = 0.0;
    let sim = {
        let mut sim_args = sim_args.clone();
        sim_args.mqtt = Some(format!("mqtt://127.0.0.1:{broker}"));
        let publish = simulate(&sim_args, city.district.clone());
        tokio::pin!(publish);
        let mut sample = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                r = &mut publish => break r?,
                _ = sample.tick() => rss_max = rss_max.max(usage(pid).map_or(0.0, |u| u.0)),
            }
        }
    };
    let started = Instant::now() - Duration::from_secs_f64(sim.wall_seconds);
    // Throughput: until citywatch has taken (and acknowledged) every message, or taken nothing
    // more for 10 s: the embedded broker drops what a subscriber falls too far behind on
    // (ingest::broker::RETAINED_BYTES), and the report says how much.
    let (mut taken, mut last_growth) = (0.0, Instant::now());
    let mut took = started.elapsed().as_secs_f64();
    loop {
        let m = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let now = metric(&m, "citywatch_mqtt_acks_total");
        if now > taken {
            taken = now;
            last_growth = Instant::now();
            took = started.elapsed().as_secs_f64();
        }
        if taken >= sim.messages as f64 || last_growth.elapsed() > Duration::from_secs(10) {
            break;
        }
        rss_max = rss_max.max(usage(pid).map_or(0.0, |u| u.0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if taken < sim.messages as f64 {
        tracing::warn!(
            published = sim.messages,
            taken,
            "the broker dropped messages: citywatch fell too far behind; try a lower --speed"
        );
    }
    let end_ms = sim.start_ms + seconds * 1000;
    // Complete up to the last second but the lateness.
    loop {
        let c = get(&client, &format!("{base}/api/v1/conditions")).await?;
        if c["as_of"].as_u64().unwrap_or(0) + 2000 >= end_ms {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the dataflow did not reach the end of the run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Alerts are journaled as the conditions come: wait for the journal to stop growing. The
    // incidents' rules are read one by one (a city raises more alerts than one page holds).
    let truth: Vec<Value> = std::fs::read_to_string(args.out.join("ground-truth.jsonl"))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let rules: std::collections::BTreeSet<String> = truth
        .iter()
        .filter_map(|i| i["rule"].as_str().map(str::to_owned))
        .collect();
    let mut alerts: Vec<Value> = Vec::new();
    let mut alerts_total = 0;
    for _ in 0..100 {
        let mut now = Vec::new();
        for rule in &rules {
            let page = get(
                &client,
                &format!("{base}/api/v1/alerts?rule={rule}&limit=1000"),
            )
            .await?;
            now.extend(page.as_array().cloned().unwrap_or_default());
        }
        let summary = get(&client, &format!("{base}/api/v1/alerts/summary")).await?;
        alerts_total = summary["firing"].as_array().map_or(0, |f| {
            f.iter().filter_map(|x| x["count"].as_u64()).sum::<u64>()
        });
        if !alerts.is_empty() && now.len() == alerts.len() {
            break;
        }
        alerts = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rss_end, cpu_after) = usage(pid).unwrap_or_default();
    drop(child);

    let acc = accuracy(&truth, &alerts, end_ms);
    let lat = latencies(&alerts, &sim);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let report = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "machine": { "cpus": cpus, "os": std::env::consts::OS, "arch": std::env::consts::ARCH,
                     "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim() },
        "settings": { "smoke": args.smoke, "elevators": elevators, "kitchens": sim_args.kitchens,
                      "cameras": city.district.cameras.len(), "scales": city.district.scales.len(),
                      "simulated_seconds": seconds, "speed": args.speed, "seed": args.seed, "workers": args.workers,
                      "broker": "embedded", "qos": 1, "clients": sim_args.clients, "lateness_ms": 1000,
                      "rules": args.rules },
        "messages": sim.messages,
        // Acknowledged by citywatch's ingest: the published messages (and its own pushes,
        // which it reads and ignores).
        "messages_taken": taken.min(sim.messages as f64),
        "events_per_s": taken.min(sim.messages as f64) / took,
        "publish": { "wall_seconds": sim.wall_seconds, "messages_per_s": sim.messages_per_s, "acked": sim.acked },
        "latency_ms": { "p50": percentile(&lat, 0.5), "p99": percentile(&lat, 0.99),
                        "max": lat.last().copied().unwrap_or(0.0), "n": lat.len(),
                        "from": "publish of the event's simulated second", "to": "alert journaled" },
        "accuracy": acc,
        "broker_alone": baseline,
        // The pipeline's rate as a share of the broker alone's.
        "share_of_broker": baseline["messages_per_s"].as_f64().filter(|b| *b > 0.0)
            .map(|b| taken.min(sim.messages as f64) / took / b),
        "citywatch": { "rss_mb_max": rss_max.max(rss_end), "cpu_seconds": cpu_after - cpu_before },
        "alerts_of_incident_rules": alerts.len(),
        "alerts_firing_at_end": alerts_total,
    });
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let summary = summary_md(&report);
    std::fs::write(args.out.join("summary.md"), &summary)?;
    std::io::stdout().lock().write_all(summary.as_bytes())?;
    Ok(())
}

fn summary_md(r: &Value) -> String {
    let a = &r["accuracy"];
    let mut s = format!(
        "# citywatch bench\n\n{} elevators, {} cameras, {} scales; {} simulated seconds, {} messages, {} workers, {} CPUs\n\n\
         | figure | value |\n|---|---|\n\
         | messages taken / published | {} / {} |\n\
         | events/s (published → taken by citywatch) | {:.0} |\n\
         | broker alone: messages/s (published → plain subscriber) | {} |\n\
         | citywatch as a share of the broker alone | {} |\n\
         | latency p50 / p99 / max (ms) | {:.0} / {:.0} / {:.0} |\n\
         | recall | {:.3} ({} of {} incidents) |\n\
         | precision | {:.3} ({} of {} alerts) |\n\
         | citywatch RSS max (MB) | {:.1} |\n\
         | citywatch CPU (s) | {:.2} |\n\n| rule | incidents | found | alerts |\n|---|---|---|---|\n",
        r["settings"]["elevators"],
        r["settings"]["cameras"],
        r["settings"]["scales"],
        r["settings"]["simulated_seconds"],
        r["messages"],
        r["settings"]["workers"],
        r["machine"]["cpus"],
        r["messages_taken"],
        r["messages"],
        r["events_per_s"].as_f64().unwrap_or(0.0),
        r["broker_alone"]["messages_per_s"]
            .as_f64()
            .map_or("not measured".into(), |v| format!("{v:.0}")),
        r["share_of_broker"]
            .as_f64()
            .map_or("–".into(), |v| format!("{:.0} %", v * 100.0)),
        r["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        r["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        r["latency_ms"]["max"].as_f64().unwrap_or(0.0),
        a["recall"].as_f64().unwrap_or(0.0),
        a["found"],
        a["incidents"],
        a["precision"].as_f64().unwrap_or(0.0),
        a["true_alerts"],
        a["alerts"],
        r["citywatch"]["rss_mb_max"].as_f64().unwrap_or(0.0),
        r["citywatch"]["cpu_seconds"].as_f64().unwrap_or(0.0),
    );
    if let Some(rules) = a["per_rule"].as_object() {
        for (rule, v) in rules {
            s.push_str(&format!(
                "| {rule} | {} | {} | {} |\n",
                v["incidents"], v["found"], v["alerts"]
            ));
        }
    }
    s
}
