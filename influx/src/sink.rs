//! The running sink.

use crate::InfluxError;
use crate::config::InfluxConfig;
use crate::line::Point;
use crate::spool::Spool;
use influxdb2::api::write::TimestampPrecision;
use influxdb2::models::WriteDataPoint;
use model::time::now_ms;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// What the sink has done, read by `/metrics`.
#[derive(Debug, Default)]
pub struct SinkStats {
    points_written: AtomicU64,
    batches_written: AtomicU64,
    batches_retried: AtomicU64,
    points_dropped_queue: AtomicU64,
    points_dropped_spool: AtomicU64,
    points_rejected: AtomicU64,
    spool_batches: AtomicU64,
    spool_bytes: AtomicU64,
}

impl SinkStats {
    /// Points the server accepted.
    pub fn points_written(&self) -> u64 {
        self.points_written.load(Ordering::Relaxed)
    }
    /// Batches the server accepted.
    pub fn batches_written(&self) -> u64 {
        self.batches_written.load(Ordering::Relaxed)
    }
    /// Write attempts that failed and were retried (or spooled).
    pub fn batches_retried(&self) -> u64 {
        self.batches_retried.load(Ordering::Relaxed)
    }
    /// Points dropped: `queue` (the sink fell behind the dataflow) and `spool` (the spool was full).
    pub fn points_dropped(&self) -> (u64, u64) {
        (
            self.points_dropped_queue.load(Ordering::Relaxed),
            self.points_dropped_spool.load(Ordering::Relaxed),
        )
    }
    /// Points the server refused (4xx), kept in `rejected.jsonl`.
    pub fn points_rejected(&self) -> u64 {
        self.points_rejected.load(Ordering::Relaxed)
    }
    /// Batches and bytes in the spool.
    pub fn spool(&self) -> (u64, u64) {
        (
            self.spool_batches.load(Ordering::Relaxed),
            self.spool_bytes.load(Ordering::Relaxed),
        )
    }
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Hands points to the sink without ever waiting: when its queue is full the point is
/// dropped and counted.
#[derive(Clone)]
pub struct PointSender {
    tx: mpsc::Sender<Point>,
    stats: Arc<SinkStats>,
}

impl PointSender {
    /// Queues points for writing.
    pub fn send(&self, points: impl IntoIterator<Item = Point>) {
        for p in points {
            if self.tx.try_send(p).is_err() {
                SinkStats::add(&self.stats.points_dropped_queue, 1);
            }
        }
    }
}

/// A running sink.
pub struct InfluxSink {
    sender: PointSender,
    stats: Arc<SinkStats>,
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
}

/// How a write failed.
#[derive(Debug)]
enum WriteError {
    /// Worth trying again: 5xx, 429, timeouts, connection errors.
    Retryable(String),
    /// The server refused the data (4xx): retrying the same bytes cannot help.
    Rejected(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Retryable(m) => write!(f, "retryable: {m}"),
            WriteError::Rejected(m) => write!(f, "rejected: {m}"),
        }
    }
}

/// One line of a batch, for the `influxdb2` client's point stream.
struct Line {
    batch: Arc<str>,
    start: usize,
    end: usize,
}

impl WriteDataPoint for Line {
    fn write_data_point_to<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(&self.batch.as_bytes()[self.start..self.end])?;
        w.write_all(b"\n")
    }
}

struct Writer {
    client: influxdb2::Client,
    bucket: String,
    timeout: Duration,
}

impl Writer {
    async fn write(&self, lines: &[&str]) -> Result<(), WriteError> {
        let batch: Arc<str> = lines.join("\n").into();
        let mut points = Vec::with_capacity(lines.len());
        let mut start = 0;
        for l in lines {
            points.push(Line {
                batch: batch.clone(),
                start,
                end: start + l.len(),
            });
            start += l.len() + 1;
        }
        let write = self.client.write_with_precision(
            &self.bucket,
            futures_util::stream::iter(points),
            TimestampPrecision::Milliseconds,
        );
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(WriteError::Retryable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(Ok(())) => Ok(()),
            Ok(Err(influxdb2::RequestError::Http { status, text }))
                if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 =>
            {
                Err(WriteError::Rejected(format!("{status}: {}", text.trim())))
            }
            Ok(Err(e)) => Err(WriteError::Retryable(e.to_string())),
        }
    }
}

struct Shared {
    writer: Writer,
    spool: Mutex<Spool>,
    spooled: Notify,
    stats: Arc<SinkStats>,
    rejected: Mutex<Rejected>,
    attempts: u32,
}

