//! The dataflow graph: inputs, per-domain operators, and the counter collection.
//!
//! ```text
//! events ─partition─▶ elevator frames ─▶ liveness ─join registry─▶ online per district
//!                   ├▶ camera beats    ─▶ liveness ─join cameras⋈kitchens─▶ online per venue type
//!                   ├▶ sales           ─▶ turnover and sales per market per minute
//!                   └▶ complaints      ─▶ dedup by id ─join merchants─▶ received per office per day
//! feeder counters (messages per stream per minute, late, untimed) ─┐
//! registries ─▶ registered per district / venue type ──────────────┴▶ counters
//! events ─rules─▶ conditions ─┬──────────────────────────────────────▶ alerts (worker 0)
//! complaints ─────────────────┴▶ incidents: join on (incident rule, key) ─┘
//! ```
//! Only changes enter differential collections: liveness emits transitions, sales become
//! one update per (market, minute) per batch after `consolidate_stream`, and every windowed
//! update is paired with its retraction so state stays bounded. Each domain's operators are
//! in `crate::domains` (elevators, cameras, markets, complaints); this module makes the
//! inputs, splits the events among the domains, builds the rules over all of them, and
//! gathers the counters and time series.

use crate::checkpoint::Part;
use crate::conditions::Condition;
use crate::counters::Counter;
use crate::domains;
use crate::operators::ReorderLimits;
use crate::operators::conditions::{
    Batch, Conditions, Observation, RefValues, RuleSetVersion, What, observe,
};
use crate::series::Series;
use differential_dataflow::VecCollection;
use differential_dataflow::input::{Input as _, InputSession};
use model::{Envelope, Id, Stream};
use rules::Rule;
use std::sync::Arc;
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::vec::{Input as _, Map, Partition};
use timely::dataflow::{InputHandleVec, Scope, StreamVec};

/// How long per-minute counters are kept after their minute ends.
pub const MINUTE_RETENTION_MS: u64 = 61 * 60_000;

pub use crate::domains::complaints::{
    COMPLAINT_DECISION_WORKING_DAYS, COMPLAINT_ID_RETENTION_MS, REPORT_DECISION_WORKING_DAYS,
    UNROUTED_OFFICE,
};

/// Liveness timeouts, event-time ms.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// An elevator with no frame for this long is offline (default 180 s).
    pub elevator_ms: u64,
    /// A camera with no heartbeat nor detection for this long is offline (default 180 s).
    pub camera_ms: u64,
    /// How far behind the frontier an event may be and still be judged by the rules at its
    /// own time on its group's timeline (default 15 min; docs/rules.md).
    pub max_backlog_ms: u64,
    /// The same for complaints (default 7 days).
    pub complaint_max_backlog_ms: u64,
    /// What a group keeps to reorder a late part of a gap in its own times.
    pub reorder: ReorderLimits,
    /// How many matched events (or window items) the explanation of an alert keeps
    /// (default 16; docs/explain.md).
    pub explain_events: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            elevator_ms: 180_000,
            camera_ms: 180_000,
            max_backlog_ms: 900_000,
            complaint_max_backlog_ms: 7 * 86_400_000,
            reorder: ReorderLimits::default(),
            explain_events: 16,
        }
    }
}

/// The inputs of one worker's dataflow.
pub struct Inputs {
    /// Decoded events, each with the differential time it enters at.
    pub events: InputHandleVec<u64, (Envelope, u64)>,
    /// Counter updates computed by the feeder (message rates, late, untimed).
    pub counters: InputSession<u64, Counter, isize>,
    /// Elevator registry: (elevator_id, district).
    pub elevators: InputSession<u64, (Id, Id), isize>,
    /// Camera registry: (kitchen_id, camera_id).
    pub cameras: InputSession<u64, (Id, Id), isize>,
    /// Kitchen registry: (kitchen_id, venue_type).
    pub kitchens: InputSession<u64, (Id, Id), isize>,
    /// Merchant registry: (merchant_id, office_id).
    pub merchants: InputSession<u64, (Id, Id), isize>,
    /// Devices registered for absence rules.
    pub registrations: InputHandleVec<u64, Observation>,
    /// Versions of the rule set (worker 0 sends them; every worker gets them).
    pub rule_versions: InputHandleVec<u64, RuleSetVersion>,
    /// Alert episodes journaled before this start, which incident rules may still join with
    /// complaints to come (worker 0 sends them once, at start).
    pub alerts_before: InputSession<u64, Condition, isize>,
}

