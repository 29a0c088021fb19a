//! One run of the bench at one offered load: the citywatch processes under test, the city
//! published to them, and what they took, journaled and notified, against the ground truth.

use super::*;

/// One run at one offered load: a fresh citywatch child, the city published at
/// `sim_args.speed`, the alerts compared with the ground truth. Files go to `dir`.
pub(super) async fn measure(
    args: &BenchArgs,
    city: &City,
    sim_args: &SimulateArgs,
    dir: &std::path::Path,
    reference: &std::path::Path,
) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_dir_all(dir.join("data"));
    let run = Run::start(args, dir, reference)?;
    let client = reqwest::Client::new();
    run.ready(&client, dir).await?;
    let (_, cpu_before) = run.usage().unwrap_or_default();
    let (sim, mut rss_max) = run.publish(sim_args, city).await?;
    let started = Instant::now() - Duration::from_secs_f64(sim.wall_seconds);
    let taken = run.taken(&client, &sim, started, &mut rss_max).await?;
    let end_ms = sim.start_ms + sim_args.seconds * 1000;
    run.complete_to(&client, end_ms, started).await?;
    let truth: Vec<Value> = std::fs::read_to_string(dir.join("ground-truth.jsonl"))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let (alerts, alerts_total) = journaled_alerts(&client, &run.bases[0], &truth).await?;
    let delivered = first_deliveries(&client, &run.bases[0], &alerts).await?;
    let (rss_end, cpu_after) = run.usage().unwrap_or_default();
    drop(run);
    let lat = latencies(&alerts, &sim);
    let notified = |grouped: bool| notification_latency(&delivered, grouped, &sim);
    let (took, late) = (taken.took, taken.late);
    let taken = taken.messages.min(sim.messages as f64);
    // The backlog left when publishing ended: how long citywatch needed after the last publish
    // to take everything. A load is sustained when nothing was dropped, citywatch took at least
    // 95 % of the offered rate, and what was left drained within 2 s.
    let drain_s = (took - sim.wall_seconds).max(0.0);
    let kept_pace = taken / took >= SUSTAINED_SHARE * sim.messages_per_s;
    Ok(json!({
        "speed": sim_args.speed,
        "messages": sim.messages,
        // Acknowledged by citywatch's ingest: the published messages (and its own pushes,
        // which it reads and ignores).
        "messages_taken": taken,
        "events_per_s": taken / took,
        // Events that arrived more than the lateness behind the newest (placed at the frontier):
        // with several connections publishing as fast as they can, one runs ahead of another.
        "late_events": late,
        "publish": { "wall_seconds": sim.wall_seconds, "messages_per_s": sim.messages_per_s, "acked": sim.acked },
        "drain_seconds": drain_s,
        "sustained": taken >= sim.messages as f64 && kept_pace && drain_s <= SUSTAINED_DRAIN_S,
        "latency_ms": { "p50": percentile(&lat, 0.5), "p95": percentile(&lat, 0.95), "p99": percentile(&lat, 0.99),
                        "max": lat.last().copied().unwrap_or(0.0), "n": lat.len(),
                        "from": "publish of the event's simulated second", "to": "alert journaled" },
        "notification_latency_ms": { "at_once": notified(false), "grouped": notified(true),
                        "from": "publish of the event's simulated second",
                        "to": "first notification delivered to the broker" },
        "accuracy": accuracy(&truth, &alerts, end_ms),
        "citywatch": { "rss_mb_max": rss_max.max(rss_end), "cpu_seconds": cpu_after - cpu_before },
        "alerts_of_incident_rules": alerts.len(),
        "alerts_firing_at_end": alerts_total,
    }))
}

/// The citywatch processes of one run (one, or a cluster), their broker and HTTP bases;
/// stopped together when dropped (a cluster stops as a whole).
struct Run {
    children: Vec<UnderTest>,
    pids: Vec<u32>,
    bases: Vec<String>,
    broker: u16,
}