impl Shared {
    fn spool_push(&self, lines: &str) {
        let mut spool = self.spool.lock().unwrap_or_else(PoisonError::into_inner);
        match spool.push(lines) {
            Ok(dropped) => {
                if dropped > 0 {
                    tracing::warn!(dropped, "influx spool full: oldest points dropped");
                }
                SinkStats::add(&self.stats.points_dropped_spool, dropped);
            }
            Err(e) => {
                let n = lines.lines().count() as u64;
                tracing::error!(error = %e, points = n, "cannot spool influx batch; points dropped");
                SinkStats::add(&self.stats.points_dropped_spool, n);
            }
        }
        self.update_spool_stats(&spool);
        drop(spool);
        self.spooled.notify_one();
    }

    fn update_spool_stats(&self, spool: &Spool) {
        let (batches, bytes) = spool.size();
        self.stats.spool_batches.store(batches, Ordering::Relaxed);
        self.stats.spool_bytes.store(bytes, Ordering::Relaxed);
    }

    fn spool_is_empty(&self) -> bool {
        self.spool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Writes `lines`, splitting on 4xx until the refused points are isolated and kept aside.
    /// On a retryable error, returns the lines not yet written.
    async fn write_splitting(&self, lines: &str) -> Result<(), (WriteError, String)> {
        let all: Vec<&str> = lines.lines().filter(|l| !l.is_empty()).collect();
        let mut stack: Vec<&[&str]> = vec![&all];
        while let Some(chunk) = stack.pop() {
            match self.writer.write(chunk).await {
                Ok(()) => {
                    SinkStats::add(&self.stats.points_written, chunk.len() as u64);
                    SinkStats::add(&self.stats.batches_written, 1);
                }
                Err(WriteError::Rejected(message)) if chunk.len() == 1 => {
                    tracing::warn!(line = chunk[0], %message, "influx refused a point");
                    SinkStats::add(&self.stats.points_rejected, 1);
                    self.rejected
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .keep(chunk[0], &message);
                }
                Err(WriteError::Rejected(_)) => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    stack.push(b);
                    stack.push(a);
                }
                Err(e) => {
                    let mut rest: Vec<&str> = chunk.to_vec();
                    for c in stack.iter().rev() {
                        rest.extend_from_slice(c);
                    }
                    return Err((e, rest.join("\n") + "\n"));
                }
            }
        }
        Ok(())
    }

