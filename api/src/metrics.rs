//! Prometheus text exposition.
//!
//! The numbers live in lock-free atomics owned by `ingest` and `dataflow`, updated on the hot
//! path; this module only reads and formats them at scrape time, so no second registry has to
//! be kept in step.

use crate::state::AppState;
use ingest::ConnectionState;
use model::{Reason, Stream};
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// The whole exposition.
pub fn render(s: &AppState) -> String {
    let mut o = Out(String::with_capacity(4096));
    let i = &s.ingest;
    let d = &s.dataflow;

    o.family(
        "citywatch_messages_total",
        "counter",
        "Valid messages received, per contract stream.",
    );
    for st in Stream::ALL {
        o.sample(
            "citywatch_messages_total",
            &[("stream", st.as_str())],
            i.messages(st),
        );
    }
    o.family(
        "citywatch_deadletters_total",
        "counter",
        "Rejected messages kept in the dead-letter store, per reason.",
    );
    for r in Reason::ALL {
        o.sample(
            "citywatch_deadletters_total",
            &[("reason", r.as_str())],
            i.deadletters(r),
        );
    }
    o.family(
        "citywatch_deadletters_dropped_total",
        "counter",
        "Dead letters dropped, oldest first, because the store was full.",
    );
    o.sample(
        "citywatch_deadletters_dropped_total",
        &[],
        i.deadletters_dropped(),
    );
    o.family(
        "citywatch_late_events_total",
        "counter",
        "Events behind the frontier: cross-key aggregates take them at the frontier.",
    );
    o.sample("citywatch_late_events_total", &[], d.late_total());
    o.family(
        "citywatch_backlog_events_total",
        "counter",
        "Late events the rules judged at their own time on their group's timeline (within max_backlog).",
    );
    o.sample("citywatch_backlog_events_total", &[], d.backlog_total());
    o.family(
        "citywatch_reordered_events_total",
        "counter",
        "Events behind their group's latest, judged in their own-time order among the events the group kept after a gap.",
    );
    o.sample("citywatch_reordered_events_total", &[], d.reordered_total());
    o.family(
        "citywatch_untimed_events_total",
        "counter",
        "Events without ts, timed by arrival.",
    );
    o.sample("citywatch_untimed_events_total", &[], d.untimed_total());
    o.family(
        "citywatch_dataflow_events_total",
        "counter",
        "Events handed to the dataflow input.",
    );
    o.sample("citywatch_dataflow_events_total", &[], d.events_total());

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_millis() as u64);
    o.family(
        "citywatch_frontier_lag_seconds",
        "gauge",
        "Wall clock minus the as_of of the latest counter snapshot.",
    );
    let lag = if d.as_of_ms() == 0 {
        0.0
    } else {
        now_ms.saturating_sub(d.as_of_ms()) as f64 / 1000.0
    };
    o.sample("citywatch_frontier_lag_seconds", &[], lag);
    o.family(
        "citywatch_input_frontier_seconds",
        "gauge",
        "Least input time over the dataflow workers, Unix seconds.",
    );
    o.sample(
        "citywatch_input_frontier_seconds",
        &[],
        d.input_frontier_ms() as f64 / 1000.0,
    );
    o.family(
        "citywatch_newest_event_seconds",
        "gauge",
        "Newest event time seen, Unix seconds.",
    );
    o.sample(
        "citywatch_newest_event_seconds",
        &[],
        d.newest_ms() as f64 / 1000.0,
    );

    checkpoints(&mut o, &d.checkpoints());

    let (depth, capacity) = i.queue();
    o.family(
        "citywatch_ingest_queue_depth",
        "gauge",
        "Events waiting between MQTT ingest and the dataflow.",
    );
    o.sample("citywatch_ingest_queue_depth", &[], depth);
    o.family(
        "citywatch_ingest_queue_capacity",
        "gauge",
        "Capacity of the ingest queue.",
    );
    o.sample("citywatch_ingest_queue_capacity", &[], capacity);
    let (waits, secs) = i.backpressure();
    o.family(
        "citywatch_ingest_backpressure_waits_total",
        "counter",
        "Times the MQTT event loop waited for room in a full queue.",
    );
    o.sample("citywatch_ingest_backpressure_waits_total", &[], waits);
    o.family(
        "citywatch_ingest_backpressure_seconds_total",
        "counter",
        "Time the MQTT event loop spent waiting for room.",
    );
    o.sample("citywatch_ingest_backpressure_seconds_total", &[], secs);

    if let Some(q) = &s.alerts_queue {
        alerts_queue(&mut o, q);
    }

    o.family(
        "citywatch_mqtt_connection_state",
        "gauge",
        "1 for the current MQTT connection state.",
    );
    let now = i.state();
    for st in ConnectionState::ALL {
        o.sample(
            "citywatch_mqtt_connection_state",
            &[("state", st.as_str())],
            u8::from(st == now),
        );
    }
    o.family(
        "citywatch_mqtt_connection_changes_total",
        "counter",
        "MQTT connection state changes, by the state entered.",
    );
    for st in ConnectionState::ALL {
        o.sample(
            "citywatch_mqtt_connection_changes_total",
            &[("state", st.as_str())],
            i.transitions(st),
        );
    }
    o.family(
        "citywatch_mqtt_acks_total",
        "counter",
        "QoS 1 messages acknowledged to the broker.",
    );
    o.sample("citywatch_mqtt_acks_total", &[], i.acks());
    o.family(
        "citywatch_mqtt_deferred_total",
        "counter",
        "Messages left unacknowledged at shutdown for the broker to redeliver.",
    );
    o.sample("citywatch_mqtt_deferred_total", &[], i.deferred_total());
    if let Some((log, ledger)) = i.input_log() {
        input_log(&mut o, log, ledger);
    }

    o.family(
        "citywatch_conditions_active",
        "gauge",
        "Alert conditions firing now.",
    );
    o.sample(
        "citywatch_conditions_active",
        &[],
        s.conditions.borrow().active.len(),
    );
    o.family(
        "citywatch_rule_errors_total",
        "counter",
        "Rule expressions that failed on an event (taken as not matching).",
    );
    for (rule, n, _) in d.rule_errors() {
        o.sample("citywatch_rule_errors_total", &[("rule", rule.as_str())], n);
    }
    o.family(
        "citywatch_rules_interpreted",
        "gauge",
        "Expressions of a rule in force judged by cel-interpreter: they did not compile (docs/rules.md).",
    );
    for (rule, n) in d.interpreted() {
        o.sample("citywatch_rules_interpreted", &[("rule", rule.as_str())], n);
    }

    if let Some(a) = &s.alerts {
        o.family(
            "citywatch_alerts_firing",
            "gauge",
            "Alerts firing now, by severity and domain.",
        );
        for (severity, domain, n) in a.journal().firing_by().unwrap_or_default() {
            o.sample(
                "citywatch_alerts_firing",
                &[("severity", severity.as_str()), ("domain", domain.as_str())],
                n,
            );
        }
        o.family(
            "citywatch_unit_acks_total",
            "counter",
            "Maintenance units' MQTT answers by outcome (applied, repeated, rejected).",
        );
        for (outcome, n) in a.stats().unit_acks() {
            o.sample("citywatch_unit_acks_total", &[("outcome", outcome)], n);
        }
        o.family(
            "citywatch_notifications_total",
            "counter",
            "Notification delivery attempts by receiver kind and outcome.",
        );
        for (kind, outcome, n) in a.stats().notifications() {
            o.sample(
                "citywatch_notifications_total",
                &[("receiver_kind", kind.as_str()), ("outcome", outcome)],
                n,
            );
        }
        o.family(
            "citywatch_alert_routing_errors_total",
            "counter",
            "Route roles or owners that reached no receiver.",
        );
        o.sample(
            "citywatch_alert_routing_errors_total",
            &[],
            a.stats().routing_errors(),
        );
    }

    if let Some(f) = &s.influx {
        o.family(
            "citywatch_influx_points_written_total",
            "counter",
            "Points the InfluxDB server accepted.",
        );
        o.sample(
            "citywatch_influx_points_written_total",
            &[],
            f.points_written(),
        );
        o.family(
            "citywatch_influx_batches_written_total",
            "counter",
            "Write requests the server accepted.",
        );
        o.sample(
            "citywatch_influx_batches_written_total",
            &[],
            f.batches_written(),
        );
        o.family(
            "citywatch_influx_batches_retried_total",
            "counter",
            "Write requests that failed and were retried or spooled.",
        );
        o.sample(
            "citywatch_influx_batches_retried_total",
            &[],
            f.batches_retried(),
        );
        let (queue, spool) = f.points_dropped();
        o.family(
            "citywatch_influx_points_dropped_total",
            "counter",
            "Points dropped: the sink's queue or its spool was full.",
        );
        o.sample(
            "citywatch_influx_points_dropped_total",
            &[("where", "queue")],
            queue,
        );
        o.sample(
            "citywatch_influx_points_dropped_total",
            &[("where", "spool")],
            spool,
        );
        o.family(
            "citywatch_influx_points_rejected_total",
            "counter",
            "Points the server refused (4xx), kept in rejected.jsonl.",
        );
        o.sample(
            "citywatch_influx_points_rejected_total",
            &[],
            f.points_rejected(),
        );
        let (batches, bytes) = f.spool();
        o.family(
            "citywatch_influx_spool_batches",
            "gauge",
            "Batches waiting on disk for the server.",
        );
        o.sample("citywatch_influx_spool_batches", &[], batches);
        o.family(
            "citywatch_influx_spool_bytes",
            "gauge",
            "Bytes waiting on disk for the server.",
        );
        o.sample("citywatch_influx_spool_bytes", &[], bytes);
    }
    o.0
}

