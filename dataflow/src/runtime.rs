//! Running the dataflow: timely workers, each pulling from its source, placing events in
//! event time, and advancing the frontier.

mod ending;
use ending::{Ending, Stop};

use crate::build::{Built, Inputs, Plan, Timeouts, build};
use crate::checkpoint::{Checkpoints, Part};
use crate::conditions::{ConditionsFn, RuleVersions};
use crate::counters::{Counter, minute_of};
use crate::feed::{ClockMode, Frontier, Ingested, Pulled, Source};
use crate::operators::PublishConditions;
use crate::operators::PublishSnapshots;
use crate::operators::ReorderLimits;
use crate::operators::snapshot::SnapshotFn;
use crate::reference::Reference;
use crate::series::{Series, SeriesFn};
use crate::signals::{Relay, Signals};
use crate::stats::Stats;
use model::time::now_ms;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use timely::dataflow::operators::{Inspect, Probe};

/// Settings of the dataflow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataflowConfig {
    /// Timely worker threads.
    pub workers: usize,
    /// Granularity of differential timestamps, ms (default 100).
    pub tick_ms: u64,
    /// How far behind the newest time the frontier is held, ms (default 2000).
    pub lateness_ms: u64,
    /// What drives the frontier.
    pub clock: ClockMode,
    /// Offline after this long without a frame, ms (default 180 000).
    pub elevator_offline_after_ms: u64,
    /// Offline after this long without a heartbeat or detection, ms (default 180 000).
    pub camera_offline_after_ms: u64,
    /// An event up to this far behind the frontier is judged by the rules at its own time on
    /// its group's timeline; one further behind, at the frontier (default 900 000).
    pub max_backlog_ms: u64,
    /// The same for complaints (default 7 days: the longest complaint window of the default
    /// rules).
    pub complaint_max_backlog_ms: u64,
    /// A group whose own time jumps past its latest event by more than this keeps, for
    /// `reorder_ms`, what it takes to judge a late part of the gap in order (default 5000;
    /// 0: every event).
    pub reorder_gap_ms: u64,
    /// How long (frontier time) a group keeps it (default 5 000, from the latest gap or event put in order; 0: never).
    pub reorder_ms: u64,
    /// At most this many events (default 120).
    pub reorder_events: usize,
    /// How many matched events (or window items) an alert's explanation keeps.
    pub explain_events: usize,
    /// Events a worker takes from its source per step (default 4096).
    pub batch: usize,
    /// This process's place in a cluster of processes (none: one process).
    pub cluster: Option<ClusterConfig>,
}

/// A timely cluster: every process runs `workers` threads; records cross processes over TCP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This process's index, from 0.
    pub process: usize,
    /// Where every process's workers listen (`host:port`), in index order.
    pub addresses: Vec<String>,
}

impl ClusterConfig {
    /// How many processes.
    pub fn processes(&self) -> usize {
        self.addresses.len()
    }
}

impl Default for DataflowConfig {
    fn default() -> Self {
        DataflowConfig {
            workers: 2,
            tick_ms: 100,
            lateness_ms: 2000,
            clock: ClockMode::Wall,
            elevator_offline_after_ms: 180_000,
            camera_offline_after_ms: 180_000,
            max_backlog_ms: 900_000,
            complaint_max_backlog_ms: 7 * 86_400_000,
            reorder_gap_ms: 5_000,
            reorder_ms: 5_000,
            reorder_events: 120,
            explain_events: 16,
            batch: 4096,
            cluster: None,
        }
    }
}

/// Why the dataflow could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Timely refused the configuration.
    #[error("starting timely workers: {0}")]
    Timely(String),
}

