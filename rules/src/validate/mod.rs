//! Checking one rule's source and making it a [`Rule`]: every problem reported with its key
//! (and column, where an expression says), none of them fatal to the others, so that a file's
//! author sees them all at once. By concern: this module the rule as a whole and its
//! expressions; [`kinds`] what makes it an event, state, window, absence or deadline rule.

mod kinds;

use crate::expr::{EvalError, Evaluator, Expr, sample_event, sample_ref};
use crate::spec::*;
use cel_interpreter::Value;
use model::Stream;

/// What reports a problem: the key it is about, a column (1 when none), the message.
pub(crate) type FailFn<'f> = &'f mut dyn FnMut(&str, usize, String);

/// The checks of one rule's source, counting what they reported.
pub(crate) struct Check<'a, 'f> {
    src: &'a RuleSource,
    ev: &'a Evaluator,
    report: FailFn<'f>,
    failures: usize,
}

/// The variables of an event's expressions over `sample`.
fn event_vars(sample: &Value) -> Vec<(&'static str, Value)> {
    vec![
        ("event", sample.clone()),
        ("prev", sample.clone()),
        ("ref", sample_ref()),
    ]
}

/// Checks `src`; the rule when it has no problem (each one goes to `report`).
pub(crate) fn validate(src: &RuleSource, ev: &Evaluator, report: FailFn<'_>) -> Option<Rule> {
    let mut c = Check {
        src,
        ev,
        report,
        failures: 0,
    };
    c.id();
    let stream = c.stream()?;
    let sample = sample_event(stream);
    let for_ms = c.duration("for", src.for_.as_deref());
    let mut keep_ms = c.duration("keep_firing_for", src.keep_firing_for.as_deref());
    let filter = src
        .filter
        .as_deref()
        .and_then(|f| c.expr("filter", f, event_vars(&sample), false));
    c.group_by(&sample, &format!("stream {}", src.stream));
    let mode = c.placement();
    let (registry_filter, seen_on) = c.absence_parts();
    let kind = if let Some(d) = &src.deadline {
        c.deadline(d, stream, mode)
    } else if let Some(after) = &src.absent_for {
        c.absence(after, stream, registry_filter, seen_on)
    } else if let Some(w) = &src.window {
        c.window(w, &sample)
    } else {
        c.plain(mode, for_ms, &mut keep_ms, &sample)
    };
    let prev_fields = c.prev_fields(filter.as_ref());
    let value = c.value(&kind, &sample);
    let ended_by = c.ended_by(&kind, &prev_fields, &sample);
    c.only_the_filter_reads_prev();
    if c.failures > 0 {
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

impl Check<'_, '_> {
    fn fail(&mut self, key: &str, column: usize, message: String) {
        self.failures += 1;
        (self.report)(key, column, message);
    }

    fn id(&mut self) {
        let id = &self.src.id;
        if id.is_empty() || !model::id::is_valid_id(id) {
            let message = format!("rule id {id:?} must be 1-64 characters of [A-Za-z0-9_.-]");
            self.fail("id", 1, message);
        }
    }

    fn stream(&mut self) -> Option<Stream> {
        let name = &self.src.stream;
        let found = Stream::ALL.into_iter().find(|s| s.as_str() == name);
        if found.is_none() {
            let names: Vec<&str> = Stream::ALL.iter().map(|s| s.as_str()).collect();
            let message = format!(
                "unknown stream {name:?}; expected one of {}",
                names.join(", ")
            );
            self.fail("stream", 1, message);
        }
        found
    }

    /// A duration setting in ms (0 when absent or bad).
    fn duration(&mut self, key: &str, v: Option<&str>) -> u64 {
        let Some(s) = v else {
            return 0;
        };
        parse_duration(s).unwrap_or_else(|| {
            self.fail(key, 1, bad_duration(s));
            0
        })
    }

    /// Every `group_by` field exists in `sample` (events of `what`).
    fn group_by(&mut self, sample: &Value, what: &str) {
        for g in &self.src.group_by {
            if crate::expr::field(sample, g).is_none() {
                self.fail("group_by", 1, format!("unknown field {g:?} for {what}"));
            }
        }
    }

    /// Keys that apply to one kind of rule only, given to another; the mode.
    fn placement(&mut self) -> &'static str {
        let src = self.src;
        if src.prior_windows.is_some() && src.window.as_ref().is_none_or(|w| w.tumbling.is_none()) {
            self.fail(
                "prior_windows",
                1,
                "prior_windows needs a tumbling window".into(),
            );
        }
        if src.prior_windows.unwrap_or(0) > 366 {
            self.fail("prior_windows", 1, "at most 366 windows".into());
        }
        let mode = match src.mode.as_deref().unwrap_or("event") {
            "event" => "event",
            "state" => "state",
            other => {
                let message = format!("unknown mode {other:?}; expected event or state");
                self.fail("mode", 1, message);
                "other"
            }
        };
        if src.hours.is_some() && src.absent_for.is_none() {
            let message = "hours applies to absence rules (absent_for)".into();
            self.fail("hours", 1, message);
        }
        if src.registry_filter.is_some() && src.absent_for.is_none() {
            let message = "registry_filter applies to absence rules (absent_for)".into();
            self.fail("registry_filter", 1, message);
        }
        mode
    }

    /// `expr` as a compiled expression over `vars`, a number when `number` (a rule's `value`),
    /// else a boolean; every name it reads must exist, even on branches the sample does not
    /// reach.
    fn expr(
        &mut self,
        key: &str,
        text: &str,
        vars: Vec<(&'static str, Value)>,
        number: bool,
    ) -> Option<Expr> {
        let expr = match Expr::compile(text) {
            Err(e) => {
                self.fail(key, e.column, format!("syntax error: {}", e.message));
                return None;
            }
            Ok(expr) => expr,
        };
        if !self.names_exist(key, text, &vars) {
            return None;
        }
        let judged = if number {
            self.ev.value(&expr, vars).and_then(|v| {
                crate::expr::number(&v)
                    .map(drop)
                    .ok_or_else(|| EvalError::Type("expected a number".into()))
            })
        } else {
            self.ev.bool(&expr, vars).map(drop)
        };
        match judged {
            Ok(()) => Some(expr),
            Err(EvalError::UnknownField(f)) => {
                let column = text.find(&f).map_or(1, |i| i + 1);
                let message = format!("unknown field {f:?} for stream {}", self.src.stream);
                self.fail(key, column, message);
                None
            }
            Err(e) => {
                self.fail(key, 1, e.to_string());
                None
            }
        }
    }

    /// Whether every name `text` reads is among `vars`, field by field.
    fn names_exist(&mut self, key: &str, text: &str, vars: &[(&'static str, Value)]) -> bool {
        for path in crate::expr::name_paths(text) {
            let Some((_, root)) = vars.iter().find(|(n, _)| *n == path[0]) else {
                let names: Vec<&str> = vars.iter().map(|(n, _)| *n).collect();
                let column = text.find(&path[0]).map_or(1, |i| i + 1);
                let message = format!(
                    "unknown name {:?}; expected one of {}",
                    path[0],
                    names.join(", ")
                );
                self.fail(key, column, message);
                return false;
            };
            let mut v = root;
            for f in &path[1..] {
                let Some(next) = crate::expr::field(v, f) else {
                    let column = text.find(&format!(".{f}")).map_or(1, |i| i + 2);
                    let message = format!("unknown field {f:?} in {}", path.join("."));
                    self.fail(key, column, message);
                    return false;
                };
                v = next;
            }
        }
        true
    }

    /// `prev` is known where a group's events meet, in event-time order: only the filter may
    /// read it, and there the reference data (`ref`) is not at hand. The fields it reads.
    fn prev_fields(&mut self, filter: Option<&Expr>) -> Vec<String> {
        let mut fields = Vec::new();
        let Some(f) = filter.filter(|f| f.uses_prev) else {
            return fields;
        };
        if f.uses_ref {
            let message = "a filter that reads prev cannot read ref".into();
            self.fail("filter", 1, message);
        }
        for path in crate::expr::name_paths(&f.source) {
            if (path[0] == "event" || path[0] == "prev")
                && let Some(field) = path.get(1)
                && !fields.contains(field)
            {
                fields.push(field.clone());
            }
        }
        fields
    }

    /// The number a condition of an event or state rule carries (a window's is its
    /// aggregate, an absence's its minutes, a deadline's its working days).
    fn value(&mut self, kind: &Kind, sample: &Value) -> Option<Expr> {
        let v = self.src.value.as_deref()?;
        match kind {
            Kind::Event | Kind::State { .. } => self.expr("value", v, event_vars(sample), true),
            _ => {
                let message =
                    "value applies to event and state rules; a window's value is its aggregate";
                self.fail("value", 1, message.into());
                None
            }
        }
    }

    fn ended_by(&mut self, kind: &Kind, prev_fields: &[String], sample: &Value) -> Option<Expr> {
        let e = self.src.ended_by.as_deref()?;
        let message = match kind {
            Kind::Event | Kind::Window { .. } if prev_fields.is_empty() => {
                return self.expr("ended_by", e, event_vars(sample), false);
            }
            Kind::Event | Kind::Window { .. } => {
                "a rule whose filter reads prev cannot have ended_by"
            }
            _ => "ended_by applies to event and window rules (a state rule has clear_condition)",
        };
        self.fail("ended_by", 1, message.into());
        None
    }

    fn only_the_filter_reads_prev(&mut self) {
        let src = self.src;
        for (key, text) in [
            ("clear_condition", src.clear_condition.as_deref()),
            ("ended_by", src.ended_by.as_deref()),
            ("registry_filter", src.registry_filter.as_deref()),
            ("value", src.value.as_deref()),
        ] {
            if text.is_some_and(|t| crate::expr::name_paths(t).iter().any(|p| p[0] == "prev")) {
                self.fail(key, 1, "only the filter may read prev".into());
            }
        }
    }
}

/// The message for a duration that does not parse.
fn bad_duration(s: &str) -> String {
    format!(
        "bad duration {s:?}: use a number and a unit (ms, s, m, h, d), e.g. \"90s\" or \"1h30m\""
    )
}
