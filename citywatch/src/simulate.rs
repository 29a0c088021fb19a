//! `citywatch simulate`: a deterministic city driving any MQTT broker (or a recording file)
//! like real devices: many client connections, real time, accelerated or as fast as the
//! broker takes it, with injected incidents (and their ground truth), bad input and late
//! delivery.

use anyhow::Context;
pub(crate) use model::time::now_ms;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use simulators::city::{City, Size};
use simulators::{District, Message, Simulator};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Broker to publish to (`mqtt://host:port`).
    #[arg(long)]
    pub mqtt: Option<String>,
    /// Write the messages to this recording (JSON Lines) instead of publishing.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Simulate the devices of this reference directory instead of generating a city.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Write the generated city's reference files here (load them with `run --reference`).
    #[arg(long)]
    pub write_reference: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    pub elevators: u64,
    #[arg(long, default_value_t = 100)]
    pub kitchens: u64,
    #[arg(long, default_value_t = 3)]
    pub cameras_per_kitchen: u64,
    #[arg(long, default_value_t = 4)]
    pub markets: u64,
    #[arg(long, default_value_t = 60)]
    pub scales_per_market: u64,
    /// Merchants besides the market stalls (complaints name them).
    #[arg(long, default_value_t = 200)]
    pub merchants: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated seconds to run.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Simulated seconds per wall-clock second; 0 publishes as fast as the broker takes it.
    /// Anything but 1 needs citywatch started with `--clock event`.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Event time of the first simulated second, epoch ms [default: now, or `seconds` ago
    /// when faster than real time, so no event is in the future].
    #[arg(long)]
    pub start_ms: Option<u64>,
    /// Seconds between injected incidents (0: none).
    #[arg(long, default_value_t = 10)]
    pub incident_every: u64,
    /// Seconds between the frames of an idle elevator car (a moving one reports every
    /// second); 1 gives exactly one message per elevator and second, a flat load.
    #[arg(long, default_value_t = 60)]
    pub idle_report_every: u64,
    /// Where to write the ground truth (JSON Lines, one incident a line).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// MQTT client connections; each device always uses the same one.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// 0 or 1.
    #[arg(long, default_value_t = 1)]
    pub qos: u8,
    /// Also send a bad message (not JSON, not an object, a bad id) after one valid message in N
    /// (0: none).
    #[arg(long, default_value_t = 0)]
    pub bad_every: u64,
    /// Hold one message in N back and deliver it `late_ms` of event time later (0: none).
    #[arg(long, default_value_t = 0)]
    pub late_every: u64,
    #[arg(long, default_value_t = 5000)]
    pub late_ms: u64,
    /// One device in N loses its link for `outage_ms` at a time (a third of the time) and,
    /// on reconnecting, delivers what it buffered, oldest first: a terminal's backlog
    /// (0: none).
    #[arg(long, default_value_t = 0)]
    pub outage_every: u64,
    #[arg(long, default_value_t = 45_000)]
    pub outage_ms: u64,
    /// A device back from an outage sends its live messages first and its backlog this long
    /// after its link is back, ms (0: the backlog first).
    #[arg(long, default_value_t = 0)]
    pub backlog_after_ms: u64,
}

/// When a device's link is down: one device in `every` (by its id), for `ms` of every `3 ms`,
/// at an offset of its own. A message at `ts` that falls in an outage goes out when the link
/// is back; the time that happens, if so.
fn outage_end(topic: &str, ts: u64, every: u64, ms: u64) -> Option<u64> {
    if every == 0 || ms == 0 {
        return None;
    }
    let device = topic.split('/').nth(3)?;
    // FNV-1a: stable across runs and builds, which a std hasher is not.
    let h = device.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    if !h.is_multiple_of(every) {
        return None;
    }
    let period = 3 * ms;
    let phase = (ts + (h >> 8) % period) % period;
    (phase < ms).then(|| ts + (ms - phase))
}

/// What a simulation sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub messages: u64,
    pub acked: u64,
    pub bad: u64,
    pub late: u64,
    /// Messages delivered late in a device's backlog (`--outage-every`).
    pub backlog: u64,
    pub incidents: u64,
    pub simulated_seconds: u64,
    pub wall_seconds: f64,
    pub messages_per_s: f64,
    /// Wall-clock time (epoch ms) each simulated second's messages were handed to the
    /// clients, for latency measurements.
    #[serde(skip)]
    pub second_sent_ms: Vec<u64>,
    /// Event time of the first simulated second.
    pub start_ms: u64,
}

impl SimulateArgs {
    pub fn size(&self) -> Size {
        Size {
            elevators: self.elevators,
            kitchens: self.kitchens,
            cameras_per_kitchen: self.cameras_per_kitchen,
            markets: self.markets,
            scales_per_market: self.scales_per_market,
            merchants: self.merchants,
        }
    }