    /// Writes a fresh batch, retrying a few times, then spools what is left.
    async fn write_batch(&self, lines: String) {
        let mut pending = lines;
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.attempts {
            match self.write_splitting(&pending).await {
                Ok(()) => return,
                Err((e, rest)) => {
                    SinkStats::add(&self.stats.batches_retried, 1);
                    tracing::debug!(attempt, error = %e, "influx write failed");
                    pending = rest;
                    if attempt < self.attempts {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
        }
        tracing::warn!(
            points = pending.lines().count(),
            "influx unreachable: batch spooled"
        );
        self.spool_push(&pending);
    }

    /// Replays the spool oldest first, one batch at a time, until `stop` (and the spool is
    /// empty, or `deadline` passes).
    async fn replay(self: Arc<Self>, mut stop: watch::Receiver<Option<Instant>>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let next = self
                .spool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .oldest();
            let deadline = *stop.borrow();
            match next {
                Ok(Some((seq, lines))) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return;
                    }
                    match self.write_splitting(&lines).await {
                        Ok(()) => {
                            let mut spool =
                                self.spool.lock().unwrap_or_else(PoisonError::into_inner);
                            if let Err(e) = spool.remove(seq) {
                                tracing::error!(error = %e, "cannot remove a replayed batch from the spool");
                            }
                            self.update_spool_stats(&spool);
                            backoff = Duration::from_millis(200);
                        }
                        Err((e, rest)) => {
                            SinkStats::add(&self.stats.batches_retried, 1);
                            if rest.len() != lines.len() {
                                // Part of the batch went through: keep only the rest.
                                let mut spool =
                                    self.spool.lock().unwrap_or_else(PoisonError::into_inner);
                                let _ = spool.replace(seq, &rest);
                            }
                            tracing::debug!(error = %e, retry_in_ms = backoff.as_millis() as u64, "influx replay failed");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = stop.changed() => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                }
                Ok(None) => {
                    if deadline.is_some() {
                        return;
                    }
                    tokio::select! {
                        _ = self.spooled.notified() => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the influx spool");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Refused points with the server's message: `rejected.jsonl`, rotated to `rejected.1.jsonl`
/// past 4 MiB (the older file is then deleted).
struct Rejected {
    path: PathBuf,
}

const REJECTED_MAX_BYTES: u64 = 4 << 20;

impl Rejected {
    fn keep(&self, line: &str, message: &str) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > REJECTED_MAX_BYTES) {
            let _ = std::fs::rename(&self.path, self.path.with_extension("1.jsonl"));
        }
        let entry = serde_json::json!({ "line": line, "message": message, "at_ms": now_ms() });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{entry}"));
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot keep a refused influx point");
        }
    }
}

impl InfluxSink {
    /// Starts the sink if `config.url` is set (`Ok(None)` otherwise). State lives under `dir`
    /// (`spool/`, `rejected.jsonl`). Must be called inside a tokio runtime.
    pub fn start(config: &InfluxConfig, dir: &Path) -> Result<Option<InfluxSink>, InfluxError> {
        let Some(url) = config.validate()? else {
            return Ok(None);
        };
        let spool_dir = dir.join("spool");
        let spool = Spool::open(&spool_dir, config.spool_max_bytes).map_err(|source| {
            InfluxError::Spool {
                path: spool_dir,
                source,
            }
        })?;
        let client = influxdb2::ClientBuilder::new(
            url,
            config.org.clone(),
            config.token.clone().unwrap_or_default(),
        )
        .gzip(true)
        .build()
        .map_err(|e| InfluxError::Config {
            field: "url",
            message: e.to_string(),
        })?;
        let stats = Arc::new(SinkStats::default());
        let shared = Arc::new(Shared {
            writer: Writer {
                client,
                bucket: config.bucket.clone(),
                timeout: Duration::from_millis(config.timeout_ms.max(1)),
            },
            spool: Mutex::new(spool),
            spooled: Notify::new(),
            stats: stats.clone(),
            rejected: Mutex::new(Rejected {
                path: dir.join("rejected.jsonl"),
            }),
            attempts: config.attempts,
        });
        shared.update_spool_stats(&shared.spool.lock().unwrap_or_else(PoisonError::into_inner));
        let (tx, rx) = mpsc::channel(config.queue_points);
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(batch_loop(shared, rx, stop_rx, config.clone()));
        tracing::info!(url, org = %config.org, bucket = %config.bucket, "influx sink started");
        Ok(Some(InfluxSink {
            sender: PointSender {
                tx,
                stats: stats.clone(),
            },
            stats,
            stop,
            task,
        }))
    }

    /// A handle for the dataflow.
    pub fn sender(&self) -> PointSender {
        self.sender.clone()
    }

    /// Sink statistics.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// Writes what is queued and tries to empty the spool for at most `timeout`; what is
    /// still spooled then stays on disk for the next start.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(Some(timeout));
        if tokio::time::timeout(timeout + Duration::from_secs(1), self.task)
            .await
            .is_err()
        {
            tracing::warn!("influx sink did not stop in time");
        }
    }
}

async fn batch_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Point>,
    mut stop: watch::Receiver<Option<Duration>>,
    config: InfluxConfig,
) {
    let slots = Arc::new(Semaphore::new(config.max_in_flight));
    let (replay_stop, replay_rx) = watch::channel(None);
    let replayer = tokio::spawn(shared.clone().replay(replay_rx));
    let interval = Duration::from_millis(config.batch_interval_ms.max(1));
    let mut batch = String::new();
    let mut n = 0usize;
    let mut since: Option<Instant> = None;
    let flush = |batch: &mut String, n: &mut usize, since: &mut Option<Instant>| {
        if *n == 0 {
            return;
        }
        let lines = std::mem::take(batch);
        *n = 0;
        *since = None;
        // While anything is spooled, new batches queue behind it, so the server gets
        // batches in order once it is back.
        match slots.clone().try_acquire_owned() {
            Ok(permit) if shared.spool_is_empty() => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    shared.write_batch(lines).await;
                    drop(permit);
                });
            }
            _ => shared.spool_push(&lines),
        }
    };
    let mut stopping = false;
    while !stopping {
        let wait = since.map_or(Duration::from_secs(3600), |s| {
            interval.saturating_sub(s.elapsed())
        });
        tokio::select! {
            p = rx.recv() => match p {
                Some(p) => {
                    if p.write_line(&mut batch) {
                        n += 1;
                        since.get_or_insert_with(Instant::now);
                    }
                    if n >= config.batch_points {
                        flush(&mut batch, &mut n, &mut since);
                    }
                }
                None => stopping = true,
            },
            _ = tokio::time::sleep(wait), if since.is_some() => flush(&mut batch, &mut n, &mut since),
            _ = stop.changed() => {
                while let Ok(p) = rx.try_recv() {
                    if p.write_line(&mut batch) {
                        n += 1;
                    }
                    if n >= config.batch_points {
                        flush(&mut batch, &mut n, &mut since);
                    }
                }
                stopping = true;
            }
        }
    }
    flush(&mut batch, &mut n, &mut since);
    // Wait for the writes in flight, then give the replayer a bounded time to empty the spool.
    let _ = slots.acquire_many(config.max_in_flight as u32).await;
    let drain = stop
        .borrow()
        .unwrap_or(Duration::from_millis(config.timeout_ms));
    let _ = replay_stop.send(Some(Instant::now() + drain));
    let _ = replayer.await;
}
