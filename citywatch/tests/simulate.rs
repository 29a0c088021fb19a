//! `citywatch simulate` and `citywatch bench`: the same seed gives the same recording byte for
//! byte, with its ground truth and the bad and late messages asked for; a small end-to-end
//! bench writes a report whose accuracy comes from the alerts a real citywatch raised.

mod common;

use common::cli as citywatch;
use serde_json::Value;
use std::path::Path;

/// The report.json a bench wrote to `out`.
fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn the_same_seed_gives_the_same_city_recording_and_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
        let summary = citywatch(&[
            "simulate",
            "--out",
            &p("rec.jsonl"),
            "--truth",
            &p("truth.jsonl"),
            "--write-reference",
            &p("reference"),
            "--elevators",
            "60",
            "--kitchens",
            "5",
            "--markets",
            "2",
            "--scales-per-market",
            "5",
            "--merchants",
            "10",
            "--seconds",
            "120",
            "--speed",
            "0",
            "--start-ms",
            "1795737600000",
            "--incident-every",
            "10",
            "--bad-every",
            "97",
            "--late-every",
            "89",
            "--seed",
            "7",
        ]);
        let summary: Value = serde_json::from_str(summary.trim()).unwrap();
        (summary, d)
    };
    let (a, da) = run("a");
    let (b, db) = run("b");
    for f in [
        "rec.jsonl",
        "truth.jsonl",
        "reference/elevators.csv",
        "reference/cameras.csv",
    ] {
        assert_eq!(
            std::fs::read(da.join(f)).unwrap(),
            std::fs::read(db.join(f)).unwrap(),
            "{f} differs between two runs of one seed"
        );
    }
    assert_eq!(a["messages"], b["messages"]);
    let lines = std::fs::read_to_string(da.join("rec.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count() as u64,
        a["messages"].as_u64().unwrap()
    );
    // Bad input as asked: a bad id in the topic, a payload that is not an object, or cut JSON.
    assert!(a["bad"].as_u64().unwrap() > 0);
    assert!(lines.contains("bad id!"), "a bad id among the messages");
    assert!(a["late"].as_u64().unwrap() > 0);
    // The ground truth names the rule that should fire for each injected incident.
    let truth: Vec<Value> = std::fs::read_to_string(da.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(truth.len() as u64, a["incidents"].as_u64().unwrap());
    assert!(truth.len() >= 7, "{truth:?}");
    for i in &truth {
        assert!(i["rule"].as_str().unwrap().contains('.'), "{i}");
        assert!(i["start_ms"].as_u64().unwrap() >= 1_795_737_600_000);
    }
    // The devices of the ground truth are devices of the reference data written beside it.
    let elevators = std::fs::read_to_string(da.join("reference/elevators.csv")).unwrap();
    for i in truth
        .iter()
        .filter(|i| i["rule"].as_str().unwrap().starts_with("elevator."))
    {
        assert!(elevators.contains(i["device"].as_str().unwrap()), "{i}");
    }
}

#[test]
fn a_small_bench_reports_throughput_latency_and_accuracy_from_real_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let printed = citywatch(&[
        "bench",
        "--smoke",
        "--out",
        out.to_str().unwrap(),
        "--elevators",
        "200",
        "--kitchens",
        "10",
        "--seconds",
        "400",
        "--speed",
        "0",
    ]);
    assert!(printed.contains("| recall |"), "{printed}");
    let report = report(&out);
    assert!(report["events_per_s"].as_f64().unwrap() > 0.0, "{report}");
    for p in ["p50", "p99", "max"] {
        assert!(report["latency_ms"][p].as_f64().is_some(), "{report}");
    }
    let acc = &report["accuracy"];
    let (incidents, found) = (
        acc["incidents"].as_u64().unwrap(),
        acc["found"].as_u64().unwrap(),
    );
    assert!(incidents > 0, "{report}");
    // Found incidents are alerts the running citywatch journaled, not a copy of the truth.
    assert!(
        found > 0 && report["alerts_of_incident_rules"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!((0.0..=1.0).contains(&acc["recall"].as_f64().unwrap()));
    assert!((0.0..=1.0).contains(&acc["precision"].as_f64().unwrap()));
    assert_eq!(
        acc["recall"].as_f64().unwrap(),
        found as f64 / incidents as f64
    );
    assert!(out.join("summary.md").exists());
    assert!(out.join("reference/elevators.csv").exists());
    assert!(report["machine"]["cpus"].as_u64().unwrap() >= 1);
    // The broker alone carried the same messages, and the pipeline is a share of its rate.
    let alone = &report["broker_alone"];
    assert_eq!(alone["messages"], report["messages"], "{report}");
    assert!(alone["received"].as_u64().unwrap() > 0, "{report}");
    assert!(alone["messages_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["share_of_broker"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

#[test]
fn a_stepped_bench_reports_each_step_and_draws_the_load_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("steps");
    let printed = citywatch(&[
        "bench",
        "--smoke",
        "--out",
        out.to_str().unwrap(),
        "--elevators",
        "100",
        "--kitchens",
        "5",
        "--seconds",
        "120",
        "--steps",
        "60,0",
        "--no-baseline",
    ]);
    assert!(printed.contains("| speed | offered msgs/s |"), "{printed}");
    let report = report(&out);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report}");
    for (step, speed) in steps.iter().zip([60.0, 0.0]) {
        assert_eq!(step["speed"].as_f64(), Some(speed));
        assert!(step["events_per_s"].as_f64().unwrap() > 0.0, "{step}");
        assert!(step["sustained"].is_boolean());
        assert!(
            out.join(format!("step-{}", (speed == 0.0) as u8))
                .join("ground-truth.jsonl")
                .exists()
        );
    }
    assert!(report["broker_alone"].is_null(), "--no-baseline");
    let svg = std::fs::read_to_string(out.join("load.svg")).unwrap();
    assert_eq!(
        svg.matches("<circle").count(),
        6,
        "three lines of two steps"
    );
}

#[test]
fn a_bench_over_sizes_reports_each_city_and_draws_the_cost_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sizes");
    let printed = citywatch(&[
        "bench",
        "--smoke",
        "--out",
        out.to_str().unwrap(),
        "--sizes",
        "50,200",
        "--seconds",
        "60",
        "--no-baseline",
    ]);
    assert!(printed.contains("| elevators | devices |"), "{printed}");
    let report = report(&out);
    let sizes = report["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 2, "{report}");
    assert_eq!(sizes[0]["elevators"], 50);
    assert_eq!(sizes[1]["elevators"], 200);
    assert!(sizes[1]["devices"].as_u64() > sizes[0]["devices"].as_u64());
    for (c, n) in sizes.iter().zip([50, 200]) {
        assert!(c["events_per_s"].as_f64().unwrap() > 0.0, "{c}");
        assert!(out.join(format!("size-{n}/report.json")).exists());
        assert!(
            out.join(format!("size-{n}/reference/elevators.csv"))
                .exists()
        );
    }
    let svg = std::fs::read_to_string(out.join("sizes.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), 4);
}
