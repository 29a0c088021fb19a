//! Rule evaluation in two steps.
//!
//! 1. [`observe`] (no exchange): each event is matched against the rules of its stream on the
//!    worker that received it; the CEL filters run in parallel. Each (rule, event) becomes an
//!    observation: the rule, the group key, whether the filter (and clear condition) matched,
//!    and what the event adds to a window.
//! 2. [`Conditions`] (exchange by rule and group): observations are handled in event-time
//!    order once the frontier has passed them, interleaved with the machines' timers, by one
//!    [`rules::machine::Machine`] per (rule, group); what leaves is a differential collection
//!    of active conditions. State: one machine per active group (dropped when idle), the stash
//!    of observations ahead of the frontier, and one timer entry per machine.

use crate::checkpoint::Part;
use crate::conditions::Condition;
use crate::operators::Held;
use crate::operators::group::{self, Group, ReorderLimits};
use crate::operators::judge::{CarriedVars, Judge, Programs, Scratch, text};
pub use crate::operators::ref_values::RefValues;
use crate::reference::Reference;
use crate::stats::Stats;
use cel_interpreter::Value;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use model::seen::Seen;
use model::{Envelope, Event, Stream};
use rules::expr::{Evaluator, map};
use rules::machine::{Item, Machine, Scalar, Transition};
use rules::spec::{Kind, Registry, Rule};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

mod batch;
mod cause;
mod machines;
pub use batch::{Batch, Plain};
use machines::{Machines, SavedMachines, changes_nothing_new};

/// What the conditions operator gives: a change of a condition (a differential update), or
/// what made a condition start firing (handed with the conditions to worker 0).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Judged {
    Change(Condition, isize),
    Cause(Box<crate::conditions::Cause>),
    /// An alert and a complaint an incident rule joins (made after the operator, on their
    /// way to the same sink).
    Joined(Box<crate::conditions::Joined>),
}

/// The conditions operator's two outputs.
pub struct Judgements<'scope> {
    /// The active conditions.
    pub conditions: VecCollection<'scope, u64, Condition, isize>,
    /// What made each start fire, at its time.
    pub causes: StreamVec<'scope, u64, (crate::conditions::Cause, u64)>,
}

/// What one event means for one rule's group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The rule's key ([`rules::rule_key`] of its id).
    pub rule: u64,
    pub group: String,
    pub time: u64,
    pub what: What,
}

/// The kinds of observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum What {
    /// An event of the group.
    Event {
        matched: bool,
        cleared: bool,
        item: Item,
        /// The event, for a match an explanation keeps (event, state and deadline rules).
        seen: Option<Seen>,
    },
    /// A device registered for an absence rule.
    Registered,
    /// A device taken out of an absence rule's registry: its condition stops, its state goes.
    Unregistered,
    /// An event of the group for a rule whose filter reads `prev`: the fields the filter
    /// reads (by position in the rule's `prev_fields`; absent ones are left out of the event),
    /// to be judged where the group's previous event is known.
    Deferred {
        fields: Vec<Option<Scalar>>,
        item: Item,
    },
}

/// The registry keys an absence rule watches: all of its registry's, or those its registry
/// filter admits.
pub fn watched_keys(rule: &Rule, reference: &Reference) -> Vec<String> {
    let Kind::Absence {
        registry,
        registry_filter,
        ..
    } = &rule.kind
    else {
        return Vec::new();
    };
    let keys = registry_keys(reference, *registry);
    let Some(f) = registry_filter else {
        return keys;
    };
    let (refs, evaluator) = (
        RefValues::new(Arc::new(reference.clone())),
        Evaluator::default(),
    );
    keys.into_iter()
        .filter(|k| {
            evaluator
                .bool(f, vec![("ref", refs.for_device(*registry, k))])
                .unwrap_or(false)
        })
        .collect()
}

/// The device key of an event, for absence rules, written into `key`.
fn device_key<'k>(e: &Event, key: &'k mut String) -> &'k str {
    key.clear();
    for (i, (_, id)) in rules::expr::ids(e).into_iter().enumerate() {
        if i > 0 {
            key.push('/');
        }
        key.push_str(id);
    }
    key
}

