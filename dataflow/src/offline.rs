//! The rules run offline, in the same dataflow as in production and in event time: rule test
//! files and backtests over a recording ([`backtest`]).
//!
//! A rule test file, like `promtool test rules`, gives input messages at times relative to a
//! start, and the conditions expected to fire and resolve.
//!
//! ```toml
//! start = "2026-11-27T08:00:00+08:00"   # optional; times below are offsets from it
//! until = "2h"                           # how far to run (default 1h)
//! reference = "../../../examples/reference"   # optional, relative to this file
//! quiet = ["kitchen.smoking"]            # rules that must not fire at all
//!
//! [[input]]
//! at = "1m"
//! topic = "cw/v1/kitchen/K-S01/camera/C1/detection"
//! payload = { kind = "no_mask", confidence = 0.9 }   # `ts` is filled in from `at`
//!
//! [[expect]]
//! rule = "kitchen.hygiene"
//! group = "K-S01"
//! fires = "4m"
//! resolves = "11m"                       # omit when it still fires at `until`
//! value = 3.0                            # the value it carries; unchecked when omitted
//! ```

use crate::build::{Built, Plan, Timeouts, build};
use crate::conditions::Condition;
use crate::reference::Reference;
use differential_dataflow::consolidation::consolidate_updates;
use model::Decoder;
use rules::Rule;
use rules::spec::parse_duration;
use serde::Deserialize;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::operators::{Inspect, Probe};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    quiet: Vec<String>,
    #[serde(default, rename = "input")]
    inputs: Vec<Input>,
    #[serde(default, rename = "expect")]
    expects: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    at: String,
    topic: String,
    payload: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    rule: String,
    #[serde(default)]
    group: String,
    fires: String,
    #[serde(default)]
    resolves: Option<String>,
    /// The value the condition carries, when the test says (compared to 0.001).
    #[serde(default)]
    value: Option<f64>,
}

/// The outcome of one test file.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The file.
    pub name: String,
    /// Empty when it passed; else one line per difference (`missing: …`, `unexpected: …`).
    pub diff: Vec<String>,
}

/// One firing interval, as offsets from a start (ms).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub rule: String,
    pub group: String,
    pub fires: u64,
    pub resolves: Option<u64>,
    /// The value it carries, in thousandths.
    pub value_milli: Option<i64>,
}

/// Every firing interval the rules produce over `events` (each at its own time), between
/// `start` and `until`, as offsets from `start`.
///
/// `events` may be read as they come (a recording streamed from disk): no event may be more
/// than `disorder` ms older than the newest one before it (a first pass over the recording
/// measures it). The input moves on to the newest time less `disorder` as events come, so
/// the operators hold only that span of events, and each event is still judged at its own
/// time; `u64::MAX` holds the input at `start` until every event is in.
pub fn backtest(
    rules: Arc<Vec<Rule>>,
    reference: Arc<Reference>,
    events: impl Iterator<Item = (model::Envelope, u64)> + Send + 'static,
    start: u64,
    until: u64,
    disorder: u64,
) -> Vec<Interval> {
    intervals(
        evaluate(rules, reference, events, start, until, disorder).0,
        start,
    )
}

/// As [`backtest`], with what made each interval fire (the cause a live alert keeps,
/// docs/explain.md), where the rules' operator kept one.
pub fn backtest_explained(
    rules: Arc<Vec<Rule>>,
    reference: Arc<Reference>,
    events: impl Iterator<Item = (model::Envelope, u64)> + Send + 'static,
    (start, until, disorder): (u64, u64, u64),
) -> Vec<(Interval, Option<crate::conditions::Cause>)> {
    let (updates, mut causes) = evaluate(rules, reference, events, start, until, disorder);
    intervals(updates, start)
        .into_iter()
        .map(|i| {
            let at = start + i.fires;
            let found = causes
                .iter()
                .position(|(c, t)| *t == at && c.rule == i.rule && c.group == i.group);
            let cause = found.map(|k| causes.swap_remove(k).0);
            (i, cause)
        })
        .collect()
}