impl Run {
    fn start(
        args: &BenchArgs,
        dir: &std::path::Path,
        reference: &std::path::Path,
    ) -> anyhow::Result<Run> {
        let broker = free_port()?;
        let n = args.processes.unwrap_or(1).max(1);
        let https: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mqtt = match args.processes {
            None => "embedded".to_owned(),
            Some(_) => {
                ingest::broker::start_embedded(
                    std::net::SocketAddr::from(([127, 0, 0, 1], broker)),
                    None,
                    2 << 20,
                )?;
                format!("mqtt://127.0.0.1:{broker}")
            }
        };
        let hosts = dir.join("hosts.txt");
        if n > 1 {
            let lines: Vec<String> = https
                .iter()
                .map(|h| Ok(format!("127.0.0.1:{} http://127.0.0.1:{h}", free_port()?)))
                .collect::<anyhow::Result<_>>()?;
            std::fs::write(&hosts, lines.join("\n"))?;
        }
        let mut children = Vec::new();
        for (i, http) in https.iter().enumerate() {
            let suffix = if i == 0 {
                String::new()
            } else {
                format!("-{i}")
            };
            let log = std::fs::File::create(dir.join(format!("citywatch{suffix}.log")))?;
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["run", "--clock", "event", "--lateness-ms", "1000"])
                .arg("--mqtt")
                .arg(&mqtt)
                .arg("--embedded-broker-addr")
                .arg(format!("127.0.0.1:{broker}"))
                .arg("--http")
                .arg(format!("127.0.0.1:{http}"))
                .arg("--reference")
                .arg(reference)
                .arg("--rules")
                .arg(&args.rules)
                .arg("--data-dir")
                .arg(dir.join(format!("data{suffix}")))
                .arg("--workers")
                .arg(args.workers.to_string())
                .env(
                    "CITYWATCH_MQTT_CLIENT_ID",
                    format!("citywatch-bench-{}", https[0]),
                )
                .stdout(Stdio::null())
                .stderr(log);
            if n > 1 {
                cmd.arg("--processes")
                    .arg(n.to_string())
                    .arg("--process-index")
                    .arg(i.to_string())
                    .arg("--hosts")
                    .arg(&hosts);
            }
            children.push(UnderTest {
                child: cmd.spawn().context("starting citywatch run")?,
            });
        }
        Ok(Run {
            pids: children.iter().map(|c| c.child.id()).collect(),
            children,
            bases: https
                .iter()
                .map(|h| format!("http://127.0.0.1:{h}"))
                .collect(),
            broker,
        })
    }

    /// (RSS in MB, CPU seconds) summed over the processes.
    fn usage(&self) -> Option<(f64, f64)> {
        self.pids
            .iter()
            .map(|&p| usage(p))
            .try_fold((0.0, 0.0), |(r, c), u| u.map(|(ur, uc)| (r + ur, c + uc)))
    }

    fn rss(&self) -> f64 {
        self.usage().map_or(0.0, |u| u.0)
    }

    /// Waits until every process is ready (a minute at most).
    async fn ready(&self, client: &reqwest::Client, dir: &std::path::Path) -> anyhow::Result<()> {
        let ready = Instant::now();
        for b in &self.bases {
            while get(client, &format!("{b}/readyz")).await.is_err() {
                anyhow::ensure!(
                    ready.elapsed() < Duration::from_secs(60),
                    "citywatch did not become ready; see {}",
                    dir.join("citywatch.log").display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Publishes the city to the run's broker, sampling the processes' memory meanwhile.
    async fn publish(
        &self,
        sim_args: &SimulateArgs,
        city: &City,
    ) -> anyhow::Result<(Summary, f64)> {
        let mut rss_max: f64 = 0.0;
        let mut sim_args = sim_args.clone();
        sim_args.mqtt = Some(format!("mqtt://127.0.0.1:{}", self.broker));
        let publish = simulate(&sim_args, city.district.clone());
        tokio::pin!(publish);
        let mut sample = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                r = &mut publish => return Ok((r?, rss_max)),
                _ = sample.tick() => rss_max = rss_max.max(self.rss()),
            }
        }
    }

    /// Throughput: waits until citywatch has taken (and acknowledged) every message, or taken
    /// nothing more for 10 s: the embedded broker drops what a subscriber falls too far behind
    /// on (ingest::broker::RETAINED_BYTES), and the report says how much.
    async fn taken(
        &self,
        client: &reqwest::Client,
        sim: &Summary,
        started: Instant,
        rss_max: &mut f64,
    ) -> anyhow::Result<Taken> {
        let mut taken = Taken {
            messages: 0.0,
            took: started.elapsed().as_secs_f64(),
            late: 0.0,
        };
        let mut last_growth = Instant::now();
        loop {
            let (mut now, mut late_now) = (0.0, 0.0);
            for b in &self.bases {
                let m = client
                    .get(format!("{b}/metrics"))
                    .send()
                    .await?
                    .text()
                    .await?;
                now += metric(&m, "citywatch_mqtt_acks_total");
                late_now += metric(&m, "citywatch_late_events_total");
            }
            taken.late = late_now;
            if now > taken.messages {
                taken.messages = now;
                last_growth = Instant::now();
                taken.took = started.elapsed().as_secs_f64();
            }
            if taken.messages >= sim.messages as f64
                || last_growth.elapsed() > Duration::from_secs(10)
            {
                break;
            }
            *rss_max = rss_max.max(self.rss());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if taken.messages < sim.messages as f64 {
            tracing::warn!(
                published = sim.messages,
                taken = taken.messages,
                "the broker dropped messages: citywatch fell too far behind; try a lower --speed"
            );
        }
        Ok(taken)
    }

    /// Waits until the conditions are complete up to the run's last second but the lateness.
    async fn complete_to(
        &self,
        client: &reqwest::Client,
        end_ms: u64,
        started: Instant,
    ) -> anyhow::Result<()> {
        loop {
            let c = get(client, &format!("{}/api/v1/conditions", self.bases[0])).await?;
            if c["as_of"].as_u64().unwrap_or(0) + 2000 >= end_ms {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(900),
                "the dataflow did not reach the end of the run"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Stopped together: a cluster stops as a whole.
        for c in &self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.child.id().to_string())
                .status();
        }
    }
}

/// What citywatch took of a run: messages acknowledged, by when (seconds from the start of
/// publishing), and the events it placed at the frontier as late.
struct Taken {
    messages: f64,
    took: f64,
    late: f64,
}

/// The journaled alerts of the incidents' rules, once the journal stops growing (alerts are
/// journaled as the conditions come; the rules are read one by one: a city raises more alerts
/// than one page holds), and how many alerts fire at the end.
async fn journaled_alerts(
    client: &reqwest::Client,
    base: &str,
    truth: &[Value],
) -> anyhow::Result<(Vec<Value>, u64)> {
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
                client,
                &format!("{base}/api/v1/alerts?rule={rule}&limit=1000"),
            )
            .await?;
            now.extend(page.as_array().cloned().unwrap_or_default());
        }
        let summary = get(client, &format!("{base}/api/v1/alerts/summary")).await?;
        alerts_total = summary["firing"].as_array().map_or(0, |f| {
            f.iter().filter_map(|x| x["count"].as_u64()).sum::<u64>()
        });
        if !alerts.is_empty() && now.len() == alerts.len() {
            break;
        }
        alerts = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((alerts, alerts_total))
}

