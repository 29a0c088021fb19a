//! `alerts_load`: the alerts stage under load, against a local webhook receiver.
//!
//! 1. Journal: alert transitions/s through the journal and outbox (every opening writes the
//!    alert, a transition, two outbox rows and two escalation steps, in one transaction per
//!    conditions snapshot).
//! 2. Delivery: notifications/s delivered to the local receiver (signed, 16 in flight).
//! 3. Latency: conditions applied one at a time at a steady rate; time from the apply call (the
//!    moment the dataflow's frontier passes the condition) to the receiver having the request.
//!
//! ```text
//! cargo run --release -p citywatch-benches --bin alerts_load -- --alerts 20000
//! ```

use alerts::{Alerts, Options};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use clap::Parser;
use dataflow::reference::{Elevator, Office, Receiver, Reference};
use dataflow::{Active, ConditionsSnapshot};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Alerts opened (and then resolved) in the journal phase.
    #[arg(long, default_value_t = 20_000)]
    alerts: u64,
    /// Condition changes per snapshot (one transaction each).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Alerts per second in the latency phase.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[derive(Clone, Default)]
struct Hook {
    received: Arc<AtomicU64>,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
}

async fn receive(State(h): State<Hook>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    h.received.fetch_add(1, Ordering::Relaxed);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(id) = v["id"].as_str()
    {
        h.arrivals
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_insert(now);
    }
    StatusCode::NO_CONTENT
}

fn reference(port: u16, elevators: u64) -> Arc<Reference> {
    let receiver = |id: String, owner: &str| Receiver {
        receiver_id: id.as_str().into(),
        kind: "webhook".into(),
        target: format!("http://127.0.0.1:{port}/hook"),
        secret: "bench".into(),
        owner: owner.into(),
    };
    Arc::new(Reference {
        elevators: (0..elevators)
            .map(|i| Elevator {
                elevator_id: format!("E{i}").as_str().into(),
                building: format!("B{}", i / 4),
                district: "D1".into(),
                lat: 0.0,
                lon: 0.0,
                maintenance_unit: format!("MU-{}", i % 20).as_str().into(),
                rated_speed_mps: 1.0,
                floors: 10,
            })
            .collect(),
        offices: vec![Office {
            office_id: "O1".into(),
            name: "所".into(),
            district: "D1".into(),
        }],
        receivers: (0..20)
            .map(|u| receiver(format!("R-MU-{u}"), &format!("MU-{u}")))
            .chain([receiver("R-O1".into(), "O1")])
            .collect(),
        ..Reference::default()
    })
}

fn snapshot(ids: impl Iterator<Item = u64>, started: bool, at: u64) -> ConditionsSnapshot {
    ConditionsSnapshot {
        as_of: at + 1,
        active: Default::default(),
        changes: ids
            .map(|i| {
                let a = Active {
                    rule: "e.trapped".into(),
                    group: format!("E{i}"),
                    value: 1.0,
                    since: at,
                    late_by_ms: 0,
                };
                (a, started, at)
            })
            .collect(),
        ..ConditionsSnapshot::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rules = rules::load_str(
        "bench.toml",
        "[[rule]]\nid = \"e.trapped\"\nseverity = \"critical\"\nstream = \"elevator_status\"\nmode = \"state\"\n\
         filter = 'has(event.occupied) && event.occupied'\ngroup_by = [\"elevator_id\"]\n\
         labels = { domain = \"elevator\" }\nroute = [\"maintenance_unit\", \"office\"]\n",
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let hook = Hook::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(hook.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = std::env::temp_dir().join(format!("alerts-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let t0 = 1_795_737_600_000u64;
    let mut out = std::io::stdout().lock();

    // 1. Journal.
    let a = Alerts::open_with(
        &dir.join("a.db"),
        reference(port, args.alerts),
        Options::default(),
    )?;
    let start = Instant::now();
    let ids: Vec<u64> = (0..args.alerts).collect();
    for chunk in ids.chunks(args.batch) {
        a.apply(&snapshot(chunk.iter().copied(), true, t0), &rules)?;
    }
    let opened = start.elapsed();
    let start = Instant::now();
    for chunk in ids.chunks(args.batch) {
        a.apply(&snapshot(chunk.iter().copied(), false, t0 + 60_000), &rules)?;
    }
    let resolved = start.elapsed();
    let db_bytes = std::fs::metadata(dir.join("a.db"))?.len();
    writeln!(
        out,
        "journal: {} openings in {:.2} s ({:.0}/s), {} resolutions in {:.2} s ({:.0}/s), {} per snapshot; {:.1} MB on disk",
        args.alerts,
        opened.as_secs_f64(),
        args.alerts as f64 / opened.as_secs_f64(),
        args.alerts,
        resolved.as_secs_f64(),
        args.alerts as f64 / resolved.as_secs_f64(),
        args.batch,
        db_bytes as f64 / 1e6
    )?;

    // 2. Delivery of everything the journal phase queued.
    let total = a.journal().notifications(None, usize::MAX)?.len() as u64;
    let start = Instant::now();
    let runner = tokio::spawn(a.clone().run());
    while hook.received.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    runner.abort();
    writeln!(
        out,
        "delivery: {total} webhooks in {:.2} s ({:.0}/s)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    )?;

    // 3. Latency at a steady rate, on a fresh journal.
    let a = Alerts::open_with(
        &dir.join("b.db"),
        reference(port, args.alerts),
        Options::default(),
    )?;
    tokio::spawn(a.clone().run());
    hook.arrivals.lock().unwrap().clear();
    let n = args.rate * args.seconds;
    let mut applied = HashMap::new();
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let snap = snapshot(std::iter::once(i % args.alerts), true, t0 + i);
        let id = alerts::fingerprint("e.trapped", &snap.changes[0].0.group);
        applied.insert(id, Instant::now());
        a.apply(&snap, &rules)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.arrivals.lock().unwrap().len() < applied.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = hook.arrivals.lock().unwrap().clone();
    let mut ms: Vec<f64> = applied
        .iter()
        .filter_map(|(id, at)| arrivals.get(id).map(|r| (*r - *at).as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    writeln!(
        out,
        "latency (apply → webhook received) at {}/s for {} s: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.rate,
        args.seconds,
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0)
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