/// The device keys of a registry.
pub fn registry_keys(r: &Reference, registry: Registry) -> Vec<String> {
    match registry {
        Registry::Elevators => r
            .elevators
            .iter()
            .map(|e| e.elevator_id.to_string())
            .collect(),
        Registry::Cameras => r
            .cameras
            .iter()
            .map(|c| format!("{}/{}", c.kitchen_id, c.camera_id))
            .collect(),
        Registry::Scales => r
            .scales
            .iter()
            .map(|s| format!("{}/{}", s.market_id, s.scale_id))
            .collect(),
    }
}

/// A version of the rule set, in force for events at or after `activation` (event time).
/// Sent as sources and compiled on each worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSetVersion {
    pub activation: u64,
    /// (origin, source) of every rule.
    pub rules: Vec<(String, rules::RuleSource)>,
    /// New reference data from `activation` on (none: the previous version's).
    #[serde(default)]
    pub reference: Option<Arc<Reference>>,
}

impl RuleSetVersion {
    /// The version of `rules`, from `activation`.
    pub fn of(activation: u64, rules: &[Rule]) -> RuleSetVersion {
        RuleSetVersion {
            activation,
            rules: rules
                .iter()
                .map(|r| (r.origin.clone(), r.source.clone()))
                .collect(),
            reference: None,
        }
    }

    /// The same, with `reference` in force from `activation` too.
    pub fn with_reference(mut self, reference: Arc<Reference>) -> RuleSetVersion {
        self.reference = Some(reference);
        self
    }
}

/// A compiled rule set, indexed for evaluation.
#[derive(Default)]
pub(crate) struct RuleSet {
    rules: Vec<Rule>,
    /// Each rule's expressions, compiled (by index, as `rules`).
    programs: Vec<Programs>,
    keys: Vec<u64>,
    by_key: foldhash::HashMap<u64, usize>,
    by_stream: foldhash::HashMap<Stream, Vec<usize>>,
    /// How many conditions the expressions share (computed once per event).
    shared: u32,
}

impl RuleSet {
    fn compile(v: &RuleSetVersion) -> RuleSet {
        let mut set = RuleSet::default();
        for (origin, src) in &v.rules {
            match rules::compile(src, origin) {
                Ok(rule) => {
                    let i = set.rules.len();
                    let key = rules::rule_key(&rule.id);
                    set.keys.push(key);
                    set.by_key.insert(key, i);
                    if rule.enabled {
                        set.by_stream.entry(rule.stream).or_default().push(i);
                        // A deadline also hears the stream that stops its clock, an absence
                        // the other streams its devices can be heard on.
                        let also: Vec<Stream> = match &rule.kind {
                            Kind::Deadline { done_stream, .. } => vec![*done_stream],
                            Kind::Absence { seen_on, .. } => seen_on.clone(),
                            _ => Vec::new(),
                        };
                        for s in also.into_iter().filter(|s| *s != rule.stream) {
                            let ids = set.by_stream.entry(s).or_default();
                            if !ids.contains(&i) {
                                ids.push(i);
                            }
                        }
                    }
                    let programs = Programs::of(&rule);
                    if programs.interpreted() > 0 {
                        tracing::info!(rule = %rule.id, expressions = programs.interpreted(), "rule: judged by the interpreter (docs/rules.md, \"Compiled expressions\")");
                    }
                    set.programs.push(programs);
                    set.rules.push(rule);
                }
                // Validated before it was sent; a rule that no longer compiles is left out.
                Err(problems) => {
                    tracing::error!(rule = %src.id, ?problems, "rule does not compile")
                }
            }
        }
        set.shared =
            rules::compiled::share(set.programs.iter_mut().flat_map(Programs::event_nodes_mut));
        set
    }

