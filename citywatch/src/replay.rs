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

pub fn replay(
    file: &std::path::Path,
    mut settings: Settings,
    interpret_rules: bool,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Arc<Vec<String>> = Arc::new(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    );
    drop(text);
    settings.clock = ClockMode::Event;
    let reference = Arc::new(settings.reference()?);
    let rules = Arc::new(settings.rules()?);
    tracing::info!("{}", settings.rule_source().describe(rules.len()));
    let (conditions_tx, conditions_rx) = std::sync::mpsc::channel();
    let rejected = Arc::new(AtomicU64::new(0));
    let decoder = Decoder::new(DecoderConfig {
        prefix: settings.mqtt_prefix.clone(),
        max_payload_bytes: settings.max_payload_bytes,
        ..DecoderConfig::default()
    });
    let (l, r) = (lines.clone(), rejected.clone());
    let sources: SourceFactory = Arc::new(move |index, peers| {
        Box::new(LineSource {
            lines: l.clone(),
            next: index,
            step: peers,
            decoder: decoder.clone(),
            rejected: r.clone(),
        }) as Box<dyn Source>
    });
    let last = Arc::new(Mutex::new(Snapshot::default()));
    let sink = last.clone();
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let running = dataflow::start(
        dataflow::DataflowConfig {
            interpret_rules,
            ..settings.dataflow_config()
        },
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
                let _ = conditions_tx.send(c);
            })),
        },
        stats.clone(),
    )?;
    running.join();
    let secs = start.elapsed().as_secs_f64();
    let snapshot = last.lock().unwrap_or_else(PoisonError::into_inner).clone();
    tracing::info!(
        lines = lines.len(),
        events = stats.events_total(),
        rejected = rejected.load(Ordering::Relaxed),
        late = stats.late_total(),
        workers = settings.workers,
        seconds = format!("{secs:.3}"),
        events_per_second = format!("{:.0}", stats.events_total() as f64 / secs),
        "replay finished"
    );
    let active = conditions_rx
        .try_iter()
        .last()
        .map(|c| c.active.len())
        .unwrap_or(0);
    tracing::info!(
        rules = rules.len(),
        active_conditions = active,
        "conditions at the end of the recording"
    );
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &snapshot.view())?;
    writeln!(out)?;
    Ok(())
}

struct LineSource {
    lines: Arc<Vec<String>>,
    next: usize,
    step: usize,
    decoder: Decoder,
    rejected: Arc<AtomicU64>,
}

impl Source for LineSource {
    fn pull(&mut self, out: &mut Vec<Ingested>, max: usize) -> Pulled {
        let mut taken = 0;
        while taken < max && self.next < self.lines.len() {
            let line = &self.lines[self.next];
            self.next += self.step;
            taken += 1;
            match model::recording::decode_line(&self.decoder, line) {
                Ok(envelope) => out.push(Ingested {
                    envelope,
                    seq: None,
                }),
                Err(_) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if taken > 0 {
            Pulled::Data
        } else {
            Pulled::Done
        }
    }
}
