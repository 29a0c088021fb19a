//! One event judged by the expressions of its stream's rules.
//!
//! A compiled expression ([`rules::compiled`]) reads the event's struct and the device's
//! `ref` values directly. An expression that did not compile, and one that failed (to count
//! the failure with the interpreter's own message), goes through cel-interpreter on the
//! event's CEL value, which is built only then, once per event.

use super::ref_values::{DeviceRef, RefValues};
use cel_interpreter::Value;
use model::Envelope;
use rules::compiled::event_fields::event_field;
use rules::compiled::{EventVars, Memo, Program, Val};
use rules::expr::{Bound, Evaluator, Expr, event_value};
use rules::spec::{Kind, Rule};
use std::cell::OnceCell;

/// A rule's expressions, compiled once per rule-set version.
#[derive(Default)]
pub(crate) struct Programs {
    pub filter: Option<Program>,
    /// The state rule's `clear`, or the deadline's `done`.
    pub clear: Option<Program>,
    pub value: Option<Program>,
    /// An event or window rule's `ended_by`.
    pub ended_by: Option<Program>,
    pub registry_filter: Option<Program>,
    /// A window rule's condition and clear condition.
    pub window: Option<Program>,
    pub window_clear: Option<Program>,
}

impl Programs {
    /// Compiles `rule`'s expressions.
    pub fn of(rule: &Rule) -> Programs {
        let compile = |e: Option<&Expr>| e.map(|e| Program::compile(&e.source));
        let (clear, registry_filter) = match &rule.kind {
            Kind::State { clear } => (clear.as_ref(), None),
            Kind::Deadline { done, .. } => (Some(done), None),
            Kind::Absence {
                registry_filter, ..
            } => (None, registry_filter.as_ref()),
            _ => (None, None),
        };
        let (window, window_clear) = match &rule.kind {
            Kind::Window {
                condition, clear, ..
            } => (Some(condition), clear.as_ref()),
            _ => (None, None),
        };
        Programs {
            filter: compile(rule.filter.as_ref()),
            clear: compile(clear),
            value: compile(rule.value.as_ref()),
            ended_by: compile(rule.ended_by.as_ref()),
            registry_filter: compile(registry_filter),
            window: compile(window),
            window_clear: compile(window_clear),
        }
    }

    /// The compiled expressions judged over an event (not the window conditions), to share
    /// their conditions across the rule set.
    pub fn event_nodes_mut(&mut self) -> impl Iterator<Item = &mut rules::compiled::Node> {
        [
            &mut self.filter,
            &mut self.clear,
            &mut self.value,
            &mut self.ended_by,
            &mut self.registry_filter,
        ]
        .into_iter()
        .filter_map(|p| p.as_mut().and_then(Program::node_mut))
    }

    /// The rule's expressions that the interpreter evaluates (for the count of them).
    pub fn interpreted(&self) -> usize {
        [
            &self.filter,
            &self.clear,
            &self.value,
            &self.ended_by,
            &self.registry_filter,
            &self.window,
            &self.window_clear,
        ]
        .into_iter()
        .filter(|p| matches!(p, Some(Program::Interpreted(_))))
        .count()
    }
}

/// What judging keeps from one event to the next on a worker: the interpreter, and the
/// room for the shared conditions (made once, cleared per event).
#[derive(Default)]
pub(crate) struct Scratch {
    pub evaluator: Evaluator,
    memo: Memo,
}

impl Scratch {
    /// The room for `shared` conditions, none known yet (for the next event).
    pub fn clear(&mut self, shared: u32) -> &Scratch {
        self.memo.clear(shared);
        self
    }
}

/// The event being judged, with what the interpreter needs built on first use.
pub(crate) struct Judge<'a> {
    env: &'a Envelope,
    refs: &'a RefValues,
    evaluator: &'a Evaluator,
    with_ref: bool,
    /// The rule set's shared conditions, as this event makes them.
    memo: &'a Memo,
    event: OnceCell<Value>,
    bound: OnceCell<Bound<'a>>,
    device: OnceCell<DeviceRef<'a>>,
}