    /// The rules whose expressions (how many) the interpreter judges.
    pub(crate) fn interpreted(&self) -> Vec<(String, usize)> {
        self.rules
            .iter()
            .zip(&self.programs)
            .map(|(r, p)| (r.id.clone(), p.interpreted()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub(crate) fn get(&self, key: u64) -> Option<&Rule> {
        self.by_key.get(&key).map(|&i| &self.rules[i])
    }

    /// A rule's compiled expressions, by key.
    pub(crate) fn programs(&self, key: u64) -> Option<&Programs> {
        self.by_key.get(&key).map(|&i| &self.programs[i])
    }
}

/// Step 1: observations of the rules of each event's stream. Events wait until the rule-set
/// input has passed their time, so each is judged by the version in force at its event time.
pub fn observe<'scope>(
    events: StreamVec<'scope, u64, (Envelope, u64)>,
    versions: StreamVec<'scope, u64, RuleSetVersion>,
    refs: Arc<RefValues>,
    stats: Arc<Stats>,
    timeouts: crate::build::Timeouts,
) -> StreamVec<'scope, u64, Batch> {
    let mut scratch = Scratch::default();
    let told = stats.clone();
    super::versioned::at_version(
        events,
        versions,
        "ObserveRules",
        // Before the first rule set: no rules.
        (Arc::new(RuleSet::default()), refs),
        // Every version is a rule set; it brings new `ref` values or keeps the previous ones.
        move |v, (_, refs)| {
            let refs = v
                .reference
                .as_ref()
                .map_or_else(|| refs.clone(), |r| Arc::new(RefValues::new(r.clone())));
            let set = RuleSet::compile(v);
            told.set_interpreted(set.interpreted());
            Some((Arc::new(set), refs))
        },
        move |(set, refs), env, t, out| {
            // An event behind the frontier by no more than the backlog allowed is judged at
            // its own time on its group's timeline; one further behind, at the frontier (as
            // late). A complaint fed again at start only restores a clock: at the frontier.
            let max_backlog = match env.event.stream() {
                Stream::ComplaintNew | Stream::ComplaintStatus => timeouts.complaint_max_backlog_ms,
                _ => timeouts.max_backlog_ms,
            };
            let own = if env.time_ms < t && t - env.time_ms <= max_backlog && !env.replayed {
                stats.record_backlog();
                env.time_ms
            } else {
                t
            };
            observe_event(set, &env, (t, own), refs, &stats, &mut scratch, out);
        },
    )
}

fn observe_event(
    set: &RuleSet,
    env: &Envelope,
    t: (u64, u64),
    refs: &RefValues,
    stats: &Stats,
    scratch: &mut Scratch,
    out: &mut Vec<Batch>,
) {
    let Some(ids) = set.by_stream.get(&env.event.stream()) else {
        return;
    };
    // A complaint fed again at start restores the clocks of the deadline rules only: to the
    // others it is old news (a burst of old complaints is not a group complaint).
    if env.replayed
        && !ids
            .iter()
            .any(|&i| matches!(set.rules[i].kind, Kind::Deadline { .. }))
    {
        return;
    }
    let judge = Judge::new(
        env,
        refs,
        scratch.clear(set.shared),
        ids.iter().any(|&i| uses_ref(&set.rules[i])),
    );
    let first = out.len();
    let stream = env.event.stream();
    let mut key = GroupKey::default();
    // Kept once an event, for every rule whose match an explanation keeps.
    let kept = std::cell::OnceCell::new();
    for &i in ids {
        let rule = &set.rules[i];
        let programs = &set.programs[i];
        if env.replayed && !matches!(rule.kind, Kind::Deadline { .. }) {
            continue;
        }
        // A deadline's own stream starts its clock; its done stream (maybe the same) stops it.
        let (starts, stops) = match &rule.kind {
            Kind::Deadline { done_stream, .. } => (rule.stream == stream, *done_stream == stream),
            _ => (true, false),
        };
        // An absence rule hears its device on its other streams whatever the event says, and
        // only the devices its registry filter admits.
        let heard_elsewhere = matches!(&rule.kind, Kind::Absence { .. }) && rule.stream != stream;
        let check = |e: &rules::expr::Expr, p: &Option<rules::compiled::Program>| {
            judge.check(e, p.as_ref(), |err| stats.rule_error(&rule.id, &err))
        };
        if let Kind::Absence {
            registry_filter: Some(f),
            ..
        } = &rule.kind
            && !check(f, &programs.registry_filter)
        {
            continue;
        }
        if !rule.prev_fields.is_empty() && starts {
            let fields = rule
                .prev_fields
                .iter()
                .map(|f| judge.field(f).and_then(|v| scalar_of(&v)))
                .collect();
            let item = match &rule.kind {
                Kind::Window { .. } => window_item(rule, &judge),
                _ => carried(rule, programs, &judge, stats),
            };
            let what = What::Deferred { fields, item };
            push(
                out,
                first,
                key.of(rule, &judge),
                t,
                Obs::Item(set.keys[i], what),
            );
            continue;
        }
        let matched = heard_elsewhere
            || (starts
                && rule
                    .filter
                    .as_ref()
                    .is_none_or(|f| check(f, &programs.filter)));
        let cleared = match &rule.kind {
            Kind::State { clear: Some(c) } => check(c, &programs.clear),
            Kind::Deadline { done, .. } if stops => check(done, &programs.clear),
            Kind::Event | Kind::Window { .. } => rule
                .ended_by
                .as_ref()
                .is_some_and(|e| check(e, &programs.ended_by)),
            _ => false,
        };
        // Only what can change a machine travels: unmatched events matter to state rules,
        // to window rules (time moves the window) and to set-and-clear rules.
        let relevant = matched
            || cleared
            || matches!(rule.kind, Kind::State { clear: None } | Kind::Window { .. });
        if !relevant {
            continue;
        }
        let group = match &rule.kind {
            Kind::Absence { .. } => key.device(&env.event),
            _ => key.of(rule, &judge),
        };
        let item = match &rule.kind {
            Kind::Window { .. } => window_item(rule, &judge),
            // The starting event carries when its clock runs out, counted from when the
            // complaint was made (its event time), not from when it reached the dataflow.
            Kind::Deadline { working_days, .. } if matched => {
                Item::Num(refs.calendar.working_days_after(env.time_ms, *working_days) as f64)
            }
            Kind::Event | Kind::State { .. } if matched => carried(rule, programs, &judge, stats),
            _ => Item::Unit,
        };
        let seen = (matched && keeps_events(rule, starts))
            .then(|| kept.get_or_init(|| Seen::of(env)).clone());
        let obs = match (item, seen) {
            (Item::Unit, None) if i < Plain::ROOM => Obs::Plain(i, matched, cleared),
            (item, seen) => Obs::Item(
                set.keys[i],
                What::Event {
                    matched,
                    cleared,
                    item,
                    seen,
                },
            ),
        };
        push(out, first, group, t, obs);
    }
}

/// One rule's observation of an event, on its way into its group's batch.
enum Obs {
    /// A plain one: the rule's index, whether the event matched and cleared.
    Plain(usize, bool, bool),
    /// Anything else: the rule's key and the observation.
    Item(u64, What),
}

/// Whether a match of `rule` is kept for its explanation: an event or state rule's, a
/// deadline's starting event. Window rules keep their items; absence rules need none.
fn keeps_events(rule: &Rule, starts: bool) -> bool {
    match rule.kind {
        Kind::Event | Kind::State { .. } => true,
        Kind::Deadline { .. } => starts,
        _ => false,
    }
}

/// An event's group key for one rule after another, in one buffer (a batch copies it only
/// when it is the first of its group). It remembers which `group_by` it spells: rules of a
/// stream mostly group alike (every elevator rule by `elevator_id`), so the key is spelled
/// once an event, not once a rule.
#[derive(Default)]
struct GroupKey<'s> {
    text: String,
    spells: Option<&'s [String]>,
}

