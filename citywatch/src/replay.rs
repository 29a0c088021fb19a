//! `citywatch replay FILE`: a recording through the dataflow, no broker. Each worker reads
//! and decodes its share of the lines, so this also measures decode + dataflow throughput.

use crate::settings::Settings;
use anyhow::Context;
use dataflow::{ClockMode, Ingested, Pulled, Snapshot, Source, SourceFactory, Stats};
use model::{Decoder, DecoderConfig};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

pub fn replay(file: &std::path::Path, mut settings: Settings) -> anyhow::Result<()> {
    let (lines_rx, lines) = read_lines(file)?;
    settings.clock = ClockMode::Event;
    let reference = Arc::new(settings.reference()?);
    let rules = Arc::new(settings.rules()?);
    tracing::info!("{}", settings.rule_source().describe(rules.len()));
    // Only the latest snapshot's count is wanted: the snapshots are not kept.
    let active = Arc::new(AtomicU64::new(0));
    let latest = active.clone();
    let rejected = Arc::new(AtomicU64::new(0));
    let decoder = Decoder::new(DecoderConfig {
        prefix: settings.mqtt_prefix.clone(),
        max_payload_bytes: settings.max_payload_bytes,
        ..DecoderConfig::default()
    });
    let r = rejected.clone();
    let sources: SourceFactory = Arc::new(move |_, _| {
        Box::new(LineSource {
            lines: lines_rx.clone(),
            decoder: decoder.clone(),
            rejected: r.clone(),
        }) as Box<dyn Source>
    });
    let last = Arc::new(Mutex::new(Snapshot::default()));
    let sink = last.clone();
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let running = dataflow::start(
        settings.dataflow_config(),
        reference,
        dataflow::RuleFeed {
            initial: rules.clone(),
            ..Default::default()
        },
        sources,
        dataflow::Outputs {
            snapshots: Arc::new(move |s| *sink.lock().unwrap_or_else(PoisonError::into_inner) = s),
            series: None,
            raw: false,
            conditions: Some(Arc::new(move |c: dataflow::ConditionsSnapshot| {
                latest.store(c.active.len() as u64, Ordering::Relaxed);
            })),
            checkpoints: None,
            signals: None,
            facts: None,
        },
        stats.clone(),
    )?;
    running.join();
    let secs = start.elapsed().as_secs_f64();
    let snapshot = last.lock().unwrap_or_else(PoisonError::into_inner).clone();
    tracing::info!(
        lines = lines.load(Ordering::Relaxed),
        events = stats.events_total(),
        rejected = rejected.load(Ordering::Relaxed),
        late = stats.late_total(),
        backlog = stats.backlog_total(),
        reordered = stats.reordered_total(),
        workers = settings.workers,
        seconds = format!("{secs:.3}"),
        events_per_second = format!("{:.0}", stats.events_total() as f64 / secs),
        "replay finished"
    );
    tracing::info!(
        rules = rules.len(),
        active_conditions = active.load(Ordering::Relaxed),
        "conditions at the end of the recording"
    );
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &snapshot.view())?;
    writeln!(out)?;
    Ok(())
}

/// Lines of the recording read by a thread of their own into a bounded queue, in chunks, so
/// the file is never held whole (a city of a million elevators records about 80 MB a simulated
/// second): the queue and the lines read so far (counted).
fn read_lines(
    file: &std::path::Path,
) -> anyhow::Result<(crossbeam_channel::Receiver<Vec<String>>, Arc<AtomicU64>)> {
    const CHUNK: usize = 1024;
    let lines = recording_lines(file)?;
    let (tx, rx) = crossbeam_channel::bounded(64);
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let name = file.display().to_string();
    std::thread::Builder::new()
        .name("replay-reader".into())
        .spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            for line in lines {
                match line {
                    Ok(l) => chunk.push(l),
                    Err(e) => {
                        tracing::error!(error = %e, file = %name, "replay: reading stopped");
                        break;
                    }
                }
                if chunk.len() == CHUNK {
                    counted.fetch_add(CHUNK as u64, Ordering::Relaxed);
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if tx.send(full).is_err() {
                        return;
                    }
                }
            }
            counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let _ = tx.send(chunk);
        })?;
    Ok((rx, count))
}

/// A recording's non-blank lines, read as they come (`replay`, `rules backtest`).
pub(crate) fn recording_lines(
    file: &std::path::Path,
) -> anyhow::Result<impl Iterator<Item = std::io::Result<String>> + Send + use<>> {
    use std::io::BufRead;
    let reader =
        std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(std::io::BufReader::with_capacity(1 << 20, reader)
        .lines()
        .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty())))
}

/// One worker's share of the recording: whatever chunks of lines it takes from the shared
/// queue.
struct LineSource {
    lines: crossbeam_channel::Receiver<Vec<String>>,
    decoder: Decoder,
    rejected: Arc<AtomicU64>,
}

impl Source for LineSource {
    /// A chunk is taken whole: 1 024 lines, within the worker's batch (4 096 by default).
    fn pull(&mut self, out: &mut Vec<Ingested>, _max: usize) -> Pulled {
        let chunk = match self.lines.try_recv() {
            Ok(c) => c,
            Err(crossbeam_channel::TryRecvError::Empty) => return Pulled::Idle,
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Pulled::Done,
        };
        for line in chunk {
            match model::recording::decode_line(&self.decoder, &line) {
                Ok(envelope) => out.push(Ingested {
                    envelope,
                    seq: None,
                }),
                Err(_) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Pulled::Data
    }
}
