//! What makes a rule an event, state, window, absence or deadline rule, and the keys each
//! kind takes.

use super::{Check, bad_duration, event_vars};
use crate::expr::{Expr, sample_event, sample_ref};
use crate::load::DEFAULT_EVENT_HOLD_MS;
use crate::spec::*;
use cel_interpreter::Value;
use model::Stream;

impl Check<'_, '_> {
    /// An absence rule's registry filter and the other streams that count as heard (checked
    /// whatever the kind: they apply to absence rules only).
    pub(super) fn absence_parts(&mut self) -> (Option<Expr>, Vec<Stream>) {
        let src = self.src;
        let vars = || vec![("ref", sample_ref())];
        let registry_filter = src
            .registry_filter
            .as_deref()
            .and_then(|f| self.expr("registry_filter", f, vars(), false));
        if !src.seen_on.is_empty() && src.absent_for.is_none() {
            let message = "seen_on applies to absence rules (absent_for)".into();
            self.fail("seen_on", 1, message);
        }
        let seen_on = src
            .seen_on
            .iter()
            .filter_map(|name| {
                let found = Stream::ALL.into_iter().find(|s| s.as_str() == name);
                if found.is_none() {
                    self.fail("seen_on", 1, format!("unknown stream {name:?}"));
                }
                found
            })
            .collect();
        (registry_filter, seen_on)
    }

    /// A deadline: its clock starts with a matching event and stops at `done` (on
    /// `done_stream`, by default the rule's own).
    pub(super) fn deadline(&mut self, d: &DeadlineSource, stream: Stream, mode: &str) -> Kind {
        let src = self.src;
        if src.absent_for.is_some() || src.window.is_some() || src.aggregate.is_some() {
            let message = "deadline cannot be combined with absent_for, window or aggregate";
            self.fail("deadline", 1, message.into());
        }
        if mode != "event" || src.clear_condition.is_some() {
            let message = "a deadline stops with its done condition: no mode or clear_condition";
            self.fail("deadline", 1, message.into());
        }
        if d.working_days == 0 {
            self.fail("deadline", 1, "working_days must be at least 1".into());
        }
        if src.group_by.is_empty() {
            let message = "a deadline runs per group: name what identifies it (e.g. complaint_id)";
            self.fail("group_by", 1, message.into());
        }
        let done_stream = match d.done_stream.as_deref() {
            None => Some(stream),
            Some(name) => {
                let found = Stream::ALL.into_iter().find(|s| s.as_str() == name);
                if found.is_none() {
                    self.fail("deadline", 1, format!("unknown done_stream {name:?}"));
                }
                found
            }
        };
        let done = done_stream.and_then(|ds| {
            let sample = sample_event(ds);
            self.group_by(&sample, &format!("done_stream {}", ds.as_str()));
            self.expr("deadline.done", &d.done, event_vars(&sample), false)
        });
        match (done_stream, done) {
            (Some(done_stream), Some(done)) => Kind::Deadline {
                working_days: d.working_days,
                done_stream,
                done,
            },
            _ => Kind::Event,
        }
    }

    /// An absence rule: a registered device silent for `after`.
    pub(super) fn absence(
        &mut self,
        after: &str,
        stream: Stream,
        registry_filter: Option<Expr>,
        seen_on: Vec<Stream>,
    ) -> Kind {
        let src = self.src;
        let after_ms = self.duration("absent_for", Some(after));
        if src.window.is_some() || src.aggregate.is_some() {
            let message = "absent_for cannot be combined with window or aggregate";
            self.fail("absent_for", 1, message.into());
        }
        let registry = match src.registry.as_deref() {
            None => default_registry(stream),
            Some("elevators") => Some(Registry::Elevators),
            Some("cameras") => Some(Registry::Cameras),
            Some("scales") => Some(Registry::Scales),
            Some(other) => {
                let message =
                    format!("unknown registry {other:?}; expected elevators, cameras or scales");
                self.fail("registry", 1, message);
                None
            }
        };
        let Some(registry) = registry else {
            let message = format!(
                "stream {} has no registry: name one with registry",
                src.stream
            );
            self.fail("absent_for", 1, message);
            return Kind::Event;
        };
        let hours = src.hours.as_deref().and_then(|h| {
            let parsed = crate::spec::parse_hours(h);
            if parsed.is_none() {
                let message = format!(
                    "hours {h:?}: expected HH:MM-HH:MM within one day, e.g. \"06:00-20:00\""
                );
                self.fail("hours", 1, message);
            }
            parsed
        });
        Kind::Absence {
            after_ms,
            registry,
            seen_on,
            registry_filter,
            hours,
        }
    }