/// Where the dataflow's results go.
#[derive(Clone)]
pub struct Outputs {
    /// Every closed-time snapshot of the counters.
    pub snapshots: SnapshotFn,
    /// Closed time-series windows, when wanted (off: the window operators are not built).
    pub series: Option<SeriesFn>,
    /// Also every raw event, as `Series::Raw` (needs `series`).
    pub raw: bool,
    /// Every closed-time set of active conditions (when there are rules).
    pub conditions: Option<ConditionsFn>,
    /// Where the operators' state goes at each checkpoint, and what a start restores (none:
    /// no checkpoints; a process of a cluster takes none).
    pub checkpoints: Option<Arc<Checkpoints>>,
    /// Signals between the processes of a cluster (every process of a cluster has them or
    /// none does: each builds the same dataflows).
    pub signals: Option<Arc<Signals>>,
    /// In a cluster: where worker 0 hears every process's facts for the alerts (every
    /// process of a cluster has it or none does).
    pub facts: Option<crate::build::FactsFn>,
}

/// The rules: those in force at start, and where changes come from.
#[derive(Default, Clone)]
pub struct RuleFeed {
    /// The rule set at start.
    pub initial: Arc<Vec<rules::Rule>>,
    /// New rule sets, each replacing the previous one from the frontier at which worker 0
    /// takes it (none: the rules never change).
    pub updates: Option<crossbeam_channel::Receiver<Arc<Vec<rules::Rule>>>>,
    /// New reference data, each replacing the previous from the frontier at which worker 0
    /// takes it (none: the reference data never changes).
    pub reference_updates: Option<crossbeam_channel::Receiver<Arc<Reference>>>,
    /// Incident rules (fixed for the run).
    pub incidents: Arc<Vec<rules::IncidentRule>>,
    /// Alert episodes journaled before this start that incident rules may still join with
    /// complaints to come (an alert that ended before a restart is in no restored state).
    pub alerts_before: Arc<Vec<crate::conditions::Condition>>,
}

impl RuleFeed {
    /// Whether to build the rule operators at all.
    pub fn is_on(&self) -> bool {
        !self.initial.is_empty() || self.updates.is_some()
    }
}

/// Builds a worker's source from (worker index, number of workers).
pub type SourceFactory = Arc<dyn Fn(usize, usize) -> Box<dyn Source> + Send + Sync>;

/// A running dataflow.
pub struct Running {
    guards: timely::communication::WorkerGuards<()>,
    stop: Arc<AtomicBool>,
}

impl Running {
    /// Asks the workers to stop once their sources are drained.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for every worker to finish.
    pub fn join(self) {
        for r in self.guards.join() {
            if let Err(e) = r {
                tracing::error!(error = %e, "dataflow worker failed");
            }
        }
    }
}

