//! The input log at start: open it, and turn what it kept unaccounted for into events fed
//! again before live input.

use crate::settings::Settings;
use anyhow::Context;
use ingest::Ingest;
use ingest::input_log::{InputLog, Record, Recovered};
use std::collections::HashSet;

/// Opens the input log of `settings.data_dir`, unless it is off. In a cluster the alerts are
/// journaled by process 0 alone, so no process could tell which of its messages are
/// accounted for: the log is off there, and a message is acknowledged once the dataflow has it
/// (docs/operations.md).
pub fn open(settings: &Settings, in_cluster: bool) -> anyhow::Result<Option<Recovered>> {
    if !settings.input_log || in_cluster {
        return Ok(None);
    }
    let dir = settings.data_dir.join("input");
    let recovered = InputLog::open(&dir, settings.input_log_sync, settings.queue_capacity)
        .with_context(|| format!("opening the input log in {}", dir.display()))?;
    if !recovered.replay.is_empty() {
        tracing::info!(
            messages = recovered.replay.len(),
            from = recovered.mark.replay_from,
            journaled_before_ms = recovered.mark.as_of_ms,
            "input log: feeding again what the alert journal had not accounted for at the last stop"
        );
    }
    Ok(Some(recovered))
}

/// The logged messages, decoded as when they arrived and carrying their log numbers (so the
/// log's ledger follows them through the dataflow like live input); what alerts want to know
/// of them (evidence, whom a complaint is about) is remembered again.
pub fn replayed(
    settings: &Settings,
    ingest: &Ingest,
    records: &[Record],
) -> Vec<dataflow::Ingested> {
    let decoder = settings.decoder();
    records
        .iter()
        .filter_map(|r| {
            // It was decoded once before it was logged; a change of limits may refuse it now.
            let envelope = match decoder.decode(&r.topic, &r.payload, r.received_ms) {
                Ok(e) => e,
                Err(rejection) => {
                    tracing::warn!(seq = r.seq, reason = %rejection.reason, "input log: a logged message no longer decodes; skipped");
                    return None;
                }
            };
            ingest.remember(&envelope.event, r.received_ms);
            Some(dataflow::Ingested {
                envelope,
                seq: Some(r.seq),
            })
        })
        .collect()
}

/// The complaint log's messages that the input log does not feed again already (a complaint
/// taken just before a stop is in both).
pub fn without(
    logged: Vec<ingest::complaint_log::Logged>,
    fed: &[Record],
) -> Vec<ingest::complaint_log::Logged> {
    if fed.is_empty() {
        return logged;
    }
    let fed: HashSet<(u64, &str)> = fed
        .iter()
        .map(|r| (r.received_ms, r.topic.as_str()))
        .collect();
    logged
        .into_iter()
        .filter(|l| !fed.contains(&(l.received_ms, l.topic.as_str())))
        .collect()
}
