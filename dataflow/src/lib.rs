//! The timely/differential computation of citywatch.
//!
//! Second step of the data path (`ingest → dataflow → alerts → notifications`): typed events
//! from `ingest` enter timely workers at their event time; per-device logic runs in timely
//! operators with small state, and only changes enter differential collections, joined with
//! the reference data. The output is a stream of consistent counter snapshots, one per
//! closed frontier time, served by `api`, and the conditions of the rules, each snapshot with
//! the rule sets its changes were computed under, handed to the alerts' queue.
//!
//! # Layout
//! - [`feed`]: sources of events and the event-time frontier (lateness, late events).
//! - [`build`]: the dataflow graph and its inputs; each domain's counters and series in
//!   `domains/` (elevators, cameras, markets, complaints).
//! - [`checkpoint`]: the operators' state taken at one frontier, and restored at a start (in
//!   a cluster, one cut through every process).
//! - [`signals`]: what the processes of a cluster tell each other beside the data (the alert
//!   journal's progress, checkpoints asked for, taken, written and named by each mark).
//! - [`operators`]: timely operators (liveness, snapshot publishing).
//! - [`conditions`], [`reference`]: re-exported from `control`, which owns what is in force
//!   (the reference data, the conditions' snapshots and the rule sets they name).
//! - [`counters`]: counter keys, snapshots and their JSON view.
//! - [`explain`]: a rule's expressions for one event, each sub-expression with its value.
//! - [`offline`]: the rules run outside the service: rule test files (`citywatch rules
//!   test`) and backtests over a recording (`citywatch rules backtest`).
//! - [`runtime`]: starting and stopping the workers.
//! - [`series`]: time series emitted as windows close (for the InfluxDB sink).
//! - [`stats`]: process-wide statistics for `/metrics`.

pub mod build;
pub use control::{conditions, reference};
pub mod checkpoint;
pub mod counters;
mod domains;
pub mod explain;
pub mod feed;
pub mod offline;
pub mod operators;
pub mod runtime;
pub mod series;
pub mod signals;
pub mod stats;

pub use conditions::{Active, Condition, ConditionsFn, ConditionsSnapshot};
pub use counters::{Counter, Snapshot, SnapshotView};
pub use feed::{ChainSource, ChannelSource, ClockMode, Ingested, Pulled, Source, VecSource};
pub use operators::snapshot::SnapshotFn;
pub use reference::Reference;
pub use runtime::{
    ClusterConfig, DataflowConfig, Outputs, RuleFeed, Running, SourceFactory, start,
};
pub use series::{Series, SeriesFn};
pub use signals::{Signal, Signals};
pub use stats::Stats;