impl Inputs {
    /// Advances every input to `t` and sends what is buffered.
    pub fn advance_to(&mut self, t: u64) {
        self.events.advance_to(t);
        self.registrations.advance_to(t);
        self.rule_versions.advance_to(t);
        self.alerts_before.advance_to(t);
        self.alerts_before.flush();
        for s in [
            &mut self.elevators,
            &mut self.cameras,
            &mut self.kitchens,
            &mut self.merchants,
        ] {
            s.advance_to(t);
            s.flush();
        }
        self.counters.advance_to(t);
        self.counters.flush();
    }

    /// Sends what is buffered without advancing.
    pub fn flush(&mut self) {
        self.events.flush();
        self.counters.flush();
    }

    /// Puts `rules` in force for events at or after `activation` (not before the input's
    /// current time), and registers the devices of its new or changed absence rules at the
    /// same time.
    pub fn set_rules(
        &mut self,
        activation: u64,
        rules: &[Rule],
        before: &[Rule],
        reference: &crate::reference::Reference,
    ) {
        let activation = activation.max(*self.rule_versions.time());
        self.rule_versions
            .send(RuleSetVersion::of(activation, rules));
        let changed = rules.iter().filter(|rule| {
            !before
                .iter()
                .any(|b| b.id == rule.id && b.source == rule.source)
        });
        self.register(changed, reference, activation);
    }

    /// Registers the devices of the enabled absence rules among `rules` at `time`: their
    /// silence counts from there.
    pub fn register<'r>(
        &mut self,
        rules: impl IntoIterator<Item = &'r Rule>,
        reference: &crate::reference::Reference,
        time: u64,
    ) {
        let absence = |r: &&Rule| matches!(r.kind, rules::spec::Kind::Absence { .. }) && r.enabled;
        for rule in rules.into_iter().filter(absence) {
            for key in crate::operators::conditions::watched_keys(rule, reference) {
                self.registrations.send(Observation {
                    rule: rules::rule_key(&rule.id),
                    group: key,
                    time,
                    what: What::Registered,
                });
            }
        }
    }

    /// Puts `after` in force for events at or after `activation` in place of `before`: the
    /// registries change by their differences, `ref` in rules reads the new data, and the
    /// absence rules of `rules` watch the devices they now admit (new ones are registered,
    /// removed ones stop counting).
    pub fn set_reference(
        &mut self,
        activation: u64,
        rules: &[Rule],
        before: &crate::reference::Reference,
        after: Arc<crate::reference::Reference>,
    ) {
        use std::collections::HashSet;
        fn diff(
            input: &mut InputSession<u64, (Id, Id), isize>,
            old: HashSet<(Id, Id)>,
            new: HashSet<(Id, Id)>,
        ) {
            for gone in old.difference(&new) {
                input.remove(gone.clone());
            }
            for added in new.difference(&old) {
                input.insert(added.clone());
            }
        }
        let activation = activation.max(*self.rule_versions.time());
        let elevators = |r: &crate::reference::Reference| {
            r.elevators
                .iter()
                .map(|e| (e.elevator_id.clone(), e.district.clone()))
                .collect()
        };
        let cameras = |r: &crate::reference::Reference| {
            r.cameras
                .iter()
                .map(|c| (c.kitchen_id.clone(), c.camera_id.clone()))
                .collect()
        };
        let kitchens = |r: &crate::reference::Reference| {
            r.kitchens
                .iter()
                .map(|k| (k.kitchen_id.clone(), k.venue_type.clone()))
                .collect()
        };
        let merchants = |r: &crate::reference::Reference| {
            r.merchants
                .iter()
                .map(|m| (m.merchant_id.clone(), m.office_id.clone()))
                .collect()
        };
        diff(&mut self.elevators, elevators(before), elevators(&after));
        diff(&mut self.cameras, cameras(before), cameras(&after));
        diff(&mut self.kitchens, kitchens(before), kitchens(&after));
        diff(&mut self.merchants, merchants(before), merchants(&after));
        for rule in rules {
            if !(matches!(rule.kind, rules::spec::Kind::Absence { .. }) && rule.enabled) {
                continue;
            }
            let old: HashSet<String> = crate::operators::conditions::watched_keys(rule, before)
                .into_iter()
                .collect();
            let new: HashSet<String> = crate::operators::conditions::watched_keys(rule, &after)
                .into_iter()
                .collect();
            let changes = new
                .difference(&old)
                .map(|k| (k, What::Registered))
                .chain(old.difference(&new).map(|k| (k, What::Unregistered)));
            for (key, what) in changes {
                self.registrations.send(Observation {
                    rule: rules::rule_key(&rule.id),
                    group: key.clone(),
                    time: activation,
                    what,
                });
            }
        }
        self.rule_versions
            .send(RuleSetVersion::of(activation, rules).with_reference(after));
    }

    /// Loads the registries of `reference` at the current time.
    pub fn load_reference(&mut self, reference: &crate::reference::Reference) {
        for e in &reference.elevators {
            self.elevators
                .insert((e.elevator_id.clone(), e.district.clone()));
        }
        for c in &reference.cameras {
            self.cameras
                .insert((c.kitchen_id.clone(), c.camera_id.clone()));
        }
        for k in &reference.kitchens {
            self.kitchens
                .insert((k.kitchen_id.clone(), k.venue_type.clone()));
        }
        for m in &reference.merchants {
            self.merchants
                .insert((m.merchant_id.clone(), m.office_id.clone()));
        }
    }
}

