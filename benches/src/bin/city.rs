//! `city`: writes a synthetic city's reference data and recording, or publishes it over MQTT.
//!
//! ```text
//! cargo run --release -p citywatch-benches --bin city -- record --elevators 100000 --seconds 20 --out /tmp/city
//! cargo run --release -p citywatch-benches --bin city -- publish --elevators 20000 --rate 20000 --seconds 600 --port 1883
//! ```

use anyhow::Context;
use citywatch_benches::city;
use clap::{Parser, Subcommand};
use model::time::now_ms;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write `reference/elevators.csv` and `recording.jsonl` under `--out`.
    Record {
        #[arg(long, default_value_t = 100_000)]
        elevators: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Publish the city to a broker at `--rate` messages per second (0: as fast as acked).
    Publish {
        #[arg(long, default_value_t = 20_000)]
        elevators: u64,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 0)]
        messages: u64,
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        qos: u8,
        #[arg(long, default_value_t = 1883)]
        port: u16,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Record {
            elevators,
            seconds,
            seed,
            out,
        } => {
            std::fs::create_dir_all(out.join("reference"))?;
            std::fs::write(
                out.join("reference/elevators.csv"),
                city::elevators_csv(elevators),
            )?;
            let file =
                std::fs::File::create(out.join("recording.jsonl")).context("creating recording")?;
            let mut w = BufWriter::new(file);
            let start = now_ms() - seconds * 1000;
            for k in 0..elevators * seconds {
                let (topic, payload) = city::message(seed, elevators, start, k).encode("cw/v1/");
                writeln!(w, "{}", model::recording::line(&topic, &payload, None))?;
            }
            w.flush()?;
            Ok(())
        }
        Command::Publish {
            elevators,
            rate,
            messages,
            seconds,
            qos,
            port,
            seed,
        } => {
            let qos = if qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(publish(elevators, rate, messages, seconds, qos, port, seed))
        }
    }
}

async fn publish(
    elevators: u64,
    rate: u64,
    messages: u64,
    seconds: u64,
    qos: QoS,
    port: u16,
    seed: u64,
) -> anyhow::Result<()> {
    let mut opts = MqttOptions::new(format!("city-{seed}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    let started = Instant::now();
    let start_ms = now_ms();
    let total = if messages > 0 { messages } else { u64::MAX };
    let deadline = (seconds > 0).then(|| started + Duration::from_secs(seconds));
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < total && deadline.is_none_or(|d| Instant::now() < d) {
            if rate > 0 {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let mut event = city::message(seed, elevators, start_ms, sent);
            // Live load is stamped now, whatever the nominal schedule.
            if let model::Event::ElevatorStatus { frame, .. } = &mut event {
                frame.ts = Some(now_ms());
            }
            let (topic, payload) = event.encode("cw/v1/");
            if client.publish(topic, qos, false, payload).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let mut acked = 0u64;
    loop {
        tokio::select! {
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => anyhow::bail!("mqtt: {e}"),
            },
            _ = tokio::time::sleep(Duration::from_millis(100)), if sender.is_finished() => {
                let sent = sender.await?;
                if qos == QoS::AtMostOnce || acked >= sent {
                    let secs = started.elapsed().as_secs_f64();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "sent {sent} acked {acked} in {secs:.2} s: {:.0} msgs/s", sent as f64 / secs)?;
                    return Ok(());
                }
                // Still waiting for acks: keep polling.
                let remaining = sent - acked;
                let mut more = 0;
                while more < remaining {
                    if let Ok(Event::Incoming(Packet::PubAck(_))) = eventloop.poll().await {
                        more += 1;
                    }
                }
                let secs = started.elapsed().as_secs_f64();
                let mut out = std::io::stdout().lock();
                writeln!(out, "sent {sent} acked {} in {secs:.2} s: {:.0} msgs/s", acked + more, sent as f64 / secs)?;
                return Ok(());
            }
        }
    }
}