fn checkpoints(o: &mut Out, c: &dataflow::stats::CheckpointStats) {
    let families: [(&str, &str, &str, f64); 6] = [
        (
            "citywatch_checkpoints_total",
            "counter",
            "Checkpoints of the dataflow's state written.",
            c.written as f64,
        ),
        (
            "citywatch_checkpoint_failures_total",
            "counter",
            "Checkpoints that could not be written (the replay mark stays at the previous one).",
            c.failed as f64,
        ),
        (
            "citywatch_checkpoint_seconds",
            "gauge",
            "Frontier of the last checkpoint written, Unix seconds.",
            c.at_ms as f64 / 1000.0,
        ),
        (
            "citywatch_checkpoint_bytes",
            "gauge",
            "Size of the last checkpoint written.",
            c.bytes as f64,
        ),
        (
            "citywatch_checkpoint_write_seconds",
            "gauge",
            "How long writing the last checkpoint took (file synced).",
            c.seconds,
        ),
        (
            "citywatch_checkpoint_hold_seconds",
            "gauge",
            "How long the workers' input was held while the last checkpoint's parts were taken.",
            c.held_seconds,
        ),
    ];
    for (name, kind, help, value) in families {
        o.family(name, kind, help);
        o.sample(name, &[], value);
    }
}

