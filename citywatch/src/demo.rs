//! `citywatch demo`: `run` plus a simulated district publishing over MQTT in real time, with
//! an incident every few seconds and its ground truth written beside the data.

use crate::run::Demo;
use rumqttc::{AsyncClient, QoS};
use simulators::{District, Simulator};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The district of the reference data, as the simulator drives it.
pub fn district(r: &dataflow::Reference) -> District {
    let schools: std::collections::HashSet<&str> = r
        .kitchens
        .iter()
        .filter(|k| k.venue_type.as_str() == "school")
        .map(|k| k.kitchen_id.as_str())
        .collect();
    let places: std::collections::HashMap<&str, (f64, f64)> = r
        .kitchens
        .iter()
        .filter_map(|k| Some((k.kitchen_id.as_str(), (k.lat?, k.lon?))))
        .collect();
    District {
        elevators: r
            .elevators
            .iter()
            .map(|e| simulators::district::Elevator {
                id: e.elevator_id.to_string(),
                rated_speed_mps: e.rated_speed_mps,
                floors: e.floors,
                place: Some((e.lat, e.lon)),
            })
            .collect(),
        cameras: r
            .cameras
            .iter()
            .map(|c| simulators::district::Camera {
                kitchen_id: c.kitchen_id.to_string(),
                camera_id: c.camera_id.to_string(),
                school: schools.contains(c.kitchen_id.as_str()),
                place: places.get(c.kitchen_id.as_str()).copied(),
            })
            .collect(),
        scales: r
            .scales
            .iter()
            .map(|s| simulators::district::Scale {
                market_id: s.market_id.to_string(),
                scale_id: s.scale_id.to_string(),
                stall_id: s.stall_id.to_string(),
            })
            .collect(),
        merchants: r
            .merchants
            .iter()
            .map(|m| m.merchant_id.to_string())
            .collect(),
        // Simulated complaints happen at places inside the jurisdictions.
        area: r.jurisdictions().bounds(),
    }
}

/// Publishes one simulated second per wall-clock second until cancelled.
pub async fn publish(host: String, port: u16, district: District, demo: Demo, truth: PathBuf) {
    let opts =
        crate::simulate::client_options(format!("citywatch-demo-{}", demo.seed), &host, port);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut sim = Simulator::new(district, demo.seed, now - now % 1000)
        .with_incident_every(demo.incident_every);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for m in sim.step() {
            if client
                .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                .await
                .is_err()
            {
                return;
            }
        }
        for incident in sim.take_incidents() {
            tracing::info!(kind = incident.kind, device = %incident.device, rule = incident.rule, "demo: incident injected");
            let line = serde_json::to_string(&incident).unwrap_or_default();
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&truth)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot write the demo's ground truth");
            }
        }
    }
}