/// What to build.
#[derive(Clone)]
pub struct Plan {
    pub timeouts: Timeouts,
    /// Build the time-series window operators.
    pub series: bool,
    /// Build the rule operators (their rules arrive on [`Inputs::rule_versions`]).
    pub rules_on: bool,
    /// Reference data, for `ref` in rule expressions.
    pub reference: Arc<crate::reference::Reference>,
    /// Where rule evaluation failures are counted.
    pub stats: Arc<crate::stats::Stats>,
    /// Where the operators give their state, and find it again at a start (none: off).
    pub checkpoints: Option<Arc<crate::checkpoint::Checkpoints>>,
    /// Incident rules: which alerts and complaints join (fixed for the run).
    pub incidents: Arc<Vec<rules::IncidentRule>>,
    /// In a cluster: every process's facts for the alerts reach worker 0, where this hears
    /// them (none: a fact is kept where its message arrives).
    pub facts: Option<FactsFn>,
}

/// Hears, on worker 0, the facts of every message (`model::Fact`).
pub type FactsFn = Arc<dyn Fn(model::Fact) + Send + Sync>;

/// Carries the facts of the messages to worker 0, where `hear` takes them: the owner of the
/// alerts learns them whichever process received the message (in place of a subscription of
/// its own to those topics).
fn tap_facts(events: StreamVec<'_, u64, (Envelope, u64)>, hear: FactsFn) {
    use timely::dataflow::operators::{Exchange, Inspect};
    events
        .flat_map(|(env, _)| model::Fact::of(&env.event, env.received_ms))
        .exchange(|_| 0)
        .inspect(move |fact| hear(fact.clone()));
}

/// What [`build`] makes.
pub struct Built<'scope> {
    /// Where events and reference data go in.
    pub inputs: Inputs,
    /// Active alert conditions, when there are rules.
    pub conditions: Option<VecCollection<'scope, u64, Condition, isize>>,
    /// What made each condition start, at its time (with the conditions).
    pub causes: Option<StreamVec<'scope, u64, (crate::conditions::Cause, u64)>>,
    /// Alerts and complaints that incident rules join, at the time each pair is found.
    pub joined: Option<StreamVec<'scope, u64, (crate::conditions::Joined, u64)>>,
    /// Every counter update.
    pub counters: VecCollection<'scope, u64, Counter, isize>,
    /// Closed time-series windows, when asked for.
    pub series: Option<StreamVec<'scope, u64, Series>>,
}

