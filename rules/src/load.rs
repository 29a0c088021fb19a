//! Reading rule files (TOML, `[[rule]]` tables) into validated rules.
//!
//! Every problem is reported as `file:line:column: message`, and a file with any problem
//! yields no rules at all: an invalid rule never replaces a running one.

use crate::expr::{EvalError, Evaluator, Expr, sample_event, sample_ref};
use crate::spec::*;
use cel_interpreter::Value;
use model::Stream;
use serde::Deserialize;
use std::path::Path;

/// A problem in a rule file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The rule it is about, when known.
    pub rule: Option<String>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleSource>>,
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses and validates one file's text. `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    crate::limits::check_file(text, &crate::limits::get()).map_err(|e| {
        let (line, column) = position(text, e.at - 1);
        vec![RuleError {
            file: file.to_owned(),
            line,
            column,
            rule: None,
            message: e.to_string(),
        }]
    })?;
    let parsed: RuleFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| position(text, s.start));
        vec![RuleError {
            file: file.to_owned(),
            line,
            column,
            rule: None,
            message: e.message().to_owned(),
        }]
    })?;
    let evaluator = Evaluator::default();
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for spanned in parsed.rule {
        // The span covers the `[[rule]]` header; the table runs to the next header.
        let header = spanned.span();
        let end = text[header.end..]
            .find("\n[")
            .map_or(text.len(), |i| header.end + i);
        let span = header.start..end;
        let src = spanned.into_inner();
        let at = |key: &str, column_in_value: usize| -> (usize, usize) {
            // The key's value inside this rule's table, else the table itself.
            let body = &text[span.clone()];
            let found = body.lines().scan(0, |off, l| {
                let here = *off;
                *off += l.len() + 1;
                Some((here, l))
            });
            for (off, l) in found {
                let trimmed = l.trim_start();
                if trimmed.starts_with(key) && trimmed[key.len()..].trim_start().starts_with('=') {
                    let eq = l.find('=').unwrap_or(0);
                    let value_start = eq + 1 + (l[eq + 1..].len() - l[eq + 1..].trim_start().len());
                    let quote = usize::from(l[value_start..].starts_with(['"', '\'']));
                    let (line, col) = position(text, span.start + off + value_start + quote);
                    return (line, col + column_in_value.saturating_sub(1));
                }
            }
            position(text, span.start)
        };
        let mut err = |key: &str, column: usize, message: String| {
            let (line, column) = at(key, column);
            errors.push(RuleError {
                file: file.to_owned(),
                line,
                column,
                rule: Some(src.id.clone()),
                message,
            });
        };
        let (line, _) = position(text, span.start);
        if let Some(mut rule) = validate(&src, &evaluator, &mut err) {
            rule.origin = format!("{file}:{line}");
            rules.push(rule);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &rules {
        if !seen.insert(r.id.clone()) {
            errors.push(RuleError {
                file: file.to_owned(),
                line: 1,
                column: 1,
                rule: Some(r.id.clone()),
                message: format!("duplicate rule id {:?}", r.id),
            });
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Loads every `*.toml` file under `dir` (recursively, in name order), skipping test files
/// (`*.test.toml`). Rule ids must be unique across files.
pub fn load_dir(dir: &Path) -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut files = Vec::new();
    collect(dir, &mut files).map_err(|e| {
        vec![RuleError {
            file: dir.display().to_string(),
            line: 1,
            column: 1,
            rule: None,
            message: e.to_string(),
        }]
    })?;
    files.sort();
    let mut rules: Vec<Rule> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Err(e) => errors.push(RuleError {
                file: name,
                line: 1,
                column: 1,
                rule: None,
                message: e.to_string(),
            }),
            Ok(text) => match load_str(&name, &text) {
                Ok(mut rs) => rules.append(&mut rs),
                Err(mut es) => errors.append(&mut es),
            },
        }
    }
    let mut seen = std::collections::HashMap::new();
    for r in &rules {
        if let Some(first) = seen.insert(r.id.clone(), r.origin.clone()) {
            let (file, line) = r.origin.rsplit_once(':').unwrap_or((&r.origin, "1"));
            errors.push(RuleError {
                file: file.to_owned(),
                line: line.parse().unwrap_or(1),
                column: 1,
                rule: Some(r.id.clone()),
                message: format!("rule id {:?} is also defined at {first}", r.id),
            });
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "toml")
            && !p.to_string_lossy().ends_with(".test.toml")
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Compiles a rule that was already written out (sent between workers, or kept as the
/// running set). Its problems, if any, as messages.
pub fn compile(src: &RuleSource, origin: &str) -> Result<Rule, Vec<String>> {
    let evaluator = Evaluator::default();
    let mut problems = Vec::new();
    let mut err =
        |key: &str, _col: usize, message: String| problems.push(format!("{key}: {message}"));
    match validate(src, &evaluator, &mut err) {
        Some(mut rule) if problems.is_empty() => {
            rule.origin = origin.to_owned();
            Ok(rule)
        }
        _ => Err(problems),
    }
}

/// Streams a registry can judge absence from, by default.
fn default_registry(stream: Stream) -> Option<Registry> {
    match stream {
        Stream::ElevatorStatus | Stream::ElevatorEvent => Some(Registry::Elevators),
        Stream::KitchenHeartbeat | Stream::KitchenDetection => Some(Registry::Cameras),
        Stream::MarketSale | Stream::MarketCheck => Some(Registry::Scales),
        _ => None,
    }
}

/// Event rules hold this long after their last matching event unless `keep_firing_for` says.
pub const DEFAULT_EVENT_HOLD_MS: u64 = 5 * 60_000;

fn validate(
    src: &RuleSource,
    ev: &Evaluator,
    err: &mut impl FnMut(&str, usize, String),
) -> Option<Rule> {
    let before = std::cell::Cell::new(0usize);
    let mut fail = |key: &str, col: usize, msg: String| {
        before.set(before.get() + 1);
        err(key, col, msg);
    };
    if src.id.is_empty() || !model::id::is_valid_id(&src.id) {
        fail(
            "id",
            1,
            format!(
                "rule id {:?} must be 1-64 characters of [A-Za-z0-9_.-]",
                src.id
            ),
        );
    }
    let Some(stream) = Stream::ALL.into_iter().find(|s| s.as_str() == src.stream) else {
        let names: Vec<&str> = Stream::ALL.iter().map(|s| s.as_str()).collect();
        fail(
            "stream",
            1,
            format!(
                "unknown stream {:?}; expected one of {}",
                src.stream,
                names.join(", ")
            ),
        );
        return None;
    };
    let sample = sample_event(stream);
    let duration = |fail: &mut dyn FnMut(&str, usize, String),
                    key: &str,
                    v: &Option<String>|
     -> u64 {
        match v {
            None => 0,
            Some(s) => parse_duration(s).unwrap_or_else(|| {
                fail(key, 1, format!("bad duration {s:?}: use a number and a unit (ms, s, m, h, d), e.g. \"90s\" or \"1h30m\""));
                0
            }),
        }
    };
    let for_ms = duration(&mut fail, "for", &src.for_);
    let mut keep_ms = duration(&mut fail, "keep_firing_for", &src.keep_firing_for);

    let event_vars = || {
        vec![
            ("event", sample.clone()),
            ("prev", sample.clone()),
            ("ref", sample_ref()),
        ]
    };
    // `number`: the expression gives a number (a rule's `value`), else a boolean.
    let compile_expr = |fail: &mut dyn FnMut(&str, usize, String),
                        key: &str,
                        text: &str,
                        vars: Vec<(&'static str, Value)>,
                        number: bool|
     -> Option<Expr> {
        match Expr::compile(text) {
            Err(e) => {
                fail(key, e.column, format!("syntax error: {}", e.message));
                None
            }
            Ok(expr) => {
                // Every name the expression reads must exist, even on branches the sample does
                // not reach.
                for path in crate::expr::name_paths(text) {
                    let Some((_, root)) = vars.iter().find(|(n, _)| *n == path[0]) else {
                        let names: Vec<&str> = vars.iter().map(|(n, _)| *n).collect();
                        fail(
                            key,
                            text.find(&path[0]).map_or(1, |i| i + 1),
                            format!(
                                "unknown name {:?}; expected one of {}",
                                path[0],
                                names.join(", ")
                            ),
                        );
                        return None;
                    };
                    let mut v = root;
                    for f in &path[1..] {
                        match crate::expr::field(v, f) {
                            Some(next) => v = next,
                            None => {
                                let col = text.find(&format!(".{f}")).map_or(1, |i| i + 2);
                                fail(
                                    key,
                                    col,
                                    format!("unknown field {f:?} in {}", path.join(".")),
                                );
                                return None;
                            }
                        }
                    }
                }
                let judged = if number {
                    ev.value(&expr, vars).and_then(|v| {
                        crate::expr::number(&v)
                            .map(drop)
                            .ok_or_else(|| EvalError::Type("expected a number".into()))
                    })
                } else {
                    ev.bool(&expr, vars).map(drop)
                };
                match judged {
                    Ok(()) => Some(expr),
                    Err(EvalError::UnknownField(f)) => {
                        fail(
                            key,
                            text.find(&f).map_or(1, |i| i + 1),
                            format!("unknown field {f:?} for stream {}", src.stream),
                        );
                        None
                    }
                    Err(e) => {
                        fail(key, 1, e.to_string());
                        None
                    }
                }
            }
        }
    };
    let filter = src
        .filter
        .as_deref()
        .and_then(|f| compile_expr(&mut fail, "filter", f, event_vars(), false));
    for g in &src.group_by {
        if crate::expr::field(&sample, g).is_none() {
            fail(
                "group_by",
                1,
                format!("unknown field {g:?} for stream {}", src.stream),
            );
        }
    }
    let prior_n = src.prior_windows.unwrap_or(0);
    let value_vars = || {
        let list = |v: Value| Value::List(std::sync::Arc::new(vec![v; prior_n.max(1) as usize]));
        vec![
            ("value", Value::Float(1.0)),
            ("count", Value::Int(1)),
            ("prior", list(Value::Float(1.0))),
            ("prior_count", list(Value::Int(1))),
        ]
    };
    if src.prior_windows.is_some() && src.window.as_ref().is_none_or(|w| w.tumbling.is_none()) {
        fail(
            "prior_windows",
            1,
            "prior_windows needs a tumbling window".into(),
        );
    }
    if prior_n > 366 {
        fail("prior_windows", 1, "at most 366 windows".into());
    }
    let mode = src.mode.as_deref().unwrap_or("event");
    if !matches!(mode, "event" | "state") {
        fail(
            "mode",
            1,
            format!("unknown mode {mode:?}; expected event or state"),
        );
    }
    if src.hours.is_some() && src.absent_for.is_none() {
        fail(
            "hours",
            1,
            "hours applies to absence rules (absent_for)".into(),
        );
    }
    if src.registry_filter.is_some() && src.absent_for.is_none() {
        fail(
            "registry_filter",
            1,
            "registry_filter applies to absence rules (absent_for)".into(),
        );
    }
    let registry_filter = src.registry_filter.as_deref().and_then(|f| {
        compile_expr(
            &mut fail,
            "registry_filter",
            f,
            vec![("ref", sample_ref())],
            false,
        )
    });
    if !src.seen_on.is_empty() && src.absent_for.is_none() {
        fail(
            "seen_on",
            1,
            "seen_on applies to absence rules (absent_for)".into(),
        );
    }
    let seen_on: Vec<Stream> = src
        .seen_on
        .iter()
        .filter_map(|name| {
            let found = Stream::ALL.into_iter().find(|s| s.as_str() == name);
            if found.is_none() {
                fail("seen_on", 1, format!("unknown stream {name:?}"));
            }
            found
        })
        .collect();
    let kind = if let Some(d) = &src.deadline {
        if src.absent_for.is_some() || src.window.is_some() || src.aggregate.is_some() {
            fail(
                "deadline",
                1,
                "deadline cannot be combined with absent_for, window or aggregate".into(),
            );
        }
        if mode != "event" || src.clear_condition.is_some() {
            fail(
                "deadline",
                1,
                "a deadline stops with its done condition: no mode or clear_condition".into(),
            );
        }
        if d.working_days == 0 {
            fail("deadline", 1, "working_days must be at least 1".into());
        }
        if src.group_by.is_empty() {
            fail(
                "group_by",
                1,
                "a deadline runs per group: name what identifies it (e.g. complaint_id)".into(),
            );
        }
        let done_stream = match d.done_stream.as_deref() {
            None => Some(stream),
            Some(name) => {
                let found = Stream::ALL.into_iter().find(|s| s.as_str() == name);
                if found.is_none() {
                    fail("deadline", 1, format!("unknown done_stream {name:?}"));
                }
                found
            }
        };
        let done = done_stream.and_then(|ds| {
            let sample = sample_event(ds);
            for g in &src.group_by {
                if crate::expr::field(&sample, g).is_none() {
                    fail(
                        "group_by",
                        1,
                        format!("unknown field {g:?} for done_stream {}", ds.as_str()),
                    );
                }
            }
            let vars = vec![
                ("event", sample.clone()),
                ("prev", sample),
                ("ref", sample_ref()),
            ];
            compile_expr(&mut fail, "deadline.done", &d.done, vars, false)
        });
        match (done_stream, done) {
            (Some(done_stream), Some(done)) => Kind::Deadline {
                working_days: d.working_days,
                done_stream,
                done,
            },
            _ => Kind::Event,
        }
    } else if let Some(after) = &src.absent_for {
        let after_ms = duration(&mut fail, "absent_for", &Some(after.clone()));
        if src.window.is_some() || src.aggregate.is_some() {
            fail(
                "absent_for",
                1,
                "absent_for cannot be combined with window or aggregate".into(),
            );
        }
        let registry = match src.registry.as_deref() {
            None => default_registry(stream),
            Some("elevators") => Some(Registry::Elevators),
            Some("cameras") => Some(Registry::Cameras),
            Some("scales") => Some(Registry::Scales),
            Some(other) => {
                fail(
                    "registry",
                    1,
                    format!("unknown registry {other:?}; expected elevators, cameras or scales"),
                );
                None
            }
        };
        match registry {
            Some(registry) => Kind::Absence {
                after_ms,
                registry,
                seen_on: seen_on.clone(),
                registry_filter: registry_filter.clone(),
                hours: src.hours.as_deref().and_then(|h| {
                    let parsed = crate::spec::parse_hours(h);
                    if parsed.is_none() {
                        fail(
                            "hours",
                            1,
                            format!("hours {h:?}: expected HH:MM-HH:MM within one day, e.g. \"06:00-20:00\""),
                        );
                    }
                    parsed
                }),
            },
            None => {
                fail(
                    "absent_for",
                    1,
                    format!(
                        "stream {} has no registry: name one with registry",
                        src.stream
                    ),
                );
                Kind::Event
            }
        }
    } else if let Some(w) = &src.window {
        let bad = |s: &str| {
            format!(
                "bad duration {s:?}: use a number and a unit (ms, s, m, h, d), e.g. \"90s\" or \"1h30m\""
            )
        };
        let window = match (&w.sliding, &w.tumbling) {
            (Some(s), None) | (None, Some(s)) => match parse_duration(s) {
                None => {
                    fail("window", 1, bad(s));
                    Window::Sliding(1)
                }
                Some(0) => {
                    fail("window", 1, "window size must be greater than 0".into());
                    Window::Sliding(1)
                }
                Some(ms) if w.sliding.is_some() => Window::Sliding(ms),
                Some(ms) => Window::Tumbling(ms),
            },
            _ => {
                fail(
                    "window",
                    1,
                    "window needs exactly one of sliding or tumbling".into(),
                );
                Window::Sliding(1)
            }
        };
        let aggregate = parse_aggregate(src.aggregate.as_deref().unwrap_or("count")).unwrap_or_else(|| {
            fail("aggregate", 1, format!("unknown aggregate {:?}; expected count, rate, sum(f), avg(f), min(f), max(f), distinct(f) or last(f)", src.aggregate.as_deref().unwrap_or("")));
            Aggregate::Count
        });
        if let Some(f) = aggregate.field() {
            match crate::expr::field(&sample, f) {
                None => fail(
                    "aggregate",
                    1,
                    format!("unknown field {f:?} for stream {}", src.stream),
                ),
                Some(v)
                    if crate::expr::number(v).is_none()
                        && !matches!(aggregate, Aggregate::Distinct(_) | Aggregate::Last(_)) =>
                {
                    fail("aggregate", 1, format!("field {f:?} is not a number"))
                }
                Some(_) => {}
            }
        }
        let condition = match &src.condition {
            None => {
                fail(
                    "window",
                    1,
                    "a window rule needs a condition over value (e.g. \"value >= 3\")".into(),
                );
                None
            }
            Some(c) => compile_expr(&mut fail, "condition", c, value_vars(), false),
        };
        let clear = src
            .clear_condition
            .as_deref()
            .and_then(|c| compile_expr(&mut fail, "clear_condition", c, value_vars(), false));
        match condition {
            Some(condition) => Kind::Window {
                window,
                aggregate,
                condition,
                clear,
                prior: prior_n,
            },
            None => Kind::Event,
        }
    } else {
        if src.condition.is_some() || src.aggregate.is_some() {
            fail(
                "condition",
                1,
                "condition and aggregate need a window".into(),
            );
        }
        if mode == "state" {
            let clear = src
                .clear_condition
                .as_deref()
                .and_then(|c| compile_expr(&mut fail, "clear_condition", c, event_vars(), false));
            Kind::State { clear }
        } else {
            if src.clear_condition.is_some() {
                fail("clear_condition", 1, "event rules clear after keep_firing_for; clear_condition needs mode = \"state\" or a window".into());
            }
            if for_ms > 0 {
                fail(
                    "for",
                    1,
                    "event rules cannot wait (for): use mode = \"state\" or a window".into(),
                );
            }
            if src.keep_firing_for.is_none() {
                keep_ms = DEFAULT_EVENT_HOLD_MS;
            } else if keep_ms == 0 {
                fail(
                    "keep_firing_for",
                    1,
                    "event rules need keep_firing_for > 0: how long one event keeps the condition"
                        .into(),
                );
            }
            Kind::Event
        }
    };
    // `prev` is known where a group's events meet, in event-time order: only the filter may
    // read it, and there the reference data (`ref`) is not at hand.
    let mut prev_fields = Vec::new();
    if let Some(f) = filter.as_ref().filter(|f| f.uses_prev) {
        if f.uses_ref {
            fail(
                "filter",
                1,
                "a filter that reads prev cannot read ref".into(),
            );
        }
        for path in crate::expr::name_paths(&f.source) {
            if (path[0] == "event" || path[0] == "prev")
                && let Some(field) = path.get(1)
                && !prev_fields.contains(field)
            {
                prev_fields.push(field.clone());
            }
        }
    }
    // The number a condition of an event or state rule carries (a window's is its aggregate,
    // an absence's its minutes, a deadline's its working days).
    let value = src.value.as_deref().and_then(|v| match kind {
        Kind::Event | Kind::State { .. } => compile_expr(&mut fail, "value", v, event_vars(), true),
        _ => {
            fail(
                "value",
                1,
                "value applies to event and state rules; a window's value is its aggregate".into(),
            );
            None
        }
    });
    let ended_by = src.ended_by.as_deref().and_then(|e| match kind {
        Kind::Event | Kind::Window { .. } if prev_fields.is_empty() => {
            compile_expr(&mut fail, "ended_by", e, event_vars(), false)
        }
        Kind::Event | Kind::Window { .. } => {
            fail(
                "ended_by",
                1,
                "a rule whose filter reads prev cannot have ended_by".into(),
            );
            None
        }
        _ => {
            fail(
                "ended_by",
                1,
                "ended_by applies to event and window rules (a state rule has clear_condition)"
                    .into(),
            );
            None
        }
    });
    for (key, text) in [
        ("clear_condition", src.clear_condition.as_deref()),
        ("ended_by", src.ended_by.as_deref()),
        ("registry_filter", src.registry_filter.as_deref()),
        ("value", src.value.as_deref()),
    ] {
        if text.is_some_and(|t| crate::expr::name_paths(t).iter().any(|p| p[0] == "prev")) {
            fail(key, 1, "only the filter may read prev".into());
        }
    }
    if before.get() > 0 {
        return None;
    }
    Some(Rule {
        id: src.id.clone(),
        description: src.description.clone(),
        severity: src.severity,
        stream,
        filter,
        value,
        ended_by,
        group_by: src.group_by.clone(),
        kind,
        for_ms,
        keep_firing_for_ms: keep_ms,
        labels: src.labels.clone(),
        annotations: src.annotations.clone(),
        route: src.route.clone(),
        inhibits: src.inhibits.clone(),
        enabled: src.enabled,
        prev_fields,
        origin: String::new(),
        source: src.clone(),
    })
}

fn parse_aggregate(s: &str) -> Option<Aggregate> {
    let s = s.trim();
    match s {
        "count" => return Some(Aggregate::Count),
        "rate" => return Some(Aggregate::Rate),
        _ => {}
    }
    let (name, rest) = s.split_once('(')?;
    let field = rest.strip_suffix(')')?.trim().to_owned();
    if field.is_empty() {
        return None;
    }
    Some(match name.trim() {
        "sum" => Aggregate::Sum(field),
        "avg" => Aggregate::Avg(field),
        "min" => Aggregate::Min(field),
        "max" => Aggregate::Max(field),
        "distinct" => Aggregate::Distinct(field),
        "last" => Aggregate::Last(field),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[rule]]
id = "kitchen.hygiene"
severity = "minor"
stream = "kitchen_detection"
filter = 'event.kind in ["no_mask", "no_hat"] && event.confidence >= 0.6'
group_by = ["kitchen_id"]
window = { sliding = "10m" }
aggregate = "count"
condition = "value >= 3"
"#;

    #[test]
    fn a_good_rule_loads() {
        let rules = load_str("k.toml", GOOD).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].origin, "k.toml:2");
        assert!(matches!(
            rules[0].kind,
            Kind::Window {
                window: Window::Sliding(600_000),
                aggregate: Aggregate::Count,
                ..
            }
        ));
    }

    fn one_error(text: &str) -> RuleError {
        let mut e = load_str("r.toml", text).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    }

    #[test]
    fn a_value_is_a_number_of_an_event_or_state_rule() {
        let rule = |extra: &str, value: &str| {
            format!(
                "[[rule]]\nid = \"x\"\nseverity = \"minor\"\nstream = \"elevator_status\"\nfilter = 'event.speed_mps > 3.0'\n{extra}value = '{value}'\n"
            )
        };
        let ok = load_str("v.toml", &rule("mode = \"state\"\n", "event.speed_mps")).unwrap();
        assert_eq!(ok[0].value.as_ref().unwrap().source, "event.speed_mps");
        let text = load_str("v.toml", &rule("", "event.door")).unwrap_err()[0]
            .message
            .clone();
        assert!(text.contains("expected a number"), "{text}");
        let window =
            "window = { sliding = \"1m\" }\naggregate = \"count\"\ncondition = \"value > 1\"\n";
        let text = load_str("v.toml", &rule(window, "event.speed_mps")).unwrap_err()[0]
            .message
            .clone();
        assert!(
            text.contains("value applies to event and state rules"),
            "{text}"
        );
    }

    #[test]
    fn ended_by_belongs_to_event_and_window_rules_without_prev() {
        let rule = |extra: &str| {
            format!(
                "[[rule]]\nid = \"x\"\nseverity = \"minor\"\nstream = \"market_residue\"\n{extra}ended_by = 'event.result == \"pass\"'\n"
            )
        };
        let window = "filter = 'event.result == \"fail\"'\nwindow = { sliding = \"2h\" }\naggregate = \"count\"\ncondition = \"value >= 3\"\n";
        let ok = load_str("e.toml", &rule(window)).unwrap();
        assert_eq!(
            ok[0].ended_by.as_ref().unwrap().source,
            "event.result == \"pass\""
        );
        // Each refusal points at the ended_by line.
        let problem = |extra: &str| {
            let text = rule(extra);
            let errors = load_str("e.toml", &text).unwrap_err();
            let line = text
                .lines()
                .position(|l| l.starts_with("ended_by"))
                .unwrap()
                + 1;
            assert_eq!(errors[0].line, line, "{errors:?}");
            errors[0].message.clone()
        };
        let state = problem("filter = 'event.result == \"fail\"'\nmode = \"state\"\n");
        assert!(
            state.contains("a state rule has clear_condition"),
            "{state}"
        );
        let prev = problem("filter = 'event.inhibition_pct > prev.inhibition_pct'\n");
        assert!(prev.contains("reads prev"), "{prev}");
    }

    #[test]
    fn errors_point_at_file_line_and_column() {
        let e = one_error(&GOOD.replace("kitchen_detection", "kitchen_detections"));
        assert_eq!((e.line, e.column), (5, 11));
        assert!(
            e.message
                .starts_with("unknown stream \"kitchen_detections\""),
            "{}",
            e.message
        );

        let e = one_error(&GOOD.replace("event.confidence", "event.confidance"));
        assert_eq!(e.line, 6);
        assert!(
            e.message
                .contains("unknown field \"confidance\" in event.confidance"),
            "{}",
            e.message
        );
        assert_eq!(
            e.column,
            11 + "event.kind in [\"no_mask\", \"no_hat\"] && event.".len()
        );

        let e = one_error(&GOOD.replace("10m", "10 minutes"));
        assert_eq!(e.line, 8);
        assert!(e.message.starts_with("bad duration"), "{}", e.message);

        let e = one_error(&GOOD.replace("value >= 3", "value"));
        assert!(e.message.contains("expected a boolean"), "{}", e.message);

        let e = one_error(&GOOD.replace("group_by", "groupby"));
        assert!(
            e.message.contains("unknown field `groupby`"),
            "{}",
            e.message
        );
        assert_eq!(e.line, 7);

        let e = one_error(&GOOD.replace("value >= 3", "value >= >= 3"));
        assert!(e.message.starts_with("syntax error"), "{}", e.message);
        assert_eq!(e.line, 10);
    }

    #[test]
    fn duplicates_and_event_rule_defaults() {
        let twice = format!("{GOOD}{GOOD}");
        assert!(one_error(&twice).message.contains("duplicate rule id"));
        let ev = load_str("e.toml", "[[rule]]\nid = \"x\"\nseverity = \"critical\"\nstream = \"kitchen_detection\"\nfilter = 'event.kind == \"rodent\"'\n").unwrap();
        assert_eq!(ev[0].keep_firing_for_ms, DEFAULT_EVENT_HOLD_MS);
    }

    #[test]
    fn prior_windows_need_a_tumbling_window_and_are_lists_in_the_condition() {
        let rule = "[[rule]]\nid = \"p\"\nseverity = \"minor\"\nstream = \"market_sale\"\n\
                    group_by = [\"market_id\", \"goods_code\"]\nwindow = { tumbling = \"1d\" }\n\
                    prior_windows = 3\naggregate = \"avg(unit_price)\"\n\
                    condition = 'prior_count[2] >= 10 && value > 1.1 * prior[2]'\n";
        let r = load_str("p.toml", rule).unwrap().remove(0);
        assert!(matches!(r.kind, Kind::Window { prior: 3, .. }));
        let e = one_error(&rule.replace("tumbling", "sliding"));
        assert!(
            e.message.contains("needs a tumbling window"),
            "{}",
            e.message
        );
        let e = one_error(&rule.replace("prior[2]", "prior.last"));
        assert_eq!(e.line, 9, "{}", e.message);
    }

    #[test]
    fn a_filter_reading_prev_carries_the_fields_it_reads() {
        let rule = "[[rule]]\nid = \"d\"\nseverity = \"minor\"\nstream = \"elevator_status\"\n\
                    filter = 'prev.door == \"closing\" && event.door == \"opening\" && event.floor == prev.floor'\n\
                    group_by = [\"elevator_id\"]\nwindow = { sliding = \"60s\" }\ncondition = \"value >= 3\"\n";
        let r = load_str("d.toml", rule).unwrap().remove(0);
        assert_eq!(r.prev_fields, ["door", "floor"]);
        let e = one_error(&rule.replace("event.floor == prev.floor", "ref.elevator.floors > 2"));
        assert!(e.message.contains("cannot read ref"), "{}", e.message);
        let plain = load_str(
            "p.toml",
            &rule
                .replace("prev.door", "event.door")
                .replace("prev.floor", "1"),
        )
        .unwrap();
        assert!(
            plain[0].prev_fields.is_empty(),
            "no prev: judged where the event arrives"
        );
    }

    #[test]
    fn hours_belong_to_absence_rules_and_must_parse() {
        let absence = "[[rule]]\nid = \"s\"\nseverity = \"minor\"\nstream = \"market_sale\"\nabsent_for = \"2h\"\nhours = \"06:00-20:00\"\n";
        let r = load_str("s.toml", absence).unwrap().remove(0);
        assert!(matches!(
            r.kind,
            Kind::Absence {
                hours: Some((21_600_000, 72_000_000)),
                ..
            }
        ));
        let e = one_error(&absence.replace("06:00-20:00", "20:00-06:00"));
        assert!(e.message.contains("HH:MM-HH:MM"), "{}", e.message);
        let e = one_error(&absence.replace("absent_for = \"2h\"\n", ""));
        assert!(e.message.contains("absence rules"), "{}", e.message);
        let e = one_error(&format!("{absence}seen_on = [\"market_sales\"]\n"));
        assert!(
            e.message.contains("unknown stream \"market_sales\""),
            "{}",
            e.message
        );
        let seen = load_str(
            "s.toml",
            &format!("{absence}seen_on = [\"market_check\"]\n"),
        )
        .unwrap();
        assert!(
            matches!(&seen[0].kind, Kind::Absence { seen_on, .. } if seen_on == &[model::Stream::MarketCheck])
        );
    }

    #[test]
    fn deadlines_are_checked_against_both_streams() {
        let rule = |deadline: &str, group: &str| {
            format!(
                "[[rule]]\nid = \"d\"\nseverity = \"major\"\nstream = \"complaint_new\"\n\
                 group_by = [{group}]\ndeadline = {deadline}\n"
            )
        };
        let good = rule(
            r#"{ working_days = 7, done_stream = "complaint_status", done = 'event.status == "accepted"' }"#,
            r#""complaint_id""#,
        );
        let d = load_str("d.toml", &good).unwrap().remove(0);
        assert!(matches!(
            d.kind,
            Kind::Deadline {
                working_days: 7,
                done_stream: model::Stream::ComplaintStatus,
                ..
            }
        ));
        assert_eq!(d.keep_firing_for_ms, 0, "it resolves as soon as it is done");
        let cases = [
            (
                good.replace("event.status", "event.state"),
                "unknown field \"state\"",
            ),
            (
                good.replace("working_days = 7", "working_days = 0"),
                "at least 1",
            ),
            (
                good.replace("complaint_status", "complaint_state"),
                "unknown done_stream",
            ),
            (
                good.replace(r#""complaint_id""#, ""),
                "name what identifies it",
            ),
            // merchant_id is on new complaints only: the done stream could never match it.
            (
                good.replace(r#""complaint_id""#, r#""merchant_id""#),
                "unknown field \"merchant_id\" for done_stream complaint_status",
            ),
        ];
        for (text, expected) in cases {
            let e = one_error(&text);
            assert!(e.message.contains(expected), "{expected}: {}", e.message);
        }
    }
}
