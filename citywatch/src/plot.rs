//! The bench's plot, written as SVG by hand: one chart of two lines is all it draws, which a
//! plotting crate would make no shorter, and the bench stays free of its dependencies.

use serde_json::Value;
use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A line: its colour, what it draws of a step, and its axis' end.
type Series = (&'static str, fn(&Point) -> f64, f64);

/// One bench step as drawn.
struct Point {
    offered: f64,
    p50: f64,
    p99: f64,
    taken: f64,
    sustained: bool,
}

/// Latency (p50, p99; left axis, ms) and events/s taken (right axis) against the offered load
/// (msgs/s) of each bench step; unsustained steps are drawn hollow.
pub fn latency_vs_load(steps: &[Value]) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let pts: Vec<Point> = steps
        .iter()
        .map(|s| Point {
            offered: f(&s["publish"]["messages_per_s"]),
            p50: f(&s["latency_ms"]["p50"]),
            p99: f(&s["latency_ms"]["p99"]),
            taken: f(&s["events_per_s"]),
            sustained: s["sustained"] == true,
        })
        .collect();
    let x_max = nice(pts.iter().map(|p| p.offered).fold(0.0, f64::max));
    let ms_max = nice(pts.iter().map(|p| p.p99).fold(0.0, f64::max));
    let ev_max = nice(pts.iter().map(|p| p.taken).fold(0.0, f64::max));
    let x = |v: f64| LEFT + v / x_max * (W - LEFT - RIGHT);
    let y = |v: f64, max: f64| H - BOTTOM - v / max * (H - TOP - BOTTOM);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="14">citywatch bench: latency and throughput against offered load</text>
"#,
        W / 2.0
    );
    for i in 0..=4 {
        let t = f64::from(i) / 4.0;
        let y0 = y(t * ms_max, ms_max);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#ddd"/>
<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>
<text x="{}" y="{:.1}">{:.0}</text>
<text x="{:.1}" y="{}" text-anchor="middle">{:.0}</text>
"##,
            W - RIGHT,
            LEFT - 6.0,
            y0 + 4.0,
            t * ms_max,
            W - RIGHT + 6.0,
            y0 + 4.0,
            t * ev_max,
            x(t * x_max),
            H - BOTTOM + 18.0,
            t * x_max,
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle">offered load (msgs/s)</text>
<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency (ms): p50 blue, p99 red</text>
<text x="{}" y="{}" transform="rotate(90 {} {})" text-anchor="middle">taken (events/s): green</text>
"##,
        W / 2.0,
        H - 12.0,
        H / 2.0,
        H / 2.0,
        W - 16.0,
        H / 2.0,
        W - 16.0,
        H / 2.0,
    );
    let series: [Series; 3] = [
        ("#1f77b4", |p| p.p50, ms_max),
        ("#d62728", |p| p.p99, ms_max),
        ("#2ca02c", |p| p.taken, ev_max),
    ];
    for (colour, value, max) in &series {
        let line: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.offered), y(value(p), *max)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            line.join(" ")
        );
        for p in &pts {
            let fill = if p.sustained { *colour } else { "white" };
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{fill}" stroke="{colour}" stroke-width="2"/>"#,
                x(p.offered),
                y(value(p), *max)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round number at or above `v` (1, 2 or 5 × a power of ten), for an axis' end.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|n| *n >= v)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn axes_end_on_round_numbers_and_every_step_is_drawn() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(17_739.0), 20_000.0);
        assert_eq!(nice(81.0), 100.0);
        assert_eq!(nice(5.0), 5.0);
        let step = |offered: f64, p99: f64, sustained: bool| {
            json!({"publish": {"messages_per_s": offered}, "latency_ms": {"p50": p99 / 2.0, "p99": p99},
                   "events_per_s": offered, "sustained": sustained})
        };
        let svg = latency_vs_load(&[step(10_000.0, 80.0, true), step(40_000.0, 3_000.0, false)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("<circle").count(), 6);
        assert_eq!(
            svg.matches(r#"fill="white" stroke"#).count(),
            3,
            "the unsustained step is hollow"
        );
    }
}