impl<'s> GroupKey<'s> {
    /// The group of the event for `rule`.
    fn of(&mut self, rule: &'s Rule, judge: &Judge<'_>) -> &str {
        if self.spells != Some(rule.group_by.as_slice()) {
            group_key(rule, |g| judge.field(g), &mut self.text);
            self.spells = Some(rule.group_by.as_slice());
        }
        &self.text
    }

    /// The event's device, for absence rules.
    fn device(&mut self, e: &Event) -> &str {
        self.spells = None;
        device_key(e, &mut self.text)
    }
}

/// The group key of an event for `rule` (its `group_by` values, read by `field`, joined with
/// `/`), written into `key`.
pub(crate) fn group_key<'k, 'a>(
    rule: &Rule,
    field: impl Fn(&str) -> Option<rules::compiled::Val<'a>>,
    key: &'k mut String,
) -> &'k str {
    use std::fmt::Write;
    key.clear();
    for (i, g) in rule.group_by.iter().enumerate() {
        if i > 0 {
            key.push('/');
        }
        match field(g) {
            Some(rules::compiled::Val::Str(s)) => key.push_str(&s),
            Some(v) => {
                let _ = write!(key, "{}", text(&v));
            }
            None => {}
        }
    }
    key
}

/// Adds what an event means for one rule to the batch of its group (one batch per group).
fn push(out: &mut Vec<Batch>, first: usize, group: &str, t: (u64, u64), obs: Obs) {
    // The batch of the rule before is the likeliest: looked at first.
    let b = match out[first..].iter().rposition(|b| b.group == group) {
        Some(i) => &mut out[first + i],
        None => {
            out.push(Batch {
                group: group.into(),
                time: t.0,
                own: t.1,
                plain: Plain::default(),
                items: Vec::new(),
            });
            let last = out.len() - 1;
            &mut out[last]
        }
    };
    match obs {
        Obs::Plain(i, matched, cleared) => b.plain.set(i, matched, cleared),
        Obs::Item(rule, what) => b.items.push((rule, what)),
    }
}