fn input_log(o: &mut Out, log: &ingest::input_log::LogStats, ledger: &ingest::input_log::Ledger) {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = [
        (
            "records",
            "Messages written to the input log.",
            &log.records,
        ),
        ("bytes", "Bytes written to the input log.", &log.bytes),
        (
            "commits",
            "Group commits (one write and sync each) of the input log.",
            &log.commits,
        ),
        (
            "write_errors",
            "Failed input log writes (intake waits and retries).",
            &log.write_errors,
        ),
        (
            "duplicates",
            "Redeliveries of messages the input log replayed at start, not taken again.",
            &log.duplicates,
        ),
    ];
    for (name, help, v) in counters {
        let name = format!("citywatch_input_log_{name}_total");
        o.family(&name, "counter", help);
        o.sample(&name, &[], v.load(Relaxed));
    }
    o.family(
        "citywatch_input_log_replay_from",
        "gauge",
        "The input log's first message a restart would feed again (all before it are journaled).",
    );
    o.sample("citywatch_input_log_replay_from", &[], ledger.replay_from());
}

/// The queue between the dataflow and the alerts' journal.
fn alerts_queue(o: &mut Out, q: &alerts::QueueStats) {
    o.family(
        "citywatch_alerts_queue",
        "gauge",
        "Condition snapshots waiting between the dataflow and the alert journal.",
    );
    o.sample("citywatch_alerts_queue", &[], q.depth());
    o.family(
        "citywatch_alerts_queue_capacity",
        "gauge",
        "Capacity of the alerts queue.",
    );
    o.sample("citywatch_alerts_queue_capacity", &[], q.capacity());
    let (waits, secs) = q.waits();
    o.family(
        "citywatch_alerts_backpressure_waits_total",
        "counter",
        "Times the dataflow waited for room in a full alerts queue.",
    );
    o.sample("citywatch_alerts_backpressure_waits_total", &[], waits);
    o.family(
        "citywatch_alerts_backpressure_seconds_total",
        "counter",
        "Time the dataflow spent waiting for room in the alerts queue.",
    );
    o.sample("citywatch_alerts_backpressure_seconds_total", &[], secs);
}
