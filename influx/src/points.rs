//! Which points citywatch writes: the measurements of `docs/influx.md`.

use crate::line::{Field, Point};
use dataflow::counters::SnapshotView;
use dataflow::series::Series;
use model::{Envelope, Event};

/// The points of one closed window (or raw event).
pub fn series(s: &Series) -> Option<Point> {
    Some(match s {
        Series::Elevator {
            elevator_id,
            start_ms,
            window: w,
        } => {
            let mut p = Point::new("elevator_10s", *start_ms)
                .tag("elevator_id", elevator_id.as_str())
                .field("frames", Field::I64(w.frames.into()))
                .field("trips", Field::I64(w.trips.into()))
                .field("max_speed_mps", Field::F64(w.max_speed_mps))
                .field("door_cycles", Field::I64(w.door_cycles.into()))
                .field("fault_seconds", Field::F64(w.fault_ms as f64 / 1000.0));
            if let Some(v) = w.mean_vibration() {
                p = p.field("mean_vibration_mps2", Field::F64(v));
            }
            p
        }
        Series::MarketGoods {
            market_id,
            goods_code,
            start_ms,
            window: w,
        } => Point::new("market_goods_1m", *start_ms)
            .tag("market_id", market_id.as_str())
            .tag("goods_code", goods_code.as_str())
            .field("turnover_yuan", Field::F64(w.turnover_fen as f64 / 100.0))
            .field("sales", Field::I64(w.sales.into()))
            .field("mean_unit_price", Field::F64(w.mean_unit_price())),
        Series::KitchenDetections {
            kitchen_id,
            kind,
            start_ms,
            window: w,
        } => Point::new("kitchen_detections_1m", *start_ms)
            .tag("kitchen_id", kitchen_id.as_str())
            .tag("kind", kind.as_str())
            .field("detections", Field::I64(w.detections.into()))
            .field("low_confidence", Field::I64(w.low_confidence.into())),
        Series::Raw(env) => raw(env)?,
    })
}

/// A raw event as a point: measurement = stream, tags = the topic's ids, fields = the
/// payload's scalar fields.
pub fn raw(env: &Envelope) -> Option<Point> {
    let (measurement, tags, payload): (&'static str, Vec<(&'static str, &str)>, serde_json::Value) =
        match &env.event {
            Event::ElevatorStatus { elevator_id, frame } => (
                "elevator_status",
                vec![("elevator_id", elevator_id)],
                to_value(frame),
            ),
            Event::ElevatorEvent { elevator_id, event } => (
                "elevator_event",
                vec![("elevator_id", elevator_id)],
                to_value(event),
            ),
            Event::Sale {
                market_id,
                scale_id,
                sale,
            } => (
                "market_sale",
                vec![("market_id", market_id), ("scale_id", scale_id)],
                to_value(sale),
            ),
            Event::ScaleCheck {
                market_id,
                scale_id,
                check,
            } => (
                "market_check",
                vec![("market_id", market_id), ("scale_id", scale_id)],
                to_value(check),
            ),
            Event::Residue { market_id, test } => (
                "market_residue",
                vec![("market_id", market_id)],
                to_value(test),
            ),
            Event::Detection {
                kitchen_id,
                camera_id,
                detection,
            } => (
                "kitchen_detection",
                vec![("kitchen_id", kitchen_id), ("camera_id", camera_id)],
                to_value(detection),
            ),
            Event::Heartbeat {
                kitchen_id,
                camera_id,
                heartbeat,
            } => (
                "kitchen_heartbeat",
                vec![("kitchen_id", kitchen_id), ("camera_id", camera_id)],
                to_value(heartbeat),
            ),
            // Tagged by its id, so that two complaints in the same millisecond are two points
            // (one measurement, tag set and time make one point), and by what a dashboard
            // groups complaints by.
            Event::ComplaintNew { complaint } => {
                let mut tags = vec![
                    ("complaint_id", complaint.complaint_id.as_str()),
                    ("kind", complaint.kind.as_str()),
                    ("category", complaint.category.as_str()),
                ];
                if let Some(m) = &complaint.merchant_id {
                    tags.push(("merchant_id", m.as_str()));
                }
                ("complaint_new", tags, to_value(complaint))
            }
            Event::ComplaintStatus {
                complaint_id,
                update,
            } => (
                "complaint_status",
                vec![("complaint_id", complaint_id)],
                to_value(update),
            ),
        };
    let mut p = Point::new(measurement, env.time_ms);
    for (k, v) in &tags {
        p = p.tag(k, *v);
    }
    let serde_json::Value::Object(fields) = payload else {
        return None;
    };
    for (k, v) in fields {
        // A key is a tag or a field, never both.
        if k == "ts" || tags.iter().any(|(t, _)| *t == k) {
            continue;
        }
        let field = match v {
            serde_json::Value::Bool(b) => Field::Bool(b),
            serde_json::Value::Number(n) => Field::F64(n.as_f64()?),
            serde_json::Value::String(s) => Field::Str(s),
            _ => continue,
        };
        // Field keys of the contract are static; leak-free lookup of the known name.
        if let Some(key) = FIELD_NAMES.iter().find(|n| **n == k) {
            p = p.field(key, field);
        }
    }
    Some(p)
}

fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Every payload field name of the contract (except `ts`).
const FIELD_NAMES: &[&str] = &[
    "floor",
    "position_m",
    "in_door_zone",
    "speed_mps",
    "direction",
    "door",
    "light_curtain_blocked",
    "occupied",
    "load_pct",
    "vibration_mps2",
    "service_mode",
    "safety_circuit_ok",
    "power_ok",
    "alarm_button",
    "code",
    "detail",
    "stall_id",
    "goods_code",
    "weight_kg",
    "unit_price",
    "total",
    "tare_kg",
    "reference_kg",
    "measured_kg",
    "inhibition_pct",
    "result",
    "kind",
    "confidence",
    "snapshot",
    "online",
    "complaint_id",
    "merchant_id",
    "merchant_name",
    "category",
    "lat",
    "lon",
    "amount",
    "text",
    "status",
    "office",
];

/// Writes a snapshot of every counter each time event time crosses a multiple of
/// `interval_ms`, and every closed window as it comes.
pub fn writers(
    tx: crate::PointSender,
    interval_ms: u64,
) -> (
    impl Fn(&dataflow::Snapshot) + Send + Sync,
    dataflow::SeriesFn,
) {
    let interval = interval_ms.max(1);
    let last = std::sync::atomic::AtomicU64::new(0);
    let snapshots = {
        let tx = tx.clone();
        move |s: &dataflow::Snapshot| {
            let slot = s.as_of / interval;
            if last.fetch_max(slot, std::sync::atomic::Ordering::Relaxed) < slot {
                tx.send(snapshot(&s.view()));
            }
        }
    };
    let windows: dataflow::SeriesFn =
        std::sync::Arc::new(move |batch: Vec<Series>| tx.send(batch.iter().filter_map(series)));
    (snapshots, windows)
}