/// The number a matching event gives an event or state rule's condition: its `value`
/// expression's; none (the condition carries 1) without one, or when it fails (counted).
fn carried(rule: &Rule, programs: &Programs, judge: &Judge<'_>, stats: &Stats) -> Item {
    match &rule.value {
        None => Item::Unit,
        Some(v) => judge.number(v, programs.value.as_ref()).map_or_else(
            |err| {
                stats.rule_error(&rule.id, &err);
                Item::Unit
            },
            Item::Num,
        ),
    }
}

/// What an event adds to a window rule's window.
fn window_item(rule: &Rule, judge: &Judge<'_>) -> Item {
    let Kind::Window { aggregate, .. } = &rule.kind else {
        return Item::Unit;
    };
    match aggregate.field().and_then(|f| judge.field(f)) {
        Some(v) => match v.number() {
            Some(n) => Item::Num(n),
            None => Item::Text(text(&v)),
        },
        None => Item::Unit,
    }
}

/// A field's value as carried for `prev` (none for null, as the interpreter's map gives).
fn scalar_of(v: &rules::compiled::Val<'_>) -> Option<Scalar> {
    use rules::compiled::Val;
    match v {
        Val::Str(s) => Some(Scalar::Text(s.to_string())),
        Val::Bool(b) => Some(Scalar::Bool(*b)),
        other => other.number().map(Scalar::Num),
    }
}

/// The CEL map of the carried fields, named by the rule's `prev_fields`.
pub(crate) fn scalars_value(names: &[String], fields: &[Option<Scalar>]) -> Value {
    map(names.iter().zip(fields).filter_map(|(k, s)| {
        let v = match s.as_ref()? {
            Scalar::Text(t) => Value::String(Arc::new(t.clone())),
            Scalar::Num(n) => Value::Float(*n),
            Scalar::Bool(b) => Value::Bool(*b),
        };
        Some((k.clone(), v))
    }))
}

fn uses_ref(rule: &Rule) -> bool {
    rule.filter.as_ref().is_some_and(|f| f.uses_ref)
        || rule.value.as_ref().is_some_and(|v| v.uses_ref)
        || rule.ended_by.as_ref().is_some_and(|e| e.uses_ref)
        || matches!(&rule.kind, Kind::State { clear: Some(c) } | Kind::Deadline { done: c, .. } if c.uses_ref)
        || matches!(
            &rule.kind,
            Kind::Absence {
                registry_filter: Some(_),
                ..
            }
        )
}

/// Step 2, as an extension trait on the batch stream.
pub trait Conditions<'scope> {
    /// The collection of active conditions, under the rule-set versions of `versions`, and
    /// what made each start. With a checkpoint `part`, the machines are given at each
    /// checkpoint and restored at start; `limits` bound what a group keeps to reorder a late
    /// part of a gap (the events put in order are counted in `stats`), `keep` how many
    /// matched events (or window items) an explanation keeps.
    fn conditions(
        self,
        versions: StreamVec<'scope, u64, RuleSetVersion>,
        part: Option<Part>,
        limits: (ReorderLimits, usize),
        stats: Arc<Stats>,
    ) -> Judgements<'scope>;
}