    /// The devices to simulate: from `--reference`, or a generated city (written out when
    /// `--write-reference` is given).
    pub fn district(&self) -> anyhow::Result<District> {
        if let Some(dir) = &self.reference {
            let reference = dataflow::Reference::load(dir)
                .with_context(|| format!("reference data in {}", dir.display()))?;
            return Ok(crate::demo::district(&reference));
        }
        let city = City::generate(self.size(), self.seed);
        if let Some(dir) = &self.write_reference {
            city.write(dir)
                .with_context(|| format!("writing reference data to {}", dir.display()))?;
        }
        Ok(city.district)
    }
}

/// Where messages go.
enum Sink {
    Mqtt(Vec<Publisher>),
    File(BufWriter<std::fs::File>),
}

impl Sink {
    /// The broker (one connection per `--clients`) or the recording the arguments name.
    fn open(args: &SimulateArgs) -> anyhow::Result<Sink> {
        Ok(match (&args.mqtt, &args.out) {
            (Some(url), _) => {
                let config = ingest::MqttConfig {
                    url: url.clone(),
                    ..ingest::MqttConfig::default()
                };
                let (host, port) = config.endpoint()?;
                Sink::Mqtt(
                    (0..args.clients.max(1))
                        .map(|i| Publisher::connect(&host, port, format!("sim-{}-{i}", args.seed)))
                        .collect(),
                )
            }
            (None, Some(path)) => Sink::File(BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            )),
            (None, None) => {
                anyhow::bail!("say where to send the messages: --mqtt URL or --out FILE")
            }
        })
    }

    /// Flushes the recording, or waits (a minute at most, at QoS 1) until the broker has
    /// acknowledged every one of `sent` and disconnects; how many were acknowledged.
    async fn finish(&mut self, qos: QoS, sent: u64) -> anyhow::Result<u64> {
        match self {
            Sink::File(w) => {
                w.flush()?;
                Ok(sent)
            }
            Sink::Mqtt(clients) => {
                let acked = || {
                    clients
                        .iter()
                        .map(|c| c.acked.load(Ordering::Relaxed))
                        .sum::<u64>()
                };
                let mut done = 0;
                if qos == QoS::AtLeastOnce {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while acked() < sent && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    done = acked();
                }
                for c in clients.iter() {
                    c.done.store(true, Ordering::Relaxed);
                    let _ = c.client.disconnect().await;
                }
                Ok(done)
            }
        }
    }

    /// One message: to the connection its device always uses, or to the recording.
    async fn send(&mut self, m: Message, qos: QoS) -> anyhow::Result<()> {
        match self {
            Sink::Mqtt(clients) => {
                let c = &clients[client_of(&m.topic, clients.len())];
                c.client
                    .publish(m.topic, qos, false, m.payload)
                    .await
                    .context("publishing")?;
            }
            Sink::File(w) => {
                writeln!(w, "{}", model::recording::line(&m.topic, &m.payload, None))?;
            }
        }
        Ok(())
    }
}