/// An interval as a line: `rule [group] fires at 60s, resolves at 360s`.
pub fn show(i: &Interval) -> String {
    let t = |ms: u64| {
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    };
    let value = i.value_milli.map_or_else(String::new, |v| {
        format!(" with value {}", v as f64 / 1000.0)
    });
    match i.resolves {
        Some(r) => format!(
            "{} [{}] fires at {}{value}, resolves at {}",
            i.rule,
            i.group,
            t(i.fires),
            t(r)
        ),
        None => format!(
            "{} [{}] fires at {}{value}, still firing",
            i.rule,
            i.group,
            t(i.fires)
        ),
    }
}

/// Runs one test file against `rules`.
pub fn run_file(path: &Path, rules: Arc<Vec<Rule>>) -> Result<Outcome, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let file: TestFile = toml::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let duration = |field: &str, s: &str| {
        parse_duration(s).ok_or_else(|| format!("{name}: {field} {s:?} is not a duration"))
    };
    let start = match &file.start {
        None => 1_795_737_600_000,
        Some(s) => model::time::parse_rfc3339_ms(s)
            .ok_or_else(|| format!("{name}: start {s:?} is not an RFC 3339 time"))?,
    };
    let until = start + duration("until", file.until.as_deref().unwrap_or("1h"))?;
    let reference = match &file.reference {
        None => Reference::default(),
        Some(dir) => {
            let dir = path.parent().unwrap_or(Path::new(".")).join(dir);
            Reference::load(&dir).map_err(|e| format!("{name}: {e}"))?
        }
    };
    let decoder = Decoder::default();
    let mut events = Vec::new();
    for (n, input) in file.inputs.iter().enumerate() {
        let t = start + duration("at", &input.at)?;
        let mut payload = serde_json::to_value(&input.payload)
            .map_err(|e| format!("{name}: input {}: {e}", n + 1))?;
        if let Some(obj) = payload.as_object_mut() {
            obj.entry("ts").or_insert(serde_json::json!(t));
        }
        let env = decoder
            .decode(&input.topic, payload.to_string().as_bytes(), t)
            .map_err(|r| format!("{name}: input {} is rejected: {}", n + 1, r.message))?;
        events.push((env, t));
    }
    let mut expected: Vec<Interval> = Vec::new();
    for e in &file.expects {
        if !rules.iter().any(|r| r.id == e.rule) {
            return Err(format!(
                "{name}: expectation names an unknown rule {:?}",
                e.rule
            ));
        }
        expected.push(Interval {
            rule: e.rule.clone(),
            group: e.group.clone(),
            fires: duration("fires", &e.fires)?,
            resolves: e
                .resolves
                .as_deref()
                .map(|r| duration("resolves", r))
                .transpose()?,
            value_milli: e.value.map(|v| (v * 1000.0).round() as i64),
        });
    }
    let watched: Vec<String> = file
        .expects
        .iter()
        .map(|e| e.rule.clone())
        .chain(file.quiet.iter().cloned())
        .collect();
    let (updates, _) = evaluate(
        rules,
        Arc::new(reference),
        events.into_iter(),
        start,
        until,
        u64::MAX,
    );
    let mut actual = intervals(updates, start);
    actual.retain(|i| watched.contains(&i.rule));
    // A value is compared only where the test names one.
    for a in &mut actual {
        let named = expected
            .iter()
            .any(|e| e.value_milli.is_some() && e.rule == a.rule && e.group == a.group);
        if !named {
            a.value_milli = None;
        }
    }
    expected.sort();
    let mut diff = Vec::new();
    for e in &expected {
        if !actual.contains(e) {
            diff.push(format!("missing:    {}", show(e)));
        }
    }
    for a in &actual {
        if !expected.contains(a) {
            diff.push(format!("unexpected: {}", show(a)));
        }
    }
    Ok(Outcome { name, diff })
}

/// Events between two moves of the input while streaming.
const STREAM_STEP: usize = 4096;