impl<'scope> Conditions<'scope> for StreamVec<'scope, u64, Batch> {
    fn conditions(
        self,
        versions: StreamVec<'scope, u64, RuleSetVersion>,
        part: Option<Part>,
        limits: (ReorderLimits, usize),
        stats: Arc<Stats>,
    ) -> Judgements<'scope> {
        use timely::dataflow::channels::pact::Pipeline;
        use timely::dataflow::operators::vec::Map;
        let exchange = Exchange::new(|b: &Batch| b.group.hashed());
        let judged = self.binary_frontier(
            versions,
            exchange,
            Pipeline,
            "Conditions",
            move |init, _info| {
                let restored = part.as_ref().and_then(|p| p.restored::<SavedMachines>());
                let mut cap = match &restored {
                    Some((at, _)) => Held::at(init.delayed(at)),
                    None => Held::default(),
                };
                let mut state = Machines::new(restored, limits, stats);
                move |(input, frontier), (versions, versions_frontier), output| {
                    versions.for_each_stamp(|incap, data| {
                        cap.keep(&incap);
                        data.flat_map(|v| v.drain(..))
                            .for_each(|v| state.version(v));
                    });
                    input.for_each_stamp(|incap, data| {
                        cap.keep(&incap);
                        data.for_each(|b| state.batches(std::mem::take(b)));
                    });
                    let f = [frontier.frontier(), versions_frontier.frontier()]
                        .iter()
                        .map(|f| f.first().copied().unwrap_or(u64::MAX))
                        .min()
                        .unwrap_or(u64::MAX);
                    state.advance(f);
                    if let Some(c) = cap.get()
                        && state.has_output()
                    {
                        output.session(c).give_iterator(state.output());
                    }
                    if let Some(p) = part.as_ref().filter(|p| p.due(f)) {
                        p.give(f, &state.saved());
                    }
                    cap.release_to(state.owed());
                }
            },
        );
        let conditions = judged
            .clone()
            .flat_map(|(j, t)| match j {
                Judged::Change(c, d) => Some((c, t, d)),
                Judged::Cause(_) | Judged::Joined(_) => None,
            })
            .as_collection();
        let causes = judged.flat_map(|(j, t)| match j {
            Judged::Cause(e) => Some((*e, t)),
            Judged::Change(..) | Judged::Joined(_) => None,
        });
        Judgements { conditions, causes }
    }
}

pub(crate) fn window_condition<'a>(
    ev: &'a Evaluator,
    rule: &'a Rule,
    programs: Option<&'a Programs>,
) -> impl FnMut(&rules::machine::Aggregated<'_>) -> (bool, bool) + 'a {
    move |a| match &rule.kind {
        Kind::Window {
            condition, clear, ..
        } => {
            let compiled = rules::compiled::WindowVars {
                value: a.value,
                count: a.count,
                prior: a.prior,
            };
            // Compiled where it compiled; the interpreter for the rest and for a failure
            // (which counts as false either way).
            let judge = |e: &rules::expr::Expr, p: Option<&rules::compiled::Program>| match p
                .and_then(|p| p.node())
                .map(|n| n.eval_bool(&compiled))
            {
                Some(Ok(b)) => b,
                _ => ev.bool(e, window_vars(a)).unwrap_or(false),
            };
            let holds = judge(condition, programs.and_then(|p| p.window.as_ref()));
            let clears = clear
                .as_ref()
                .is_some_and(|c| judge(c, programs.and_then(|p| p.window_clear.as_ref())));
            (holds, clears)
        }
        _ => (false, false),
    }
}

/// What the interpreter binds for a window condition.
fn window_vars(a: &rules::machine::Aggregated<'_>) -> Vec<(&'static str, Value)> {
    let list =
        |f: &dyn Fn(&(f64, usize)) -> Value| Value::List(Arc::new(a.prior.iter().map(f).collect()));
    vec![
        ("value", Value::Float(a.value)),
        ("count", Value::Int(a.count as i64)),
        ("prior", list(&|p| Value::Float(p.0))),
        ("prior_count", list(&|p| Value::Int(p.1 as i64))),
    ]
}

type Out = Vec<(Condition, u64, isize)>;

/// The group's timers due by frontier time `t`: own-timed machines at the group's own time
/// (kept as they were at the latest event before the first such timer), the others at `t`.
pub(crate) fn run_timers(
    group: &mut Group,
    key: &str,
    t: u64,
    set: &RuleSet,
    ev: &Evaluator,
    out: &mut Out,
) {
    group.expire_reorder(t);
    let mark = out.len();
    let own_now = group.clock.at(t);
    for i in 0..group.machines.len() {
        let k = group.machines[i].0;
        let Some(r) = set.get(k) else { continue };
        let frontier = group::on_frontier(r);
        let now = if frontier { t } else { own_now };
        if group.machines[i]
            .1
            .next_timer(r)
            .is_none_or(|due| due > now)
        {
            continue;
        }
        if !frontier {
            // The first own-timed timer since the latest event: the machines as they were
            // (none of them has run a timer yet) are kept for a backlog behind the clock.
            group.save(set);
        }
        let Group {
            machines, catch_up, ..
        } = &mut *group;
        let m = &mut machines[i].1;
        let mut cond = window_condition(ev, r, set.programs(k));
        let transitions = if frontier {
            m.timer(r, t, &mut cond)
        } else {
            timers_until(m, r, own_now, &mut cond)
        };
        group::publish((r, k), key, m, catch_up, transitions, t, out);
    }
    settle(group, key, t, set, ev, out);
    group.note_ended(&out[mark..], set);
}

/// Ends what a backlog's catch-up has decided (see [`Group::settle_catch_up`]).
pub(crate) fn settle(
    group: &mut Group,
    key: &str,
    t: u64,
    set: &RuleSet,
    ev: &Evaluator,
    out: &mut Out,
) {
    group.settle_catch_up(t, set, key, out, |r, k, m, until| {
        let mut m = m.clone();
        let mut cond = window_condition(ev, r, set.programs(k));
        let _ = timers_until(&mut m, r, until, &mut cond);
        m.firing()
    });
}

/// What judging needs besides the group: the rule set in force, the interpreter, and the
/// bounds of reordering.
pub(crate) struct Cx<'a> {
    pub set: &'a RuleSet,
    pub ev: &'a Evaluator,
    pub limits: ReorderLimits,
    pub stats: &'a Stats,
    /// How many matched events a machine keeps for its explanation.
    pub keep: usize,
}