impl<'a> Judge<'a> {
    /// `with_ref`: whether a rule of the stream reads `ref` (the interpreter binds it then);
    /// `scratch` cleared for the rule set.
    pub fn new(
        env: &'a Envelope,
        refs: &'a RefValues,
        scratch: &'a Scratch,
        with_ref: bool,
    ) -> Judge<'a> {
        Judge {
            env,
            refs,
            evaluator: &scratch.evaluator,
            with_ref,
            memo: &scratch.memo,
            event: OnceCell::new(),
            bound: OnceCell::new(),
            device: OnceCell::new(),
        }
    }

    /// The event's CEL value.
    pub fn event(&self) -> &Value {
        self.event.get_or_init(|| event_value(self.env))
    }

    fn bound(&self) -> &Bound<'a> {
        self.bound.get_or_init(|| {
            let mut vars = vec![("event", self.event().clone())];
            if self.with_ref {
                vars.push(("ref", self.refs.for_event(&self.env.event)));
            }
            self.evaluator.bind(vars)
        })
    }

    /// Runs `f` over the compiled variables of the event.
    fn compiled<T>(&self, f: impl FnOnce(&EventVars<'_>) -> T) -> T {
        // The device's rows are found on the first `ref` read of the event, once.
        let reference = |names: &[String]| {
            self.device
                .get_or_init(|| self.refs.device(&self.env.event))
                .lookup(names)
        };
        f(&EventVars {
            env: self.env,
            prev: None,
            reference: &reference,
            memo: Some(self.memo),
        })
    }

    /// Whether `expr` holds; a failure is reported to `failed` and counts as not holding.
    pub fn check(
        &self,
        expr: &Expr,
        program: Option<&Program>,
        failed: impl FnOnce(String),
    ) -> bool {
        if let Some(Program::Compiled(node)) = program
            && let Ok(b) = self.compiled(|vars| node.eval_bool(vars))
        {
            return b;
        }
        self.bound().bool(expr).unwrap_or_else(|e| {
            failed(e.to_string());
            false
        })
    }

    /// The number `expr` gives, or why not.
    pub fn number(&self, expr: &Expr, program: Option<&Program>) -> Result<f64, String> {
        if let Some(Program::Compiled(node)) = program
            && let Some(n) = self.compiled(|vars| node.eval(vars).ok().and_then(|v| v.number()))
        {
            return Ok(n);
        }
        self.bound().number(expr).map_err(|e| e.to_string())
    }

    /// A field of the event, as `event.<name>` reads it.
    pub fn field(&self, name: &str) -> Option<Val<'a>> {
        event_field(self.env, name)
    }
}

/// A value as group keys and window texts spell it (as the interpreter's value would be).
pub(crate) fn text(v: &Val<'_>) -> String {
    match v {
        Val::Str(s) => s.to_string(),
        Val::Int(i) => i.to_string(),
        Val::UInt(u) => u.to_string(),
        Val::Double(f) => f.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Null => "Null".into(),
    }
}

/// The variables of a filter that reads `prev`, judged where the group's events meet: the
/// fields the rule carries (`prev_fields`, by position) of this event and of the previous one,
/// as the interpreter sees them (numbers as doubles).
pub(crate) struct CarriedVars<'a> {
    pub names: &'a [String],
    pub event: &'a [Option<rules::machine::Scalar>],
    pub prev: &'a [Option<rules::machine::Scalar>],
}

impl<'a> rules::compiled::Vars<'a> for CarriedVars<'a> {
    fn get(&self, path: &rules::compiled::Path) -> rules::compiled::Lookup<'a> {
        use rules::compiled::{Lookup, Root};
        use rules::machine::Scalar;
        let fields = match path.root {
            Root::Event => self.event,
            Root::Prev => self.prev,
            Root::Ref => return Lookup::Absent,
        };
        let [name] = path.names.as_slice() else {
            return Lookup::Absent;
        };
        let at = self.names.iter().position(|n| n == name);
        match at.and_then(|i| fields.get(i)).and_then(Option::as_ref) {
            Some(Scalar::Text(t)) => Lookup::Val(Val::Str(t.as_str().into())),
            Some(Scalar::Num(n)) => Lookup::Val(Val::Double(*n)),
            Some(Scalar::Bool(b)) => Lookup::Val(Val::Bool(*b)),
            None => Lookup::Absent,
        }
    }

    fn bound(&self, root: rules::compiled::Root) -> bool {
        root != rules::compiled::Root::Ref
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::machine::Scalar;

    /// A `prev` filter compiled gives what the interpreter gives over the same carried fields.
    #[test]
    fn carried_fields_judge_as_the_interpreter_does() {
        let names = vec!["door".to_owned(), "floor".to_owned()];
        let door = |d: &str| Some(Scalar::Text(d.into()));
        let cases: Vec<[Vec<Option<Scalar>>; 2]> = vec![
            [
                vec![door("opening"), Some(Scalar::Num(3.0))],
                vec![door("closing"), Some(Scalar::Num(3.0))],
            ],
            [
                vec![door("opening"), Some(Scalar::Num(3.0))],
                vec![door("closing"), Some(Scalar::Num(4.0))],
            ],
            [
                vec![door("opening"), None],
                vec![door("closing"), Some(Scalar::Num(3.0))],
            ],
            [
                vec![door("closed"), Some(Scalar::Num(1.0))],
                vec![None, None],
            ],
        ];
        let sources = [
            r#"prev.door == "closing" && event.door == "opening" && event.floor == prev.floor"#,
            "has(prev.floor) && prev.floor > 2",
            "event.floor + 1 == 4",
            "has(ref.elevator)",
        ];
        let evaluator = Evaluator::default();
        for source in sources {
            let expr = Expr::compile(source).expect("compiles");
            let Program::Compiled(node) = Program::compile(source) else {
                panic!("{source} is interpreted")
            };
            for [event, prev] in &cases {
                let map = |f: &[Option<Scalar>]| super::super::conditions::scalars_value(&names, f);
                let want = evaluator
                    .bool(&expr, vec![("event", map(event)), ("prev", map(prev))])
                    .ok();
                let vars = CarriedVars {
                    names: &names,
                    event,
                    prev,
                };
                assert_eq!(
                    node.eval_bool(&vars).ok(),
                    want,
                    "{source} over {event:?} {prev:?}"
                );
            }
        }
    }
}