/// The conditions over `events`, each sent at its own time, the input following the newest
/// less `disorder` (see [`backtest`]), and the causes of their starts.
fn evaluate(
    rules: Arc<Vec<Rule>>,
    reference: Arc<Reference>,
    events: impl Iterator<Item = (model::Envelope, u64)> + Send + 'static,
    start: u64,
    until: u64,
    disorder: u64,
) -> Evaluated {
    let events = std::sync::Mutex::new(Some(events));
    timely::execute_directly(move |worker| {
        let plan = Plan {
            timeouts: Timeouts::default(),
            series: false,
            rules_on: true,
            reference: reference.clone(),
            stats: Default::default(),
            checkpoints: None,
            incidents: Default::default(),
            facts: None,
        };
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let kept = Rc::new(RefCell::new(Vec::new()));
        let kept_sink = kept.clone();
        let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let Built {
                inputs,
                conditions,
                causes,
                ..
            } = build(scope, &plan);
            if let Some(causes) = causes {
                use timely::dataflow::operators::Inspect;
                causes.inspect(move |c| kept_sink.borrow_mut().push(c.clone()));
            }
            let probe = conditions.map(|c| {
                c.inner
                    .inspect(move |u: &(Condition, u64, isize)| sink.borrow_mut().push(u.clone()))
                    .probe()
                    .0
            });
            (inputs, probe)
        });
        inputs
            .rule_versions
            .send(crate::operators::conditions::RuleSetVersion::of(0, &rules));
        inputs.advance_to(start);
        crate::runtime::register_devices(&mut inputs, &rules, &reference, start);
        let events = events.lock().ok().and_then(|mut e| e.take());
        let (mut newest, mut epoch) = (start, start);
        for (n, e) in events.into_iter().flatten().enumerate() {
            newest = newest.max(e.1);
            inputs.events.send(e);
            let to = newest.saturating_sub(disorder).min(until);
            if n % STREAM_STEP == STREAM_STEP - 1 && to > epoch {
                epoch = to;
                inputs.advance_to(to);
                if let Some(probe) = &probe {
                    while probe.less_than(&to) {
                        worker.step();
                    }
                }
            }
        }
        inputs.advance_to(until);
        if let Some(probe) = probe {
            while probe.less_than(&until) {
                worker.step();
            }
        }
        let causes = kept.take().into_iter().filter(|(_, t)| *t < until);
        (closed_before(&seen.borrow(), until), causes.collect())
    })
}

/// The conditions' updates, consolidated, and the causes of their starts with their times.
type Evaluated = (
    Vec<(Condition, u64, isize)>,
    Vec<(crate::conditions::Cause, u64)>,
);

/// The updates before `until`, consolidated: what a run closed at `until` tells.
pub fn closed_before<D: Ord + Clone>(
    updates: &[(D, u64, isize)],
    until: u64,
) -> Vec<(D, u64, isize)> {
    let mut all: Vec<(D, u64, isize)> = updates.iter().filter(|u| u.1 < until).cloned().collect();
    consolidate_updates(&mut all);
    all
}

fn intervals(mut updates: Vec<(Condition, u64, isize)>, start: u64) -> Vec<Interval> {
    updates.sort_by(|a, b| (&a.0.rule, &a.0.group, a.1).cmp(&(&b.0.rule, &b.0.group, b.1)));
    let mut out: Vec<Interval> = Vec::new();
    for (c, t, d) in updates {
        if d > 0 {
            out.push(Interval {
                rule: c.rule,
                group: c.group,
                fires: t - start,
                resolves: None,
                value_milli: Some(c.value_milli),
            });
        } else if let Some(open) = out
            .iter_mut()
            .rev()
            .find(|i| i.rule == c.rule && i.group == c.group && i.resolves.is_none())
        {
            open.resolves = Some(t - start);
        }
    }
    out.sort();
    out
}

/// Every `*.test.toml` under `path` (or `path` itself).
pub fn test_files(path: &Path) -> Vec<std::path::PathBuf> {
    fn walk(p: &Path, out: &mut Vec<std::path::PathBuf>) {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), out);
                }
            }
        } else if p.to_string_lossy().ends_with(".test.toml") {
            out.push(p.to_owned());
        }
    }
    let mut out = Vec::new();
    walk(path, &mut out);
    out.sort();
    out
}