/// One event's batch for a group, handled at frontier time `t`: its own-timed rules judge it
/// at its own time on the group's timeline (after the timers that time has reached), the
/// others at `t`. An event older than the group's latest, after a gap the group kept what it
/// takes for, is put in order ([`super::reorder::rebuild`]).
pub(crate) fn judge_batch(
    group: &mut Group,
    key: &str,
    b: Batch,
    t: u64,
    cx: &Cx<'_>,
    out: &mut Out,
) {
    let (set, ev) = (cx.set, cx.ev);
    let own_timed = b.any_rule(set, |r| !group::on_frontier(r));
    if own_timed {
        super::reorder::trim(group, t, cx);
    }
    if own_timed && group.open_reorder(b.own, t, set, cx.limits) {
        return super::reorder::rebuild(group, key, b, t, cx, out);
    }
    let mark = out.len();
    let (at, behind) = if own_timed {
        group.place(b.own, t, set)
    } else {
        (t, false)
    };
    let held = (own_timed && group.reorder.is_some()).then(|| {
        let mut items = b.listed(set);
        items.retain(|(k, _)| group::own_timed(set, *k));
        (at, items)
    });
    let Group {
        machines, catch_up, ..
    } = &mut *group;
    // Timers up to the group's clock have run; those between it and the event (a group
    // whose clock ran behind, or machines put back by a backlog) run now.
    if behind {
        for (k, m) in machines.iter_mut() {
            if let Some(r) = set.get(*k).filter(|r| !group::on_frontier(r)) {
                let mut cond = window_condition(ev, r, set.programs(*k));
                let transitions = timers_until(m, r, at, &mut cond);
                group::publish((r, *k), key, m, catch_up, transitions, t, out);
            }
        }
    }
    for (index, rule, what) in b.observations(set) {
        let Some(i) = index else { continue };
        let r = &set.rules[i];
        let when = if group::on_frontier(r) { t } else { at };
        let m = match machine(machines, r, rule, &what) {
            Some(m) => m,
            None => continue,
        };
        let transitions = match what {
            What::Unregistered => {
                if let Some(f) = m.firing() {
                    out.push((group::condition(r, key, &f), group::stop_time(&f, t), -1));
                }
                *m = Machine::default();
                Vec::new()
            }
            What::Registered => {
                // Absence counts from the registration's time (the runtime registers at its
                // first frontier: start-up), unless the device's clock already runs
                // (restored from a checkpoint, or heard before).
                if m.is_idle() {
                    *m = Machine::registered(t);
                }
                Vec::new()
            }
            what => judge_event(m, r, (Some(&set.programs[i]), cx.keep), ev, when, what),
        };
        group::publish((r, rule), key, m, catch_up, transitions, t, out);
    }
    if own_timed {
        group.heard(at, t);
    }
    if let Some(h) = held {
        group.hold(h);
    }
    settle(group, key, t, set, ev, out);
    group.note_ended(&out[mark..], set);
}

