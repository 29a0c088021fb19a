//! The Prometheus exposition (the Prometheus text format, a stable interface), written by
//! `prometheus-client`.
//!
//! The numbers live in lock-free atomics owned by `ingest`, `dataflow` and `alerts`, updated on
//! the hot path; a scrape reads them through one [`Collector`] and the crate encodes them
//! (names, label escaping, number formats), so no second registry has to be kept in step.
//! Families by stage: ingest, the dataflow, checkpoints and the input log, the rules, the
//! alerts, InfluxDB. A counter family is named without `_total` here; its samples carry it.

use crate::state::AppState;
use ingest::ConnectionState;
use model::{Reason, Stream};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::fmt::{self, Write};
use std::sync::atomic::Ordering::Relaxed;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition.
pub fn render(s: &AppState) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(s.clone())));
    let mut out = String::with_capacity(8192);
    // Writing into a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    prometheus_text(&out)
}

/// The crate writes OpenMetrics text; for counters and gauges the Prometheus text format
/// differs from it only in naming a counter family with its `_total` in the `# HELP` and
/// `# TYPE` lines, and in having no closing `# EOF`. Samples, labels and values are the same.
fn prometheus_text(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines().filter(|l| *l != "# EOF") {
        let counter_line = ["# HELP ", "# TYPE "].into_iter().find_map(|p| {
            let (name, rest) = line.strip_prefix(p)?.split_once(' ')?;
            counters.contains(name).then_some((p, name, rest))
        });
        match counter_line {
            Some((p, name, rest)) => {
                let _ = writeln!(out, "{p}{name}_total {rest}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// One scrape of the service's numbers.
struct Scrape(AppState);

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let (s, mut f) = (&self.0, Families(encoder));
        ingest(&mut f, &s.ingest)?;
        dataflow(&mut f, &s.dataflow)?;
        checkpoints(&mut f, &s.dataflow.checkpoints())?;
        alerts_queue(&mut f, s)?;
        mqtt(&mut f, &s.ingest)?;
        if let Some((log, ledger)) = s.ingest.input_log() {
            input_log(&mut f, log, ledger)?;
        }
        rules(&mut f, s)?;
        if let Some(a) = &s.alerts {
            alerts(&mut f, a)?;
        }
        if let Some(i) = &s.influx {
            influx(&mut f, i)?;
        }
        Ok(())
    }
}

/// Families, written one after another.
struct Families<'a>(DescriptorEncoder<'a>);

impl Families<'_> {
    /// A family of `kind`, one sample per label set (a counter's samples are `name_total`).
    fn family<L: EncodeLabelSet, M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (L, M)>,
    ) -> fmt::Result {
        let mut family = self.0.encode_descriptor(name, help, None, kind)?;
        for (labels, metric) in samples {
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A family of one sample without labels.
    fn one<M: EncodeMetric>(&mut self, name: &str, help: &str, metric: M) -> fmt::Result {
        let family = self
            .0
            .encode_descriptor(name, help, None, metric.metric_type())?;
        metric.encode(family)
    }

    fn counters<L: EncodeLabelSet, N: EncodeCounterValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, N)>,
    ) -> fmt::Result {
        let samples = samples.into_iter().map(|(l, n)| (l, ConstCounter::new(n)));
        self.family(name, help, MetricType::Counter, samples)
    }

    fn counter<N: EncodeCounterValue>(&mut self, name: &str, help: &str, n: N) -> fmt::Result {
        self.one(name, help, ConstCounter::new(n))
    }

    fn gauges<L: EncodeLabelSet, N: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, N)>,
    ) -> fmt::Result {
        let samples = samples.into_iter().map(|(l, n)| (l, ConstGauge::new(n)));
        self.family(name, help, MetricType::Gauge, samples)
    }

    fn gauge<N: EncodeGaugeValue>(&mut self, name: &str, help: &str, n: N) -> fmt::Result {
        self.one(name, help, ConstGauge::new(n))
    }
}

/// Messages in, dead letters, and the queue to the dataflow.
fn ingest(f: &mut Families<'_>, i: &ingest::IngestStats) -> fmt::Result {
    f.counters(
        "citywatch_messages",
        "Valid messages received, per contract stream.",
        Stream::ALL.map(|st| ([("stream", st.as_str())], i.messages(st))),
    )?;
    f.counters(
        "citywatch_deadletters",
        "Rejected messages kept in the dead-letter store, per reason.",
        Reason::ALL.map(|r| ([("reason", r.as_str())], i.deadletters(r))),
    )?;
    f.counter(
        "citywatch_deadletters_dropped",
        "Dead letters dropped, oldest first, because the store was full.",
        i.deadletters_dropped(),
    )?;
    let (depth, capacity) = i.queue();
    f.gauge(
        "citywatch_ingest_queue_depth",
        "Events waiting between MQTT ingest and the dataflow.",
        depth,
    )?;
    f.gauge(
        "citywatch_ingest_queue_capacity",
        "Capacity of the ingest queue.",
        capacity,
    )?;
    let (waits, secs) = i.backpressure();
    f.counter(
        "citywatch_ingest_backpressure_waits",
        "Times the MQTT event loop waited for room in a full queue.",
        waits,
    )?;
    f.counter(
        "citywatch_ingest_backpressure_seconds",
        "Time the MQTT event loop spent waiting for room.",
        secs,
    )
}