/// When each alert's first notification was delivered (the broker took the push), for at
/// most 200 alerts, with whether it travelled grouped; delivery runs beside the journal, so
/// each alert waits until none of its notifications is pending (10 s at most).
async fn first_deliveries(
    client: &reqwest::Client,
    base: &str,
    alerts: &[Value],
) -> anyhow::Result<Vec<(u64, u64, bool)>> {
    let mut delivered = Vec::new();
    for a in alerts.iter().take(200) {
        let (Some(id), Some(since)) = (a["id"].as_str(), a["since_ms"].as_u64()) else {
            continue;
        };
        let waited = Instant::now();
        loop {
            let rows = get(
                client,
                &format!("{base}/api/v1/notifications?alert={id}&limit=1000"),
            )
            .await?;
            let rows = rows.as_array().cloned().unwrap_or_default();
            let pending = rows.iter().any(|n| n["status"] == "pending");
            if !pending || waited.elapsed() > Duration::from_secs(10) {
                if let Some((first, grouped)) = rows
                    .iter()
                    .filter(|n| n["version"] == 1)
                    .filter_map(|n| Some((n["delivered_ms"].as_u64()?, !n["group"].is_null())))
                    .min()
                {
                    delivered.push((since, first, grouped));
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(delivered)
}

/// From the publish of an alert's simulated second to its first notification. Under the
/// default policy most alerts wait 10 s (`group_wait`) for others of their building, market or
/// kitchen to travel with them; critical elevator alerts go at once: reported apart.
fn notification_latency(delivered: &[(u64, u64, bool)], grouped: bool, sim: &Summary) -> Value {
    let mut ms: Vec<f64> = delivered
        .iter()
        .filter(|d| d.2 == grouped)
        .filter_map(|&(since, at, _)| {
            let second = since.checked_sub(sim.start_ms)? / 1000;
            let sent = *sim.second_sent_ms.get(second as usize)?;
            Some(at as f64 - sent as f64)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    json!({ "p50": percentile(&ms, 0.5), "p95": percentile(&ms, 0.95), "p99": percentile(&ms, 0.99),
            "max": ms.last().copied().unwrap_or(0.0), "n": ms.len() })
}