/// Starts the workers. Each runs until its source is `Done` (and, in event-clock mode, the
/// last events are closed and published) or [`Running::stop`] is called and the source is
/// drained.
pub fn start(
    config: DataflowConfig,
    reference: Arc<Reference>,
    rules: RuleFeed,
    sources: SourceFactory,
    outputs: Outputs,
    stats: Arc<Stats>,
) -> Result<Running, RuntimeError> {
    let Outputs {
        snapshots,
        series,
        raw,
        conditions,
        checkpoints,
        signals,
        facts,
    } = outputs;
    let raw = raw && series.is_some();
    let guarded = Guarded::new(snapshots, conditions, &rules, &stats);
    let conditions_on = guarded.conditions.is_some() && rules.is_on();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = stop.clone();
    stats.set_workers(config.workers.max(1));
    let drained = Arc::new(AtomicUsize::new(0));
    let workers = config.workers.max(1);
    let timely_config = timely_config(&config, workers);
    let in_cluster = matches!(&config.cluster, Some(c) if c.processes() > 1);
    if let (Some(ck), Some(s), Some(c)) = (&checkpoints, &signals, &config.cluster)
        && in_cluster
    {
        ck.join_cluster(c.process, c.processes(), s.clone());
    }
    // Blocks until every process of a cluster is connected.
    let guards = timely::execute(timely_config, move |worker| {
        let index = worker.index();
        // This process's own workers: the stats and the end-of-replay barrier are local.
        let local = index % workers;
        let mut relay = signals
            .as_ref()
            .map(|s| Relay::build(worker, s, checkpoints.clone(), local == 0));
        if let Some(ck) = &checkpoints {
            restore(worker, ck, relay.as_mut(), local == 0);
        }
        let mut source = sources(index, worker.peers());
        let timeouts = timeouts(&config);
        let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let plan = Plan {
                timeouts,
                series: series.is_some(),
                rules_on: rules.is_on(),
                reference: reference.clone(),
                stats: stats.clone(),
                checkpoints: checkpoints.clone(),
                incidents: rules.incidents.clone(),
                facts: facts.clone(),
            };
            let sinks = Sinks {
                snapshots: guarded.snapshots.clone(),
                conditions: guarded.conditions.clone(),
                series: series.clone(),
            };
            build_with_sinks(scope, &plan, sinks, index == 0)
        });
        let mut in_force = InForce {
            rules: rules.initial.clone(),
            reference: reference.clone(),
            registered: false,
        };
        if index == 0 {
            in_force.send_first(&mut inputs, rules.is_on() || in_cluster, in_cluster);
            for c in rules.alerts_before.iter() {
                inputs.alerts_before.insert(c.clone());
            }
        }
        let mut frontier = Frontier::new(config.tick_ms, config.lateness_ms, config.clock);
        let ck = checkpoints.clone();
        if let Some(ck) = &ck {
            ck.ready();
            // Restored state is as of its checkpoint: input starts there.
            if let Some(at) = ck.restored_at() {
                let _ = advance(&mut frontier, &mut inputs, Some(ck), local, at, &stats);
            }
        }
        let ending = Ending {
            ck: ck.as_ref(),
            stats: &stats,
            probe: &probe,
            closed: &guarded.closed,
            local,
            conditions_on,
            in_cluster,
            publishes_here: index < workers,
            lateness_ms: config.lateness_ms,
        };
        stats.worker_started();
        let mut feeder = Feeder::new(config.batch);
        // Set when a stop is first seen with the source drained: the time past every event
        // taken, and when the stop began.
        let mut stopping_at: Option<(u64, std::time::Instant)> = None;
        loop {
            // The frontier moves before the next batch is placed: on the wall clock, a backlog
            // that waited in the queue while the workers started is behind the clock's
            // frontier from the first batch on, not placed at start-up's time as on time.
            // A source giving what a log kept holds this worker's frontier (and so everyone's)
            // until it is through, so each of those events enters at its own time.
            if !source.replaying()
                && let Some(t) = frontier.target(stats.newest_ms(), now_ms())
                && let Some(t) = advance(&mut frontier, &mut inputs, ck.as_ref(), local, t, &stats)
                && index == 0
            {
                in_force.register_once(&mut inputs, t);
            }
            let raw = series.as_ref().filter(|_| raw);
            let pulled = feeder.pull(source.as_mut(), &frontier, &mut inputs, raw, &stats);
            if let Some(ck) = ck.as_ref().filter(|_| index == 0) {
                ck.maybe_ask();
                ck.grant();
            }
            if let Some(r) = relay.as_mut() {
                r.pump();
            }
            if index == 0 {
                in_force.take_changes(&rules, &mut inputs, frontier.epoch(), &guarded.versions);
            }
            let stopping = stop_w.load(Ordering::SeqCst);
            match pulled {
                Pulled::Data => {
                    worker.step();
                }
                Pulled::Idle if stopping && config.clock == ClockMode::Event => break,
                Pulled::Idle if stopping => {
                    match ending.stop_step(worker, &mut frontier, &mut inputs, &mut stopping_at) {
                        Stop::Waiting => continue,
                        Stop::Done => break,
                    }
                }
                Pulled::Idle => {
                    worker.step_or_park(Some(Duration::from_millis(2)));
                }
                Pulled::Done => break,
            }
        }
        if config.clock == ClockMode::Event {
            ending.finish_replay(worker, &mut frontier, &mut inputs, &drained, workers);
        }
    })
    .map_err(RuntimeError::Timely)?;
    Ok(Running { guards, stop })
}