/// Events through the dataflow, and how far its time is.
fn dataflow(f: &mut Families<'_>, d: &dataflow::Stats) -> fmt::Result {
    let events = [
        (
            "citywatch_late_events",
            "Events behind the frontier: cross-key aggregates take them at the frontier.",
            d.late_total(),
        ),
        (
            "citywatch_backlog_events",
            "Late events the rules judged at their own time on their group's timeline (within max_backlog).",
            d.backlog_total(),
        ),
        (
            "citywatch_reordered_events",
            "Events behind their group's latest, judged in their own-time order among the events the group kept after a gap.",
            d.reordered_total(),
        ),
        (
            "citywatch_untimed_events",
            "Events without ts, timed by arrival.",
            d.untimed_total(),
        ),
        (
            "citywatch_dataflow_events",
            "Events handed to the dataflow input.",
            d.events_total(),
        ),
    ];
    for (name, help, n) in events {
        f.counter(name, help, n)?;
    }
    let lag = match d.as_of_ms() {
        0 => 0.0,
        as_of => model::time::now_ms().saturating_sub(as_of) as f64 / 1000.0,
    };
    f.gauge(
        "citywatch_frontier_lag_seconds",
        "Wall clock minus the as_of of the latest counter snapshot.",
        lag,
    )?;
    f.gauge(
        "citywatch_input_frontier_seconds",
        "Least input time over the dataflow workers, Unix seconds.",
        d.input_frontier_ms() as f64 / 1000.0,
    )?;
    f.gauge(
        "citywatch_newest_event_seconds",
        "Newest event time seen, Unix seconds.",
        d.newest_ms() as f64 / 1000.0,
    )
}

fn checkpoints(f: &mut Families<'_>, c: &dataflow::stats::CheckpointStats) -> fmt::Result {
    f.counter(
        "citywatch_checkpoints",
        "Checkpoints of the dataflow's state written.",
        c.written,
    )?;
    f.counter(
        "citywatch_checkpoint_failures",
        "Checkpoints that could not be written (the replay mark stays at the previous one).",
        c.failed,
    )?;
    let gauges = [
        (
            "citywatch_checkpoint_seconds",
            "Frontier of the last checkpoint written, Unix seconds.",
            c.at_ms as f64 / 1000.0,
        ),
        (
            "citywatch_checkpoint_bytes",
            "Size of the last checkpoint written.",
            c.bytes as f64,
        ),
        (
            "citywatch_checkpoint_write_seconds",
            "How long writing the last checkpoint took (file synced).",
            c.seconds,
        ),
        (
            "citywatch_checkpoint_hold_seconds",
            "How long the workers' input was held while the last checkpoint's parts were taken.",
            c.held_seconds,
        ),
    ];
    for (name, help, v) in gauges {
        f.gauge(name, help, v)?;
    }
    Ok(())
}

/// The queue between the dataflow and the alerts' journal.
fn alerts_queue(f: &mut Families<'_>, s: &AppState) -> fmt::Result {
    let Some(q) = &s.alerts_queue else {
        return Ok(());
    };
    f.gauge(
        "citywatch_alerts_queue",
        "Condition snapshots waiting between the dataflow and the alert journal.",
        q.depth(),
    )?;
    f.gauge(
        "citywatch_alerts_queue_capacity",
        "Capacity of the alerts queue.",
        q.capacity(),
    )?;
    let (waits, secs) = q.waits();
    f.counter(
        "citywatch_alerts_backpressure_waits",
        "Times the dataflow waited for room in a full alerts queue.",
        waits,
    )?;
    f.counter(
        "citywatch_alerts_backpressure_seconds",
        "Time the dataflow spent waiting for room in the alerts queue.",
        secs,
    )
}

/// The broker connection and acknowledgements.
fn mqtt(f: &mut Families<'_>, i: &ingest::IngestStats) -> fmt::Result {
    let now = i.state();
    f.gauges(
        "citywatch_mqtt_connection_state",
        "1 for the current MQTT connection state.",
        ConnectionState::ALL.map(|st| ([("state", st.as_str())], u64::from(st == now))),
    )?;
    f.counters(
        "citywatch_mqtt_connection_changes",
        "MQTT connection state changes, by the state entered.",
        ConnectionState::ALL.map(|st| ([("state", st.as_str())], i.transitions(st))),
    )?;
    f.counter(
        "citywatch_mqtt_acks",
        "QoS 1 messages acknowledged to the broker.",
        i.acks(),
    )?;
    f.counter(
        "citywatch_mqtt_deferred",
        "Messages left unacknowledged at shutdown for the broker to redeliver.",
        i.deferred_total(),
    )
}