    /// A window rule: an aggregate over a sliding or tumbling window, and a condition over it.
    pub(super) fn window(&mut self, w: &WindowSource, sample: &Value) -> Kind {
        let src = self.src;
        let window = self.window_size(w);
        let aggregate = self.aggregate(sample);
        let prior = src.prior_windows.unwrap_or(0);
        let vars = || {
            let list = |v: Value| Value::List(std::sync::Arc::new(vec![v; prior.max(1) as usize]));
            vec![
                ("value", Value::Float(1.0)),
                ("count", Value::Int(1)),
                ("prior", list(Value::Float(1.0))),
                ("prior_count", list(Value::Int(1))),
            ]
        };
        let condition = match &src.condition {
            None => {
                let message = "a window rule needs a condition over value (e.g. \"value >= 3\")";
                self.fail("window", 1, message.into());
                None
            }
            Some(c) => self.expr("condition", c, vars(), false),
        };
        let clear = src
            .clear_condition
            .as_deref()
            .and_then(|c| self.expr("clear_condition", c, vars(), false));
        match condition {
            Some(condition) => Kind::Window {
                window,
                aggregate,
                condition,
                clear,
                prior,
            },
            None => Kind::Event,
        }
    }

    fn window_size(&mut self, w: &WindowSource) -> Window {
        let ((Some(s), None) | (None, Some(s))) = (&w.sliding, &w.tumbling) else {
            let message = "window needs exactly one of sliding or tumbling";
            self.fail("window", 1, message.into());
            return Window::Sliding(1);
        };
        match parse_duration(s) {
            None => {
                self.fail("window", 1, bad_duration(s));
                Window::Sliding(1)
            }
            Some(0) => {
                self.fail("window", 1, "window size must be greater than 0".into());
                Window::Sliding(1)
            }
            Some(ms) if w.sliding.is_some() => Window::Sliding(ms),
            Some(ms) => Window::Tumbling(ms),
        }
    }

    fn aggregate(&mut self, sample: &Value) -> Aggregate {
        let text = self.src.aggregate.as_deref().unwrap_or("count");
        let aggregate = parse_aggregate(text).unwrap_or_else(|| {
            let message = format!("unknown aggregate {:?}; expected count, rate, sum(f), avg(f), min(f), max(f), distinct(f) or last(f)", self.src.aggregate.as_deref().unwrap_or(""));
            self.fail("aggregate", 1, message);
            Aggregate::Count
        });
        if let Some(f) = aggregate.field() {
            match crate::expr::field(sample, f) {
                None => {
                    let message = format!("unknown field {f:?} for stream {}", self.src.stream);
                    self.fail("aggregate", 1, message);
                }
                Some(v)
                    if crate::expr::number(v).is_none()
                        && !matches!(aggregate, Aggregate::Distinct(_) | Aggregate::Last(_)) =>
                {
                    self.fail("aggregate", 1, format!("field {f:?} is not a number"))
                }
                Some(_) => {}
            }
        }
        aggregate
    }

    /// An event rule (held `keep_firing_for` after its last matching event) or a state rule
    /// (firing while its filter holds, after `for`).
    pub(super) fn plain(
        &mut self,
        mode: &str,
        for_ms: u64,
        keep_ms: &mut u64,
        sample: &Value,
    ) -> Kind {
        let src = self.src;
        if src.condition.is_some() || src.aggregate.is_some() {
            self.fail(
                "condition",
                1,
                "condition and aggregate need a window".into(),
            );
        }
        if mode == "state" {
            let clear = src
                .clear_condition
                .as_deref()
                .and_then(|c| self.expr("clear_condition", c, event_vars(sample), false));
            return Kind::State { clear };
        }
        if src.clear_condition.is_some() {
            self.fail("clear_condition", 1, "event rules clear after keep_firing_for; clear_condition needs mode = \"state\" or a window".into());
        }
        if for_ms > 0 {
            let message = "event rules cannot wait (for): use mode = \"state\" or a window";
            self.fail("for", 1, message.into());
        }
        if src.keep_firing_for.is_none() {
            *keep_ms = DEFAULT_EVENT_HOLD_MS;
        } else if *keep_ms == 0 {
            let message =
                "event rules need keep_firing_for > 0: how long one event keeps the condition";
            self.fail("keep_firing_for", 1, message.into());
        }
        Kind::Event
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
