//! `influx_load`: pushes points through the InfluxDB sink as fast as it takes them and reports
//! points/s written to the server.
//!
//! ```text
//! cargo run --release -p citywatch-benches --bin influx_load -- --url http://127.0.0.1:8428 --points 1000000
//! ```

use clap::Parser;
use influx::{Field, InfluxConfig, InfluxSink, Point};
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 1_000_000)]
    points: u64,
    /// Distinct series (elevators).
    #[arg(long, default_value_t = 10_000)]
    series: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("influx-load-{}", std::process::id()));
    let config = InfluxConfig {
        url: Some(args.url.clone()),
        token: Some("bench".into()),
        ..InfluxConfig::default()
    };
    let sink = InfluxSink::start(&config, &dir)?.ok_or_else(|| anyhow::anyhow!("no url"))?;
    let tx = sink.sender();
    let stats = sink.stats();
    let start = Instant::now();
    let t0 = 1_795_737_600_000u64;
    let mut sent = 0;
    while sent < args.points {
        // Offer points at the pace the sink takes them: the queue never overflows.
        let (q, _) = stats.points_dropped();
        if q > 0 {
            anyhow::bail!("queue overflowed");
        }
        if sent - stats.points_written() > 150_000 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let batch = (sent..(sent + 1000).min(args.points)).map(|i| {
            Point::new("elevator_10s", t0 + (i / args.series) * 10_000)
                .tag("elevator_id", format!("E{:07}", i % args.series))
                .field("frames", Field::I64(10))
                .field("trips", Field::I64((i % 3) as i64))
                .field("max_speed_mps", Field::F64(1.5))
                .field("mean_vibration_mps2", Field::F64(0.12))
                .field("door_cycles", Field::I64(1))
                .field("fault_seconds", Field::F64(0.0))
        });
        tx.send(batch);
        sent = (sent + 1000).min(args.points);
    }
    sink.shutdown(Duration::from_secs(60)).await;
    let secs = start.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "points {} written {} in {secs:.2} s: {:.0} points/s ({} batches, {} retried)",
        args.points,
        stats.points_written(),
        stats.points_written() as f64 / secs,
        stats.batches_written(),
        stats.batches_retried()
    )?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
