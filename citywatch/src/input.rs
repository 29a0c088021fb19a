//! The input log at start: open it, and turn what it kept unaccounted for into events fed
//! again before live input.

use crate::settings::Settings;
use anyhow::Context;
use ingest::input_log::{InputLog, Record, Recovered};
use std::collections::HashMap;

/// Opens the input log of `settings.data_dir`, unless it is off. Every process of a cluster
/// keeps its own: process 0 tells them all how far its alert journal is (`dataflow::signals`).
pub fn open(settings: &Settings) -> anyhow::Result<Option<Recovered>> {
    if !settings.input_log {
        return Ok(None);
    }
    let dir = settings.data_dir.join("input");
    let (sync, capacity) = (settings.input_log_sync, settings.queue_capacity);
    let recovered = InputLog::open(&dir, sync, capacity, settings.input_log_keep_ms)
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
/// log's ledger follows them through the dataflow like live input).
pub fn replayed(
    settings: &Settings,
    facts: &alerts::Facts,
    records: &[Record],
) -> Vec<dataflow::Ingested> {
    let decoder = settings.decoder();
    records
        .iter()
        .filter_map(|r| {
            // It was decoded once before it was logged; a change of limits may refuse it now.
            let envelope = fed_again(&decoder, facts, &r.topic, &r.payload, r.received_ms)
                .map_err(|rejection| tracing::warn!(seq = r.seq, reason = %rejection.reason, "input log: a logged message no longer decodes; skipped"))
                .ok()?;
            Some(dataflow::Ingested {
                envelope,
                seq: Some(r.seq),
            })
        })
        .collect()
}

/// The logged complaints and status updates, decoded as when they arrived and marked as fed
/// again (they restore the handling-deadline clocks only), each with the input log's number
/// of the same message if the input log has it too (see [`paired`]).
pub fn complaints_fed_again(
    settings: &Settings,
    facts: &alerts::Facts,
    logged: Vec<(ingest::complaint_log::Logged, Option<u64>)>,
) -> Vec<(dataflow::Ingested, Option<u64>)> {
    let decoder = settings.decoder();
    logged
        .into_iter()
        .filter_map(|(l, in_log)| {
            let mut envelope = fed_again(
                &decoder,
                facts,
                &l.topic,
                l.payload.as_bytes(),
                l.received_ms,
            )
            .ok()?;
            // A residue test is logged for its stall's test history only (remembered above):
            // the rules' state and the counters come back from the checkpoint.
            if envelope.event.stream() == model::Stream::MarketResidue {
                return None;
            }
            envelope.replayed = true;
            let item = dataflow::Ingested {
                envelope,
                seq: None,
            };
            Some((item, in_log))
        })
        .collect()
}

/// A message kept before the stop, decoded as when it arrived (so its time is checked
/// against its arrival, not against now); what alerts want to know of it (evidence, whom a
/// complaint is about) is remembered again.
fn fed_again(
    decoder: &model::Decoder,
    facts: &alerts::Facts,
    topic: &str,
    payload: &[u8],
    received_ms: u64,
) -> Result<model::Envelope, model::Rejection> {
    let envelope = decoder.decode(topic, payload, received_ms)?;
    facts.remember(&envelope.event, received_ms);
    Ok(envelope)
}

/// The complaint log's messages, each with the number of the same message in the input log
/// when the input log may feed it again too (a complaint taken just before a stop is in both):
/// it is then fed once, by the input log if the replay mark chosen at start replays it.
pub fn paired(
    logged: Vec<ingest::complaint_log::Logged>,
    fed: &[Record],
) -> Vec<(ingest::complaint_log::Logged, Option<u64>)> {
    let fed: HashMap<(u64, &str), u64> = fed
        .iter()
        .map(|r| ((r.received_ms, r.topic.as_str()), r.seq))
        .collect();
    logged
        .into_iter()
        .map(|l| {
            let in_log = fed.get(&(l.received_ms, l.topic.as_str())).copied();
            (l, in_log)
        })
        .collect()
}

/// What a start feeds again, by the replay mark it chose: the logged messages the mark
/// replays, and the complaint log's messages the input log does not feed.
pub fn by_mark(
    items: Vec<(dataflow::Ingested, Option<u64>)>,
    mark: Option<&ingest::input_log::Mark>,
) -> Vec<dataflow::Ingested> {
    let replays = |seq: u64| mark.is_none_or(|m| m.replays(seq));
    items
        .into_iter()
        .filter(|(item, in_log)| match (item.seq, in_log) {
            (Some(seq), _) => replays(seq),
            (None, Some(seq)) => !replays(*seq),
            (None, None) => true,
        })
        .map(|(item, _)| item)
        .collect()
}