/// The points of a counter snapshot, at its `as_of`.
pub fn snapshot(view: &SnapshotView) -> Vec<Point> {
    let t = view.as_of;
    let mut out = Vec::new();
    for d in &view.elevators.by_district {
        out.push(
            Point::new("elevators", t)
                .tag("district", d.district.as_str())
                .field("registered", Field::I64(d.registered))
                .field("online", Field::I64(d.online))
                .field("offline", Field::I64(d.offline)),
        );
    }
    out.push(
        Point::new("elevators_unregistered", t)
            .field("online", Field::I64(view.elevators.unregistered_online)),
    );
    for c in &view.cameras.by_venue_type {
        out.push(
            Point::new("cameras", t)
                .tag("venue_type", c.venue_type.as_str())
                .field("registered", Field::I64(c.registered))
                .field("online", Field::I64(c.online)),
        );
    }
    for o in &view.complaints.by_office {
        out.push(
            Point::new("complaints", t)
                .tag("office", o.office.as_str())
                .field("received_today", Field::I64(o.received_today)),
        );
    }
    out.push(
        Point::new("complaints_duplicates", t)
            .field("today", Field::I64(view.complaints.duplicates_today)),
    );
    // The last complete minute of each stream, stamped with the minute (rewritten with the
    // same value by later snapshots until the minute leaves the window).
    let closed = t - t % 60_000;
    for m in view
        .messages
        .per_minute
        .iter()
        .filter(|m| m.minute + 60_000 == closed)
    {
        out.push(
            Point::new("messages_1m", m.minute)
                .tag("stream", m.stream.as_str())
                .field("count", Field::I64(m.count)),
        );
    }
    for (stream, n) in &view.messages.late {
        out.push(
            Point::new("events_late", t)
                .tag("stream", stream.as_str())
                .field("total", Field::I64(*n)),
        );
    }
    for (stream, n) in &view.messages.untimed {
        out.push(
            Point::new("events_untimed", t)
                .tag("stream", stream.as_str())
                .field("total", Field::I64(*n)),
        );
    }
    out
}

/// The points of the alert transitions in a conditions snapshot: one per condition that
/// started or stopped, at its exact event time. `severity` names a rule's severity.
pub fn transitions(
    c: &dataflow::ConditionsSnapshot,
    severity: impl Fn(&str) -> &'static str,
) -> Vec<Point> {
    c.changes
        .iter()
        .map(|(a, started, at)| {
            Point::new("alert_transitions", *at)
                .tag("rule", a.rule.as_str())
                .tag("severity", severity(&a.rule))
                .tag("state", if *started { "firing" } else { "resolved" })
                .field("group", Field::Str(a.group.clone()))
                .field("value", Field::F64(a.value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_keep_their_scalar_fields() {
        let env = model::Decoder::default()
            .decode(
                "cw/v1/elevator/E1/status",
                br#"{"ts":1795737600000,"floor":3,"in_door_zone":true,"speed_mps":0.5,"direction":"up","door":"closed"}"#,
                1_795_737_600_000,
            )
            .unwrap();
        let mut line = String::new();
        assert!(raw(&env).unwrap().write_line(&mut line));
        assert_eq!(
            line,
            "elevator_status,elevator_id=E1 direction=\"up\",door=\"closed\",floor=3,in_door_zone=true,service_mode=\"normal\",speed_mps=0.5 1795737600000\n"
        );
    }

    #[test]
    fn two_complaints_in_one_millisecond_are_two_points_with_escaped_tags() {
        let d = model::Decoder::default();
        let line = |id: &str| {
            let payload = format!(
                r#"{{"ts":1795737600000,"complaint_id":"{id}","merchant_id":"M-1","merchant_name":"老火锅, 解放碑=店","category":"food_safety"}}"#
            );
            let env = d
                .decode("cw/v1/complaint/new", payload.as_bytes(), 1_795_737_600_000)
                .unwrap();
            let mut out = String::new();
            assert!(raw(&env).unwrap().write_line(&mut out));
            out
        };
        let (a, b) = (line("C1"), line("C2"));
        let series = |l: &str| l.split(' ').next().unwrap().to_owned();
        assert_ne!(series(&a), series(&b), "{a}{b}");
        assert!(a.starts_with("complaint_new,"), "{a}");
        assert!(
            a.contains("complaint_id=C1") && a.contains("merchant_id=M-1"),
            "{a}"
        );
        assert!(
            a.contains("kind=complaint") && a.contains("category=food_safety"),
            "{a}"
        );
        assert!(
            a.contains(r#"merchant_name="老火锅, 解放碑=店""#),
            "a field, quoted: {a}"
        );
        assert!(!a.contains("complaint_id=\"C1\""), "not a field too: {a}");
    }
}