fn input_log(
    f: &mut Families<'_>,
    log: &ingest::input_log::LogStats,
    ledger: &ingest::input_log::Ledger,
) -> fmt::Result {
    let counters = [
        (
            "citywatch_input_log_records",
            "Messages written to the input log.",
            &log.records,
        ),
        (
            "citywatch_input_log_bytes",
            "Bytes written to the input log.",
            &log.bytes,
        ),
        (
            "citywatch_input_log_commits",
            "Group commits (one write and sync each) of the input log.",
            &log.commits,
        ),
        (
            "citywatch_input_log_write_errors",
            "Failed input log writes (intake waits and retries).",
            &log.write_errors,
        ),
        (
            "citywatch_input_log_duplicates",
            "Redeliveries of messages the input log replayed at start, not taken again.",
            &log.duplicates,
        ),
    ];
    for (name, help, v) in counters {
        f.counter(name, help, v.load(Relaxed))?;
    }
    f.gauge(
        "citywatch_input_log_replay_from",
        "The input log's first message a restart would feed again (all before it are journaled).",
        ledger.replay_from(),
    )
}

/// Conditions firing, and the rules' expressions that failed or are interpreted.
fn rules(f: &mut Families<'_>, s: &AppState) -> fmt::Result {
    f.gauge(
        "citywatch_conditions_active",
        "Alert conditions firing now.",
        s.conditions.borrow().active.len() as u64,
    )?;
    let errors = s.dataflow.rule_errors();
    f.counters(
        "citywatch_rule_errors",
        "Rule expressions that failed on an event (taken as not matching).",
        errors
            .iter()
            .map(|(rule, n, _)| ([("rule", rule.as_str())], *n)),
    )?;
    let interpreted = s.dataflow.interpreted();
    f.gauges(
        "citywatch_rules_interpreted",
        "Expressions of a rule in force judged by cel-interpreter: they did not compile (docs/rules.md).",
        interpreted.iter().map(|(rule, n)| ([("rule", rule.as_str())], *n as u64)),
    )
}

fn alerts(f: &mut Families<'_>, a: &alerts::Alerts) -> fmt::Result {
    let firing = a.journal().firing_by().unwrap_or_default();
    f.gauges(
        "citywatch_alerts_firing",
        "Alerts firing now, by severity and domain.",
        firing.iter().map(|(severity, domain, n)| {
            (
                [("severity", severity.as_str()), ("domain", domain.as_str())],
                *n,
            )
        }),
    )?;
    f.counters(
        "citywatch_unit_acks",
        "Maintenance units' MQTT answers by outcome (applied, repeated, rejected).",
        a.stats()
            .unit_acks()
            .map(|(outcome, n)| ([("outcome", outcome)], n)),
    )?;
    let notifications = a.stats().notifications();
    f.counters(
        "citywatch_notifications",
        "Notification delivery attempts by receiver kind and outcome.",
        notifications.iter().map(|(kind, outcome, n)| {
            (
                [("receiver_kind", kind.as_str()), ("outcome", *outcome)],
                *n,
            )
        }),
    )?;
    f.counter(
        "citywatch_alert_routing_errors",
        "Route roles or owners that reached no receiver.",
        a.stats().routing_errors(),
    )
}

fn influx(f: &mut Families<'_>, i: &influx::SinkStats) -> fmt::Result {
    f.counter(
        "citywatch_influx_points_written",
        "Points the InfluxDB server accepted.",
        i.points_written(),
    )?;
    f.counter(
        "citywatch_influx_batches_written",
        "Write requests the server accepted.",
        i.batches_written(),
    )?;
    f.counter(
        "citywatch_influx_batches_retried",
        "Write requests that failed and were retried or spooled.",
        i.batches_retried(),
    )?;
    let (queue, spool) = i.points_dropped();
    f.counters(
        "citywatch_influx_points_dropped",
        "Points dropped: the sink's queue or its spool was full.",
        [([("where", "queue")], queue), ([("where", "spool")], spool)],
    )?;
    f.counter(
        "citywatch_influx_points_rejected",
        "Points the server refused (4xx), kept in rejected.jsonl.",
        i.points_rejected(),
    )?;
    let (batches, bytes) = i.spool();
    f.gauge(
        "citywatch_influx_spool_batches",
        "Batches waiting on disk for the server.",
        batches,
    )?;
    f.gauge(
        "citywatch_influx_spool_bytes",
        "Bytes waiting on disk for the server.",
        bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_and_there_is_no_eof() {
        let om = "# HELP citywatch_acks Acks.\n# TYPE citywatch_acks counter\n\
                  citywatch_acks_total{state=\"up\"} 3\n# HELP citywatch_depth Depth.\n\
                  # TYPE citywatch_depth gauge\ncitywatch_depth 1\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP citywatch_acks_total Acks.\n# TYPE citywatch_acks_total counter\n\
             citywatch_acks_total{state=\"up\"} 3\n# HELP citywatch_depth Depth.\n\
             # TYPE citywatch_depth gauge\ncitywatch_depth 1\n"
        );
    }
}