/// The sinks as the workers call them: nothing is published once the inputs are closed
/// (closing them would fire every scheduled retraction and timer — window ends, liveness
/// timeouts, absence clocks — at once), and each conditions' snapshot names the rule sets its
/// changes were computed under, so that alerts use exactly those.
struct Guarded {
    snapshots: SnapshotFn,
    conditions: Option<ConditionsFn>,
    closed: Arc<AtomicBool>,
    /// The rule sets worker 0 puts in force.
    versions: Arc<RuleVersions>,
}

impl Guarded {
    fn new(
        snapshots: SnapshotFn,
        conditions: Option<ConditionsFn>,
        rules: &RuleFeed,
        stats: &Arc<Stats>,
    ) -> Guarded {
        let closed = Arc::new(AtomicBool::new(false));
        let versions = Arc::new(RuleVersions::default());
        versions.activate(0, rules.initial.clone());
        // A stop waits until the conditions at its end are handed on (journaled, with alerts).
        let conditions = conditions.map(|p| {
            let (closed, stats, versions) = (closed.clone(), stats.clone(), versions.clone());
            Arc::new(move |mut c: crate::ConditionsSnapshot| {
                if !closed.load(Ordering::SeqCst) {
                    let as_of = c.as_of;
                    c.rules = versions.for_snapshot(as_of);
                    p(c);
                    stats.set_conditions_as_of(as_of);
                }
            }) as ConditionsFn
        });
        let snapshots: SnapshotFn = {
            let (closed, stats) = (closed.clone(), stats.clone());
            Arc::new(move |s: crate::Snapshot| {
                if !closed.load(Ordering::SeqCst) {
                    stats.set_as_of(s.as_of);
                    snapshots(s);
                }
            })
        };
        Guarded {
            snapshots,
            conditions,
            closed,
            versions,
        }
    }
}

/// Timely's configuration: `workers` threads, in a cluster of processes or in this one.
fn timely_config(config: &DataflowConfig, workers: usize) -> timely::Config {
    match &config.cluster {
        Some(c) if c.processes() > 1 => timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: workers,
                process: c.process,
                addresses: c.addresses.clone(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        },
        _ => timely::Config::process(workers),
    }
}

/// The operators' timeouts and limits from the settings.
fn timeouts(config: &DataflowConfig) -> Timeouts {
    Timeouts {
        elevator_ms: config.elevator_offline_after_ms,
        camera_ms: config.camera_offline_after_ms,
        max_backlog_ms: config.max_backlog_ms,
        complaint_max_backlog_ms: config.complaint_max_backlog_ms,
        reorder: ReorderLimits {
            gap_ms: config.reorder_gap_ms,
            keep_ms: config.reorder_ms,
            events: config.reorder_events,
        },
        explain_events: config.explain_events,
    }
}

/// Where a worker's outputs go.
struct Sinks {
    snapshots: SnapshotFn,
    conditions: Option<ConditionsFn>,
    series: Option<SeriesFn>,
}

/// Builds a worker's dataflow and attaches its sinks (published on the first worker, `first`):
/// its inputs, and one probe for the counters and the conditions, so that a clean stop waits
/// until both are published up to everything taken.
fn build_with_sinks<'scope>(
    scope: timely::dataflow::Scope<'scope, u64>,
    plan: &Plan,
    sinks: Sinks,
    first: bool,
) -> (Inputs, timely::dataflow::ProbeHandle<u64>) {
    let Built {
        inputs,
        counters,
        series: windows,
        conditions,
        causes,
        joined,
    } = build(scope, plan);
    // One probe for the counters and the conditions: a clean stop waits until both
    // are published up to everything taken.
    let probe = timely::dataflow::ProbeHandle::new();
    if let (Some(conditions), Some(causes), Some(publish)) = (conditions, causes, sinks.conditions)
    {
        let conditions =
            differential_dataflow::AsCollection::as_collection(conditions.inner.probe_with(&probe));
        conditions.publish_conditions(causes, joined, publish, first);
    }
    if let (Some(windows), Some(series)) = (windows, sinks.series) {
        windows.inspect_core(move |event| {
            if let Ok((_, batch)) = event
                && !batch.is_empty()
            {
                series(batch.clone());
            }
        });
    }
    let counters = counters.inner.probe_with(&probe);
    differential_dataflow::AsCollection::as_collection(counters).publish_snapshots(
        sinks.snapshots,
        first,
        first
            .then(|| Part::new(plan.checkpoints.as_ref(), "counters", 0))
            .flatten(),
    );
    (inputs, probe)
}

