//! `citywatch bench`: end to end on this machine. A generated city is published as fast as
//! the broker takes it (QoS 1, several connections) into a `citywatch run` child process
//! (embedded broker, default rules, event-time clock); then the alerts it raised are compared
//! with the simulator's ground truth. Before it, unless `--no-baseline`, the same city goes
//! through the same kind of broker alone (an embedded broker in this process and one plain
//! QoS 1 subscriber), so the pipeline is reported as a share of what the broker delivers.
//! Writes `report.json` and `summary.md`.

use crate::plot;
use crate::simulate::{SimulateArgs, Summary, simulate};
use anyhow::Context;
use serde_json::{Value, json};
use simulators::city::City;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod run;
use run::measure;

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
    /// Timely workers of the citywatch under test (of each process, with `--processes`).
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Run citywatch as a cluster of this many processes (1: one process), all on a broker
    /// hosted by the bench itself (embedded in the bench process, so that one process and a
    /// cluster are measured on the same broker). Without it, one process with its own
    /// embedded broker.
    #[arg(long)]
    pub processes: Option<usize>,
    /// Skip the broker-alone baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Step the offered load: one run per speed (e.g. `--steps 10,20,40,80`), each with a
    /// fresh citywatch; reports every step, the fastest sustained one, and `load.svg`.
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<f64>,
    /// Several cities, one after the other: elevators per city (e.g. `--sizes 1000,10000,100000`;
    /// the rest in proportion); reports each and `sizes.svg`.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<u64>,
}