/// The group's machine of `rule`, made if the event changes a new one.
pub(crate) fn machine<'m>(
    machines: &'m mut Vec<(u64, Machine)>,
    r: &Rule,
    rule: u64,
    what: &What,
) -> Option<&'m mut Machine> {
    match machines.iter().position(|(x, _)| *x == rule) {
        Some(i) => Some(&mut machines[i].1),
        None if changes_nothing_new(r, what) => None,
        None => {
            machines.push((rule, Machine::default()));
            machines.last_mut().map(|(_, m)| m)
        }
    }
}

/// An event's meaning for one machine, judged at `when`: its transitions.
/// `keep`: how many matched events a machine keeps for its explanation.
pub(crate) fn judge_event(
    m: &mut Machine,
    r: &Rule,
    (programs, keep): (Option<&Programs>, usize),
    ev: &Evaluator,
    when: u64,
    what: What,
) -> Vec<Transition> {
    let mut cond = window_condition(ev, r, programs);
    match what {
        What::Event {
            matched,
            cleared,
            item,
            seen,
        } => {
            let transitions = m.event(r, when, matched, cleared, item, &mut cond);
            if let Some(seen) = &seen {
                m.saw(r, seen, keep, when);
            }
            transitions
        }
        What::Deferred { fields, item } => {
            // The group's previous event is known here, in event-time order.
            let matched = prev_filter(r, programs, ev, &fields, m.prev());
            m.set_prev(fields);
            m.event(r, when, matched, false, item, &mut cond)
        }
        What::Registered | What::Unregistered => Vec::new(),
    }
}

/// Runs a machine's timers due by own time `at`, each at its own time.
pub(crate) fn timers_until(
    m: &mut Machine,
    r: &Rule,
    at: u64,
    cond: &mut dyn FnMut(&rules::machine::Aggregated<'_>) -> (bool, bool),
) -> Vec<rules::machine::Transition> {
    let mut out = Vec::new();
    // Every timer moves the machine past its time; the bound only guards against one that
    // would not.
    for _ in 0..1024 {
        match m.next_timer(r).filter(|d| *d <= at) {
            Some(due) => out.extend(m.timer(r, due, cond)),
            None => break,
        }
    }
    out
}

/// A `prev` rule's filter over the event's carried fields and the group's previous event's
/// (false for the group's first event).
fn prev_filter(
    r: &Rule,
    programs: Option<&Programs>,
    ev: &Evaluator,
    fields: &[Option<Scalar>],
    prev: Option<&[Option<Scalar>]>,
) -> bool {
    let (Some(f), Some(prev)) = (&r.filter, prev) else {
        return false;
    };
    let compiled = programs
        .and_then(|p| p.filter.as_ref())
        .and_then(|p| p.node());
    let vars = CarriedVars {
        names: &r.prev_fields,
        event: fields,
        prev,
    };
    match compiled.map(|n| n.eval_bool(&vars)) {
        Some(Ok(b)) => b,
        _ => ev
            .bool(
                f,
                vec![
                    ("event", scalars_value(&r.prev_fields, fields)),
                    ("prev", scalars_value(&r.prev_fields, prev)),
                ],
            )
            .unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_that_do_not_compile_are_named_with_their_interpreted_expressions() {
        let text = r#"
[[rule]]
id = "kitchen.listed"
description = "A detection of a listed kind, through a macro"
severity = "minor"
stream = "kitchen_detection"
filter = '["smoking", "rodent"].exists(k, k == event.kind)'
group_by = ["kitchen_id"]

[[rule]]
id = "kitchen.smoking"
description = "Smoking"
severity = "minor"
stream = "kitchen_detection"
filter = 'event.kind == "smoking"'
group_by = ["kitchen_id"]
"#;
        let rules = rules::load_str("kitchens.toml", text).unwrap();
        let set = RuleSet::compile(&RuleSetVersion::of(0, &rules));
        assert_eq!(set.interpreted(), vec![("kitchen.listed".to_owned(), 1)]);
    }
}