/// The rules and reference data in force on the first worker.
struct InForce {
    rules: Arc<Vec<rules::Rule>>,
    reference: Arc<Reference>,
    /// Whether the absence rules' devices are registered.
    registered: bool,
}

impl InForce {
    /// Registers the absence rules' devices at the first frontier: they count silence from
    /// start-up.
    fn register_once(&mut self, inputs: &mut Inputs, t: u64) {
        if !self.registered {
            self.registered = true;
            register_devices(inputs, &self.rules, &self.reference, t);
        }
    }

    /// Worker 0 loads the reference data and, when rules are judged (or in a cluster), puts
    /// the first rule-set version in force at 0. In a cluster every process judges by process
    /// 0's reference data, whatever its own files say.
    fn send_first(&self, inputs: &mut Inputs, version: bool, in_cluster: bool) {
        inputs.load_reference(&self.reference);
        if !version {
            return;
        }
        let first = crate::operators::conditions::RuleSetVersion::of(0, &self.rules);
        let first = if in_cluster {
            first.with_reference(self.reference.clone())
        } else {
            first
        };
        inputs.rule_versions.send(first);
    }

    /// Takes a new rule set or reference data from the feed, in force from input time `at`:
    /// events at or after it are judged by them; conditions of changed rules stop there.
    fn take_changes(
        &mut self,
        feed: &RuleFeed,
        inputs: &mut Inputs,
        at: u64,
        versions: &RuleVersions,
    ) {
        if let Some(updates) = feed.updates.as_ref()
            && let Ok(next) = updates.try_recv()
        {
            inputs.set_rules(at, &next, &self.rules, &self.reference);
            versions.activate(at, next.clone());
            tracing::info!(rules = next.len(), at, "rule set changed");
            self.rules = next;
        }
        if let Some(updates) = feed.reference_updates.as_ref()
            && let Ok(next) = updates.try_recv()
        {
            inputs.set_reference(at, &self.rules, &self.reference, next.clone());
            tracing::info!(
                elevators = next.elevators.len(),
                cameras = next.cameras.len(),
                at,
                "reference data changed"
            );
            self.reference = next;
        }
    }
}

/// Registers every device of the registries the absence rules watch, at time `t`.
pub fn register_devices(inputs: &mut Inputs, rules: &[rules::Rule], reference: &Reference, t: u64) {
    inputs.register(rules, reference, t);
}

