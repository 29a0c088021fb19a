//! What a rule's expressions come to for one event, each sub-expression with its value
//! (docs/explain.md, step 1): `citywatch rules explain` prints it for a rule author or an
//! operator asking why a rule did, or did not, hold for an event.
//!
//! The expressions are evaluated as the dataflow evaluates them (the compiled tree, `event`
//! read from the model's struct, `ref` from the reference rows of the event's device, `prev`
//! from the event given as the group's previous one), so the values shown are the values the
//! rule saw.

pub use crate::operators::ref_values::RefValues;
use model::Envelope;
use rules::compiled::event_fields::{FieldId, event_field, field};
use rules::compiled::{EventVars, Lookup, Lookups, Program, Traced};
use rules::spec::{Kind, Rule};

/// A rule explained for one event: each of its expressions, and the reference rows `ref`
/// reads for the event's device (its registry row, the guidance price), as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub expressions: Vec<Explained>,
    pub reference: serde_json::Value,
}

/// One expression of a rule, explained for one event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explained {
    /// What the expression is for: `filter`, `clear_condition`, `done`, `ended_by`, `value`.
    pub role: &'static str,
    pub source: String,
    /// Its sub-expressions and their values (none when it does not compile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traced: Option<Traced>,
    /// Why it does not compile: it is then judged by cel-interpreter, which keeps no parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreted: Option<String>,
}

/// Why a rule's expressions were not explained for an event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExplainError {
    #[error("rule {rule} reads {wants} events; this one is {got}")]
    OtherStream {
        rule: String,
        wants: &'static str,
        got: &'static str,
    },
}

/// The expressions of `rule` that judge an event, explained for `env`, with `prev` as the
/// group's previous event (for rules that read `prev`). `rows` indexes the reference data
/// (`RefValues::new`), once for every event explained under it.
pub fn explain(
    rule: &Rule,
    rows: &RefValues,
    env: &Envelope,
    prev: Option<&Envelope>,
) -> Result<Explanation, ExplainError> {
    if env.event.stream() != rule.stream {
        return Err(ExplainError::OtherStream {
            rule: rule.id.clone(),
            wants: rule.stream.as_str(),
            got: env.event.stream().as_str(),
        });
    }
    let device = rows.device(&env.event);
    let ref_lookup = |names: &[String]| device.lookup(names);
    let prev_lookup = |names: &[String]| match (prev, names) {
        (Some(p), [name]) => field(p, FieldId::of(name)).map_or(Lookup::Absent, Lookup::Val),
        _ => Lookup::Absent,
    };
    let vars = EventVars {
        env,
        prev: prev.map(|_| &prev_lookup as Lookups<'_>),
        reference: &ref_lookup,
        memo: None,
    };
    let expressions = expressions(rule)
        .into_iter()
        .map(|(role, source)| {
            let (traced, interpreted) = match Program::compile(source) {
                Program::Compiled(node) => (Some(node.trace(&vars).1), None),
                Program::Interpreted(why) => (None, Some(why)),
            };
            Explained {
                role,
                source: source.to_owned(),
                traced,
                interpreted,
            }
        })
        .collect();
    Ok(Explanation {
        expressions,
        reference: device.rows(),
    })
}

/// The group of `env` for `rule`, as its conditions name it.
pub fn group_of(rule: &Rule, env: &Envelope) -> String {
    let mut key = String::new();
    crate::operators::conditions::group_key(rule, |g| event_field(env, g), &mut key);
    key
}

/// Whether the rule's filter holds for the event (a rule without one: every event of its
/// stream), as the dataflow judges it.
pub fn holds(explained: &Explanation) -> bool {
    explained
        .expressions
        .iter()
        .find(|e| e.role == "filter")
        .is_none_or(|f| {
            f.traced
                .as_ref()
                .is_some_and(|t| t.outcome == rules::compiled::Outcome::Value("true".into()))
        })
}

/// The expressions of a rule that read the event, by what they are for.
fn expressions(rule: &Rule) -> Vec<(&'static str, &str)> {
    let clear = match &rule.kind {
        Kind::State { clear } | Kind::Window { clear, .. } => clear.as_ref(),
        _ => None,
    };
    let done = match &rule.kind {
        Kind::Deadline { done, .. } => Some(done),
        _ => None,
    };
    [
        ("filter", rule.filter.as_ref()),
        ("clear_condition", clear),
        ("done", done),
        ("ended_by", rule.ended_by.as_ref()),
        ("value", rule.value.as_ref()),
    ]
    .into_iter()
    .filter_map(|(role, e)| Some((role, e?.source.as_str())))
    .collect()
}