struct Publisher {
    client: AsyncClient,
    acked: Arc<AtomicU64>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

/// The options of citywatch's own MQTT clients that publish (the simulator, the demo) or
/// watch (the bench's plain subscriber): a 30-s keep-alive, packets up to 2 MiB.
pub(crate) fn client_options(id: String, host: &str, port: u16) -> MqttOptions {
    let mut opts = MqttOptions::new(id, host, port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(2 << 20, 2 << 20);
    opts
}

impl Publisher {
    fn connect(host: &str, port: u16, id: String) -> Publisher {
        let mut opts = client_options(id, host, port);
        opts.set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
        let acked = Arc::new(AtomicU64::new(0));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counted, finished) = (acked.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) if finished.load(Ordering::Relaxed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Publisher {
            client,
            acked,
            done,
        }
    }
}

/// Bad input, in turn: not JSON, not an object, a bad id in the topic.
fn bad(m: &Message, n: u64) -> Message {
    let (topic, payload) = match n % 3 {
        0 => (m.topic.clone(), m.payload[..m.payload.len() / 2].to_vec()),
        1 => (m.topic.clone(), b"[1, 2, 3]".to_vec()),
        // cw/v1/<kind>/<id>/…: the device id is the fourth segment.
        _ => (
            m.topic
                .split('/')
                .enumerate()
                .map(|(i, s)| if i == 3 { "bad id!" } else { s })
                .collect::<Vec<_>>()
                .join("/"),
            m.payload.clone(),
        ),
    };
    Message {
        topic,
        payload,
        ts: m.ts,
    }
}

/// The client a topic's device always uses: a hash of the topic's device part.
fn client_of(topic: &str, clients: usize) -> usize {
    let device: String = topic.split('/').take(4).collect();
    let h = device.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h % clients.max(1) as u64) as usize
}

/// The progress of a run, drawn on a terminal only: a run of a large city takes minutes.
fn progress(seconds: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(seconds);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "simulated {pos}/{len} s [{bar:30}] {msg}, {elapsed} elapsed, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Runs a simulation; returns what it sent.
pub async fn simulate(args: &SimulateArgs, district: District) -> anyhow::Result<Summary> {
    let qos = if args.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let realtime = (args.speed - 1.0).abs() < f64::EPSILON;
    let start_ms = args.start_ms.unwrap_or_else(|| {
        let now = now_ms() - now_ms() % 1000;
        if realtime {
            now
        } else {
            now - args.seconds * 1000
        }
    });
    let mut sink = Sink::open(args)?;
    let mut truth = match &args.truth {
        Some(p) => Some(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut sim = Simulator::new(district, args.seed, start_ms)
        .with_incident_every(args.incident_every)
        .with_idle_report_every(args.idle_report_every);
    let mut summary = Summary {
        start_ms,
        ..Summary::default()
    };
    // Late messages wait here until their event time plus `late_ms` comes round.
    let mut held: VecDeque<(u64, Message)> = VecDeque::new();
    // Backlogs wait here, by when the device's link is back, in the order they were made.
    let mut buffered: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
    let mut per_stream: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    let mut n = 0u64;
    let bar = progress(args.seconds);
    for second in 0..args.seconds {
        if args.speed > 0.0 {
            let due = started + Duration::from_secs_f64(second as f64 / args.speed);
            tokio::time::sleep_until(due.into()).await;
        }
        let now_event = start_ms + second * 1000;
        let mut batch = Vec::new();
        while held.front().is_some_and(|(at, _)| *at <= now_event) {
            batch.extend(held.pop_front().map(|(_, m)| m));
        }
        while let Some(entry) = buffered.first_entry().filter(|e| *e.key() <= now_event) {
            batch.extend(entry.remove());
        }
        for m in sim.step() {
            n += 1;
            if let Some(back) = outage_end(&m.topic, m.ts, args.outage_every, args.outage_ms) {
                summary.backlog += 1;
                buffered
                    .entry(back + args.backlog_after_ms)
                    .or_default()
                    .push(m);
                continue;
            }
            if args.late_every > 0 && n.is_multiple_of(args.late_every) {
                summary.late += 1;
                held.push_back((m.ts + args.late_ms, m));
                continue;
            }
            if args.bad_every > 0 && n.is_multiple_of(args.bad_every) {
                summary.bad += 1;
                batch.push(bad(&m, summary.bad));
            }
            batch.push(m);
        }
        for m in batch {
            summary.messages += 1;
            *per_stream
                .entry(m.topic.split('/').nth(2).unwrap_or("").to_owned())
                .or_default() += 1;
            sink.send(m, qos).await?;
        }
        summary.second_sent_ms.push(now_ms());
        bar.inc(1);
        if second % 10 == 0 {
            bar.set_message(format!(
                "{} messages, {:.0}/s, {} incidents",
                summary.messages,
                summary.messages as f64 / started.elapsed().as_secs_f64().max(1e-9),
                summary.incidents
            ));
        }
        for incident in sim.take_incidents() {
            summary.incidents += 1;
            if let Some(t) = &mut truth {
                writeln!(t, "{}", serde_json::to_string(&incident)?)?;
            }
        }
    }
    bar.finish_and_clear();
    // What is still held back goes out at the end.
    for m in held
        .drain(..)
        .map(|(_, m)| m)
        .chain(std::mem::take(&mut buffered).into_values().flatten())
    {
        summary.messages += 1;
        sink.send(m, qos).await?;
    }
    if let Some(t) = &mut truth {
        t.flush()?;
    }
    summary.acked = sink.finish(qos, summary.messages).await?;
    summary.simulated_seconds = args.seconds;
    summary.wall_seconds = started.elapsed().as_secs_f64();
    summary.messages_per_s = summary.messages as f64 / summary.wall_seconds.max(1e-9);
    tracing::debug!(?per_stream, "messages per stream");
    Ok(summary)
}

/// The `simulate` command: runs, then prints the summary as one JSON line.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let district = args.district()?;
    tracing::info!(
        elevators = district.elevators.len(),
        cameras = district.cameras.len(),
        scales = district.scales.len(),
        merchants = district.merchants.len(),
        seconds = args.seconds,
        speed = args.speed,
        "simulating"
    );
    let summary = simulate(&args, district).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&summary)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::outage_end;

    #[test]
    fn one_device_in_n_is_dark_a_third_of_the_time_and_its_backlog_waits_for_the_link() {
        let topics: Vec<String> = (0..300)
            .map(|i| format!("cw/v1/elevator/E{i:04}/status"))
            .collect();
        let dark: Vec<&String> = topics
            .iter()
            .filter(|t| (0..90_000).any(|ts| outage_end(t, ts, 10, 45_000).is_some()))
            .collect();
        assert!((15..=45).contains(&dark.len()), "{} of 300", dark.len());
        for t in dark {
            let held: Vec<(u64, u64)> = (0..135_000)
                .step_by(1000)
                .filter_map(|ts| outage_end(t, ts, 10, 45_000).map(|back| (ts, back)))
                .collect();
            // 45 of every 135 seconds, each delivered once the link is back.
            assert_eq!(held.len(), 45, "{t}");
            assert!(
                held.iter()
                    .all(|(ts, back)| back > ts && back - ts <= 45_000)
            );
        }
        assert_eq!(
            outage_end("cw/v1/elevator/E0001/status", 5, 0, 45_000),
            None
        );
    }
}