/// Restores the checkpoint this process (in a cluster: every process) holds, before the
/// worker builds its dataflow: in a cluster the processes first tell each other what they
/// hold, through the signals.
fn restore(
    worker: &mut timely::worker::Worker,
    ck: &Checkpoints,
    relay: Option<&mut Relay>,
    first_here: bool,
) {
    let Some(relay) = relay else {
        ck.restore(&Default::default());
        return;
    };
    if first_here {
        ck.tell_holds();
    }
    loop {
        relay.pump();
        if let Some(holds) = ck.holds() {
            ck.restore(&holds);
            return;
        }
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
}

/// Moves a worker's input to `t`, not past a checkpoint asked for; the time it moved to, if
/// it moved.
fn advance(
    frontier: &mut Frontier,
    inputs: &mut Inputs,
    ck: Option<&Arc<Checkpoints>>,
    worker: usize,
    t: u64,
    stats: &Stats,
) -> Option<u64> {
    let t = ck.map_or(t, |c| c.allow(worker, t));
    (t > frontier.epoch()).then(|| {
        frontier.advance(t);
        inputs.advance_to(t);
        stats.set_epoch(worker, t);
        t
    })
}

/// Whether the counters (and the conditions, when on) are published up to `end`.
fn published(stats: &Stats, end: u64, conditions_on: bool) -> bool {
    stats.as_of_ms() >= end && (!conditions_on || stats.conditions_as_of_ms() >= end)
}

/// Where the input ends at a stop: past every event taken, and with checkpoints, at the time
/// of the last checkpoint.
fn final_time(ck: Option<&Arc<Checkpoints>>, end: u64) -> u64 {
    ck.map_or(end, |c| c.ask_final(end))
}

/// Places events in event time and aggregates the feeder's own counters per batch, so that
/// message rates cost one differential update per (stream, minute) per batch, not per event.
struct Feeder {
    counts: foldhash::HashMap<(Counter, u64), isize>,
    /// Up to this many events are taken from the source at a time.
    max: usize,
    batch: Vec<Ingested>,
    handed: Vec<(u64, u64)>,
}

impl Feeder {
    fn new(max: usize) -> Feeder {
        Feeder {
            counts: foldhash::HashMap::default(),
            max,
            batch: Vec::with_capacity(max),
            handed: Vec::with_capacity(max),
        }
    }

    /// Takes a batch from the source into the dataflow's input (and its raw points to
    /// `raw`), and tells the source which of its events are in.
    fn pull(
        &mut self,
        source: &mut dyn Source,
        frontier: &Frontier,
        inputs: &mut Inputs,
        raw: Option<&SeriesFn>,
        stats: &Stats,
    ) -> Pulled {
        let pulled = source.pull(&mut self.batch, self.max);
        if self.batch.is_empty() {
            return pulled;
        }
        if let Some(series) = raw {
            series(
                self.batch
                    .iter()
                    .map(|i| Series::Raw(i.envelope.clone()))
                    .collect(),
            );
        }
        self.feed(frontier, inputs, stats);
        inputs.flush();
        if !self.handed.is_empty() {
            source.handed(&self.handed);
            self.handed.clear();
        }
        pulled
    }

    fn feed(&mut self, frontier: &Frontier, inputs: &mut Inputs, stats: &Stats) {
        let mut newest = 0;
        let (mut late, mut untimed) = (0, 0);
        let n = self.batch.len();
        let mut replayed = 0;
        for item in self.batch.drain(..) {
            let env = item.envelope;
            let stream = env.event.stream();
            let (t, is_late) = frontier.place(env.time_ms);
            if let Some(seq) = item.seq {
                self.handed.push((seq, t));
            }
            if env.replayed {
                // Counted when it was received: it only restores state now.
                replayed += 1;
                inputs.events.send((env, t));
                continue;
            }
            newest = newest.max(env.time_ms);
            let minute = minute_of(env.time_ms);
            let messages = Counter::Messages { stream, minute };
            let until = messages.retracted_at().unwrap_or(t).max(t);
            *self.counts.entry((messages.clone(), t)).or_default() += 1;
            *self.counts.entry((messages, until)).or_default() -= 1;
            if is_late {
                late += 1;
                *self
                    .counts
                    .entry((Counter::Late { stream }, t))
                    .or_default() += 1;
            }
            if env.untimed {
                untimed += 1;
                *self
                    .counts
                    .entry((Counter::Untimed { stream }, t))
                    .or_default() += 1;
            }
            inputs.events.send((env, t));
        }
        for ((counter, t), d) in self.counts.drain() {
            if d != 0 {
                inputs.counters.update_at(counter, t, d);
            }
        }
        stats.record_batch((n - replayed) as u64, late, untimed, newest);
    }
}