/// Builds the dataflow in `scope`; the time-series operators only when `series` is set.
pub fn build<'scope>(scope: Scope<'scope, u64>, plan: &Plan) -> Built<'scope> {
    let (timeouts, series) = (plan.timeouts, plan.series);
    let part = |name| Part::new(plan.checkpoints.as_ref(), name, scope.index());
    let (events_in, events) = scope.new_input::<(Envelope, u64)>();
    let (registrations_in, registrations) = scope.new_input::<Observation>();
    let (rule_versions_in, rule_versions) = scope.new_input::<RuleSetVersion>();
    let (alerts_before_in, alerts_before) = scope.new_collection::<Condition, isize>();
    let versions = rule_versions.broadcast();
    if let Some(hear) = plan.facts.clone() {
        tap_facts(events.clone(), hear);
    }
    // Rules see every event; the copy is made only when rules are on.
    let refs = plan
        .rules_on
        .then(|| Arc::new(RefValues::new(plan.reference.clone())));
    let judged = refs.clone().map(|refs| {
        observe(
            events.clone(),
            versions.clone(),
            refs,
            plan.stats.clone(),
            timeouts,
        )
        .concat(registrations.map(Batch::from))
        .conditions(
            versions.clone(),
            part("conditions"),
            (timeouts.reorder, timeouts.explain_events),
            plan.stats.clone(),
        )
    });
    let (conditions, causes) = match judged {
        Some(j) => (Some(j.conditions), Some(j.causes)),
        None => (None, None),
    };
    let (counters_in, fed_counters) = scope.new_collection::<Counter, isize>();
    let (elevators_in, elevators) = scope.new_collection::<(Id, Id), isize>();
    let (cameras_in, cameras) = scope.new_collection::<(Id, Id), isize>();
    let (kitchens_in, kitchens) = scope.new_collection::<(Id, Id), isize>();
    let (merchants_in, merchants) = scope.new_collection::<(Id, Id), isize>();

    let mut parts = events
        .partition(7, |(env, t)| {
            let part = match env.event.stream() {
                Stream::ElevatorStatus => 0,
                Stream::KitchenHeartbeat | Stream::KitchenDetection => 1,
                Stream::MarketSale => 2,
                Stream::ComplaintNew => 3,
                Stream::ComplaintStatus => 4,
                Stream::MarketResidue => 5,
                _ => 6,
            };
            (part, (env.event, t))
        })
        .into_iter();
    let mut next = || parts.next().expect("seven partitions");
    let (frames, camera_events, sales, complaints, statuses, residues) =
        (next(), next(), next(), next(), next(), next());
    let frames = domains::elevators::frames(frames);

    let [
        elevators_registered,
        elevators_online,
        elevators_unregistered,
    ] = domains::elevators::counters(frames.clone(), elevators, timeouts.elevator_ms, &part);
    let [cameras_registered, cameras_online] = domains::cameras::counters(
        camera_events.clone(),
        cameras,
        kitchens,
        timeouts.camera_ms,
        &part,
    );
    let joined = match (&conditions, refs, plan.incidents.is_empty()) {
        (Some(c), Some(refs), false) => Some(domains::incidents::joined(
            c.clone().concat(alerts_before),
            complaints.clone(),
            versions.clone(),
            (plan, refs),
        )),
        _ => None,
    };
    let market_minutes = domains::markets::minutes(sales.clone());
    let residue_days = domains::markets::residue_days(residues);
    let [received, duplicates, decisions, open] =
        domains::complaints::counters(complaints, statuses, versions, merchants, &plan.reference);
    let counters = differential_dataflow::collection::concatenate(
        scope,
        [
            fed_counters,
            elevators_registered,
            elevators_online,
            elevators_unregistered,
            cameras_registered,
            cameras_online,
            market_minutes,
            residue_days,
            received,
            duplicates,
            decisions,
            open,
        ],
    )
    .consolidate_stream();

    let series = series.then(|| {
        domains::elevators::series(frames, &part)
            .concat(domains::markets::series(sales, &part))
            .concat(domains::cameras::series(camera_events, &part))
    });

    let inputs = Inputs {
        events: events_in,
        counters: counters_in,
        elevators: elevators_in,
        cameras: cameras_in,
        kitchens: kitchens_in,
        merchants: merchants_in,
        registrations: registrations_in,
        rule_versions: rule_versions_in,
        alerts_before: alerts_before_in,
    };
    Built {
        inputs,
        counters,
        series,
        conditions,
        causes,
        joined,
    }
}
