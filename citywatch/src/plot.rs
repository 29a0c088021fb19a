//! The bench's plots, written as SVG by hand: two charts of a few lines each are all it
//! draws, which a plotting crate would make no shorter, and the bench stays free of its
//! dependencies.

use serde_json::Value;
use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A chart with a horizontal axis and two vertical ones (left and right), each from 0 to a
/// round number.
struct Chart {
    svg: String,
    x_max: f64,
    left_max: f64,
    right_max: f64,
}

/// Which vertical axis a line is read against.
#[derive(Clone, Copy)]
enum Axis {
    Left,
    Right,
}

impl Chart {
    /// The frame: title, grid, ticks and the axes' labels.
    fn new(title: &str, axes: [(&str, f64); 3]) -> Chart {
        let [
            (x_label, x_max),
            (left_label, left_max),
            (right_label, right_max),
        ] = axes;
        let (x_max, left_max, right_max) = (nice(x_max), nice(left_max), nice(right_max));
        let mut c = Chart {
            svg: format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="14">{title}</text>
"#,
                W / 2.0
            ),
            x_max,
            left_max,
            right_max,
        };
        for i in 0..=4 {
            let t = f64::from(i) / 4.0;
            let y0 = c.y(t * left_max, Axis::Left);
            let _ = write!(
                c.svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#ddd"/>
<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>
<text x="{}" y="{:.1}">{:.0}</text>
<text x="{:.1}" y="{}" text-anchor="middle">{:.0}</text>
"##,
                W - RIGHT,
                LEFT - 6.0,
                y0 + 4.0,
                t * left_max,
                W - RIGHT + 6.0,
                y0 + 4.0,
                t * right_max,
                c.x(t * x_max),
                H - BOTTOM + 18.0,
                t * x_max,
            );
        }
        let (mid, right) = (H / 2.0, W - 16.0);
        let _ = write!(
            c.svg,
            r##"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>
<text x="16" y="{mid}" transform="rotate(-90 16 {mid})" text-anchor="middle">{left_label}</text>
<text x="{right}" y="{mid}" transform="rotate(90 {right} {mid})" text-anchor="middle">{right_label}</text>
"##,
            W / 2.0,
            H - 12.0,
        );
        c
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.x_max * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64, axis: Axis) -> f64 {
        let max = match axis {
            Axis::Left => self.left_max,
            Axis::Right => self.right_max,
        };
        H - BOTTOM - v / max * (H - TOP - BOTTOM)
    }

    /// A line through `points` (x, y, filled?) read against `axis`; unfilled points are hollow.
    fn line(&mut self, colour: &str, axis: Axis, points: &[(f64, f64, bool)]) {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y, _)| format!("{:.1},{:.1}", self.x(x), self.y(y, axis)))
            .collect();
        let _ = writeln!(
            self.svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for &(x, y, filled) in points {
            let fill = if filled { colour } else { "white" };
            let _ = writeln!(
                self.svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{fill}" stroke="{colour}" stroke-width="2"/>"#,
                self.x(x),
                self.y(y, axis)
            );
        }
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn max(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, f64::max)
}

/// Latency (p50, p99; left axis, ms) and events/s taken (right axis) against the offered load
/// (msgs/s) of each bench step; unsustained steps are drawn hollow.
pub fn latency_vs_load(steps: &[Value]) -> String {
    let point = |s: &Value, y: &Value| {
        (
            num(&s["publish"]["messages_per_s"]),
            num(y),
            s["sustained"] == true,
        )
    };
    let p50: Vec<_> = steps
        .iter()
        .map(|s| point(s, &s["latency_ms"]["p50"]))
        .collect();
    let p99: Vec<_> = steps
        .iter()
        .map(|s| point(s, &s["latency_ms"]["p99"]))
        .collect();
    let taken: Vec<_> = steps.iter().map(|s| point(s, &s["events_per_s"])).collect();
    let mut c = Chart::new(
        "citywatch bench: latency and throughput against offered load",
        [
            ("offered load (msgs/s)", max(p50.iter().map(|p| p.0))),
            (
                "latency (ms): p50 blue, p99 red",
                max(p99.iter().map(|p| p.1)),
            ),
            ("taken (events/s): green", max(taken.iter().map(|p| p.1))),
        ],
    );
    c.line("#1f77b4", Axis::Left, &p50);
    c.line("#d62728", Axis::Left, &p99);
    c.line("#2ca02c", Axis::Right, &taken);
    c.finish()
}

/// Events/s taken (left axis) and citywatch's peak RSS (right axis, MB) against the city's
/// devices, one point per bench city.
pub fn cost_vs_size(sizes: &Value) -> String {
    let cities = sizes.as_array().map(Vec::as_slice).unwrap_or_default();
    let point = |c: &Value, y: &Value| (num(&c["devices"]), num(y), true);
    let taken: Vec<_> = cities
        .iter()
        .map(|c| point(c, &c["events_per_s"]))
        .collect();
    let rss: Vec<_> = cities
        .iter()
        .map(|c| point(c, &c["citywatch"]["rss_mb_max"]))
        .collect();
    let mut c = Chart::new(
        "citywatch bench: throughput and memory against the city's size",
        [
            (
                "devices (elevators, cameras, scales)",
                max(taken.iter().map(|p| p.0)),
            ),
            ("taken (events/s): green", max(taken.iter().map(|p| p.1))),
            ("RSS max (MB): purple", max(rss.iter().map(|p| p.1))),
        ],
    );
    c.line("#2ca02c", Axis::Left, &taken);
    c.line("#9467bd", Axis::Right, &rss);
    c.finish()
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
    fn axes_end_on_round_numbers_and_every_point_is_drawn() {
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
        let sizes = json!([
            {"devices": 1_150, "events_per_s": 20_000.0, "citywatch": {"rss_mb_max": 90.0}},
            {"devices": 11_500, "events_per_s": 40_000.0, "citywatch": {"rss_mb_max": 240.0}},
        ]);
        let svg = cost_vs_size(&sizes);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
    }
}