/// The broker alone: `city` published as the pipeline run will publish it, into an embedded
/// broker started in this process, and read by one plain QoS 1 subscriber that does nothing
/// with what it gets. Messages/s from the first publish to the last message received.
async fn broker_alone(sim_args: &SimulateArgs, city: &City) -> anyhow::Result<Value> {
    use rumqttc::{AsyncClient, Event, Packet, QoS};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let port = free_port()?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    ingest::broker::start_embedded(addr, None, 2 << 20)?;
    let opts = crate::simulate::client_options(format!("bench-baseline-{port}"), "127.0.0.1", port);
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
        // Detection delay, in event time: from the incident's start to the first alert that
        // found it (the rule's own wait, `for` or absence, included).
        let mut delays: Vec<f64> = incidents
            .iter()
            .filter_map(|i| {
                let start = i["start_ms"].as_u64()?;
                alerts
                    .iter()
                    .filter(|a| matches(i, a))
                    .filter_map(|a| a["since_ms"].as_u64())
                    .min()
                    .map(|since| since as f64 - start as f64)
            })
            .collect();
        delays.sort_by(f64::total_cmp);
        per_rule.insert(
            (*rule).to_owned(),
            json!({ "incidents": incidents.len(), "found": found, "alerts": alerts_n, "missed": missed,
                    "detection_delay_ms": { "p50": percentile(&delays, 0.5), "max": delays.last().copied().unwrap_or(0.0) } }),
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
    if args.sizes.is_empty() {
        let elevators = args
            .elevators
            .unwrap_or(if args.smoke { 2_000 } else { 20_000 });
        let report = bench_city(&args, elevators, &args.out).await?;
        std::io::stdout()
            .lock()
            .write_all(summary_md(&report).as_bytes())?;
        return Ok(());
    }
    // One city per size, one after the other, so the growth of cost with the city shows.
    let mut cities = Vec::new();
    for &size in &args.sizes {
        let dir = args.out.join(format!("size-{size}"));
        let report = bench_city(&args, size, &dir).await?;
        tracing::info!(elevators = size, events_per_s = %report["events_per_s"], "city done");
        cities.push(report);
    }
    let report = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "machine": cities.first().map(|c| c["machine"].clone()),
        "sizes": cities.iter().map(|c| json!({
            "elevators": c["settings"]["elevators"], "cameras": c["settings"]["cameras"],
            "scales": c["settings"]["scales"], "devices": devices(c), "messages": c["messages"],
            "messages_taken": c["messages_taken"],
            "events_per_s": c["events_per_s"], "share_of_broker": c["share_of_broker"],
            "latency_ms": c["latency_ms"], "accuracy": { "recall": c["accuracy"]["recall"],
            "precision": c["accuracy"]["precision"], "incidents": c["accuracy"]["incidents"],
            "alerts": c["accuracy"]["alerts"] }, "citywatch": c["citywatch"],
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(
        args.out.join("sizes.svg"),
        plot::cost_vs_size(&report["sizes"]),
    )?;
    let summary = sizes_md(&report);
    std::fs::write(args.out.join("summary.md"), &summary)?;
    std::io::stdout().lock().write_all(summary.as_bytes())?;
    Ok(())
}

/// A recall or precision, or a dash when there was nothing to measure it on.
fn ratio(value: &Value, of: &Value) -> String {
    match (value.as_f64(), of.as_u64()) {
        (Some(v), Some(n)) if n > 0 => format!("{v:.3}"),
        _ => "– (none)".into(),
    }
}

/// Devices of a city's report: elevators, cameras and scales.
fn devices(r: &Value) -> u64 {
    ["elevators", "cameras", "scales"]
        .iter()
        .filter_map(|k| r["settings"][k].as_u64())
        .sum()
}

fn sizes_md(r: &Value) -> String {
    let f = |x: &Value| x.as_f64().unwrap_or(0.0);
    let mut s = String::from(
        "# citywatch bench: cost against the city's size\n\n\
         | elevators | devices | messages taken / published | events/s | share of broker | latency p50 / p99 (ms) | recall | precision | RSS max (MB) | CPU (s) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in r["sizes"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| {} | {} | {} / {} | {:.0} | {} | {:.0} / {:.0} | {} | {} | {:.1} | {:.1} |\n",
            c["elevators"],
            c["devices"],
            c["messages_taken"],
            c["messages"],
            f(&c["events_per_s"]),
            c["share_of_broker"]
                .as_f64()
                .map_or("–".into(), |x| format!("{:.0} %", x * 100.0)),
            f(&c["latency_ms"]["p50"]),
            f(&c["latency_ms"]["p99"]),
            ratio(&c["accuracy"]["recall"], &c["accuracy"]["incidents"]),
            ratio(&c["accuracy"]["precision"], &c["accuracy"]["alerts"]),
            f(&c["citywatch"]["rss_mb_max"]),
            f(&c["citywatch"]["cpu_seconds"]),
        ));
    }
    s.push_str("\nPlot: sizes.svg. Each size's own report is in size-N/.\n");
    s
}

/// One city of `elevators` elevators (and the rest in proportion): the broker alone, then each
/// step; writes `out/report.json` and `out/summary.md` and returns the report.
async fn bench_city(
    args: &BenchArgs,
    elevators: u64,
    out: &std::path::Path,
) -> anyhow::Result<Value> {
    let seconds = args.seconds.unwrap_or(600);
    let sim_args = SimulateArgs {
        mqtt: None,
        out: None,
        reference: None,
        write_reference: Some(out.join("reference")),
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
        idle_report_every: 60,
        truth: Some(out.join("ground-truth.jsonl")),
        clients: 4,
        qos: 1,
        bad_every: 0,
        late_every: 0,
        late_ms: 0,
        outage_every: 0,
        outage_ms: 0,
        backlog_after_ms: 0,
    };
    std::fs::create_dir_all(out)?;
    let city = City::generate(sim_args.size(), args.seed);
    city.write(&out.join("reference"))?;
    let baseline = if args.no_baseline {
        Value::Null
    } else {
        let b = broker_alone(&sim_args, &city).await?;
        tracing::info!(messages_per_s = %b["messages_per_s"], "broker alone");
        b
    };

    let speeds = if args.steps.is_empty() {
        vec![args.speed]
    } else {
        args.steps.clone()
    };
    let mut steps = Vec::new();
    for (n, speed) in speeds.iter().enumerate() {
        let dir = if speeds.len() == 1 {
            out.to_path_buf()
        } else {
            out.join(format!("step-{n}"))
        };
        let mut step_args = sim_args.clone();
        step_args.speed = *speed;
        step_args.truth = Some(dir.join("ground-truth.jsonl"));
        let step = measure(args, &city, &step_args, &dir, &out.join("reference")).await?;
        tracing::info!(speed, events_per_s = %step["events_per_s"], sustained = %step["sustained"], "step done");
        steps.push(step);
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let share = |step: &Value| {
        baseline["messages_per_s"]
            .as_f64()
            .filter(|b| *b > 0.0)
            .and_then(|b| Some(step["events_per_s"].as_f64()? / b))
    };
    let max_sustained = steps
        .iter()
        .filter(|s| s["sustained"] == true)
        .max_by(|a, b| a["events_per_s"].as_f64().unwrap_or(0.0).total_cmp(&b["events_per_s"].as_f64().unwrap_or(0.0)))
        .map(|s| json!({ "speed": s["speed"], "events_per_s": s["events_per_s"], "share_of_broker": share(s) }));
    let mut report = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "machine": { "cpus": cpus, "os": std::env::consts::OS, "arch": std::env::consts::ARCH,
                     "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim() },
        "settings": { "smoke": args.smoke, "elevators": elevators, "kitchens": sim_args.kitchens,
                      "cameras": city.district.cameras.len(), "scales": city.district.scales.len(),
                      "simulated_seconds": seconds, "speed": args.speed, "steps": speeds, "seed": args.seed,
                      "workers": args.workers, "processes": args.processes.unwrap_or(1),
                      "broker": if args.processes.is_some() { "embedded in the bench" } else { "embedded" }, "qos": 1, "clients": sim_args.clients,
                      "lateness_ms": 1000, "rules": args.rules },
        "broker_alone": baseline,
        "max_sustained": max_sustained,
    });
    // One step: its figures at the top level, as before; several: a list, and a plot.
    if let ([only], Some(obj)) = (steps.as_slice(), report.as_object_mut()) {
        if let Some(fields) = only.as_object() {
            obj.extend(fields.clone());
        }
        obj.insert("share_of_broker".into(), json!(share(only)));
    } else {
        for s in &mut steps {
            let sh = share(s);
            s["share_of_broker"] = json!(sh);
        }
        std::fs::write(out.join("load.svg"), plot::latency_vs_load(&steps))?;
        report["steps"] = json!(steps);
    }
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join("summary.md"), summary_md(&report))?;
    Ok(report)
}

/// A load is sustained when citywatch has taken everything within this long after the last
/// publish (a backlog that grew during the run takes longer to drain).
const SUSTAINED_DRAIN_S: f64 = 2.0;
/// …and when it took at least this share of the offered rate.
const SUSTAINED_SHARE: f64 = 0.95;

fn summary_md(r: &Value) -> String {
    // With steps, the figures table shows the last (fastest offered) step; the steps table all.
    let v = r["steps"].as_array().and_then(|s| s.last()).unwrap_or(r);
    let a = &v["accuracy"];
    let f = |x: &Value| x.as_f64().unwrap_or(0.0);
    let mut s = format!(
        "# citywatch bench\n\n{} elevators, {} cameras, {} scales; {} simulated seconds, {} messages, {} workers, {} CPUs\n\n\
         | figure{} | value |\n|---|---|\n\
         | messages taken / published | {} / {} |\n\
         | events/s (published → taken by citywatch) | {:.0} |\n\
         | broker alone: messages/s (published → plain subscriber) | {} |\n\
         | citywatch as a share of the broker alone | {} |\n\
         | latency p50 / p95 / p99 / max (ms) | {:.0} / {:.0} / {:.0} / {:.0} |\n\
         | to the first notification delivered, sent at once: p50 / p95 / p99 / max (ms) | {:.0} / {:.0} / {:.0} / {:.0} |\n\
         | … grouped (the policy's 10 s `group_wait`): p50 / max (ms) | {:.0} / {:.0} |\n\
         | recall | {:.3} ({} of {} incidents) |\n\
         | precision | {:.3} ({} of {} alerts) |\n\
         | citywatch RSS max (MB) | {:.1} |\n\
         | citywatch CPU (s) | {:.2} |\n",
        r["settings"]["elevators"],
        r["settings"]["cameras"],
        r["settings"]["scales"],
        r["settings"]["simulated_seconds"],
        v["messages"],
        r["settings"]["workers"],
        r["machine"]["cpus"],
        if r["steps"].is_array() {
            " (last step)"
        } else {
            ""
        },
        v["messages_taken"],
        v["messages"],
        f(&v["events_per_s"]),
        r["broker_alone"]["messages_per_s"]
            .as_f64()
            .map_or("not measured".into(), |x| format!("{x:.0}")),
        v["share_of_broker"]
            .as_f64()
            .map_or("–".into(), |x| format!("{:.0} %", x * 100.0)),
        f(&v["latency_ms"]["p50"]),
        f(&v["latency_ms"]["p95"]),
        f(&v["latency_ms"]["p99"]),
        f(&v["latency_ms"]["max"]),
        f(&v["notification_latency_ms"]["at_once"]["p50"]),
        f(&v["notification_latency_ms"]["at_once"]["p95"]),
        f(&v["notification_latency_ms"]["at_once"]["p99"]),
        f(&v["notification_latency_ms"]["at_once"]["max"]),
        f(&v["notification_latency_ms"]["grouped"]["p50"]),
        f(&v["notification_latency_ms"]["grouped"]["max"]),
        f(&a["recall"]),
        a["found"],
        a["incidents"],
        f(&a["precision"]),
        a["true_alerts"],
        a["alerts"],
        f(&v["citywatch"]["rss_mb_max"]),
        f(&v["citywatch"]["cpu_seconds"]),
    );
    if let Some(steps) = r["steps"].as_array() {
        s.push_str(
            "\n| speed | offered msgs/s | taken events/s | share of broker | drain (s) | sustained | latency p50 / p99 (ms) | recall | precision |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for st in steps {
            s.push_str(&format!(
                "| {} | {:.0} | {:.0} | {} | {:.1} | {} | {:.0} / {:.0} | {:.3} | {:.3} |\n",
                st["speed"],
                f(&st["publish"]["messages_per_s"]),
                f(&st["events_per_s"]),
                st["share_of_broker"]
                    .as_f64()
                    .map_or("–".into(), |x| format!("{:.0} %", x * 100.0)),
                f(&st["drain_seconds"]),
                if st["sustained"] == true { "yes" } else { "no" },
                f(&st["latency_ms"]["p50"]),
                f(&st["latency_ms"]["p99"]),
                f(&st["accuracy"]["recall"]),
                f(&st["accuracy"]["precision"]),
            ));
        }
        s.push_str(&match r["max_sustained"].as_object() {
            Some(m) => format!(
                "\nFastest sustained: speed {} at {:.0} events/s (plot: load.svg).\n",
                m["speed"],
                f(&m["events_per_s"])
            ),
            None => "\nNone of the steps was sustained (plot: load.svg).\n".into(),
        });
    }
    s.push_str(
        "\n| rule | incidents | found | alerts | detection delay p50 / max (s, event time) |\n|---|---|---|---|---|\n",
    );
    if let Some(rules) = a["per_rule"].as_object() {
        for (rule, x) in rules {
            s.push_str(&format!(
                "| {rule} | {} | {} | {} | {:.1} / {:.1} |\n",
                x["incidents"],
                x["found"],
                x["alerts"],
                f(&x["detection_delay_ms"]["p50"]) / 1000.0,
                f(&x["detection_delay_ms"]["max"]) / 1000.0
            ));
        }
    }
    s
}
