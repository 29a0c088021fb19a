//! The steps `citywatch run` takes to put the service together, in the order of the data path:
//! what is in force (rules, reference data), the intake (logs fed again, then MQTT), the
//! alerts, where the dataflow's outputs go, the dataflow's sources, and the API's state.

use crate::settings::{RuleSource, Settings};
use anyhow::Context;
use control::kept_rules::KeptRules;
use dataflow::{ChannelSource, Reference, Source, SourceFactory, Stats};
use ingest::{DeadLetters, Ingest};
use model::time::now_ms;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Condition snapshots that may wait for the alert journal: one per tick (100 ms), so about
/// six seconds of a journal that has stalled before the dataflow waits for it.
const ALERTS_QUEUE: usize = 64;

/// The offices' jurisdictions, replaced with the reference data.
pub type Places = Arc<RwLock<Arc<dataflow::reference::Jurisdictions>>>;

/// What rules a start begins with.
pub struct StartingRules {
    /// The files' (or the built-in pack's), or, on the process that owns rule changes, as
    /// last changed through the API before a stop (docs/rules.md).
    pub rules: Arc<Vec<rules::Rule>>,
    /// Where changes through the API are kept (on that process).
    pub kept: Option<KeptRules>,
    /// The incident rules of the same files (or pack).
    pub incidents: Vec<rules::IncidentRule>,
}

/// The rules at start.
pub fn starting_rules(
    settings: &Settings,
    source: &RuleSource,
    leader: bool,
) -> anyhow::Result<StartingRules> {
    let base = settings.rules()?;
    let incidents = settings.incidents(&base)?;
    tracing::info!("{}", source.describe(base.len()));
    let kept = (source.any() && leader).then(|| KeptRules::new(&settings.data_dir, &base));
    let rules = match kept.as_ref().and_then(|k| k.load()) {
        Some(changed) => {
            tracing::info!(
                rules = changed.len(),
                "rules: as last changed through the API (rules-changed.json in the data directory)"
            );
            changed
        }
        None => base,
    };
    Ok(StartingRules {
        rules: Arc::new(rules),
        kept,
        incidents,
    })
}

/// The alert episodes of the journal that `incidents` may still join with complaints to come
/// (started within the longest time bound and the backlog before now): the dataflow keeps no
/// state for an alert that ended before a restart.
pub fn alerts_before(
    alerts: &alerts::Alerts,
    incidents: &[rules::IncidentRule],
    settings: &Settings,
) -> anyhow::Result<Arc<Vec<dataflow::Condition>>> {
    let Some(within) = incidents.iter().map(|i| i.within_ms).max() else {
        return Ok(Arc::default());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let from = now.saturating_sub(within + settings.max_backlog_ms);
    let starts = alerts.journal().alert_starts_since(from)?;
    Ok(Arc::new(
        starts
            .into_iter()
            .map(|(rule, group, since)| dataflow::Condition {
                rule,
                group,
                value_milli: 0,
                since,
                late_by_ms: 0,
            })
            .collect(),
    ))
}

/// How rules change at run time (with rules: through the API, and a directory's files): the
/// feed the dataflow takes each version from, and the manager everything else changes them
/// through.
pub fn rule_changes(
    source: &RuleSource,
    rules: &Arc<Vec<rules::Rule>>,
    kept: Option<KeptRules>,
) -> (dataflow::RuleFeed, Arc<control::RuleManager>) {
    if let RuleSource::None = source {
        let manager = control::RuleManager::new(rules.clone(), None);
        return (dataflow::RuleFeed::default(), Arc::new(manager));
    }
    let (tx, rx) = crossbeam_channel::bounded(16);
    let feed = dataflow::RuleFeed {
        initial: rules.clone(),
        updates: Some(rx),
        reference_updates: None,
        incidents: Arc::default(),
        alerts_before: Arc::default(),
    };
    let manager = control::RuleManager::new(rules.clone(), Some(tx));
    let manager = match kept {
        Some(kept) => manager.keeping(kept),
        None => manager,
    };
    (feed, Arc::new(manager))
}

/// Who hears of reference tables replaced through the API: the dataflow (through `feed`) and
/// the offices' jurisdictions (returned, for complaint routing). The alerts add themselves.
pub fn reference_changes(
    reference: &Reference,
    feed: &mut dataflow::RuleFeed,
) -> (Places, Vec<api::reference::Listener>) {
    let (tx, rx) = crossbeam_channel::unbounded::<Arc<Reference>>();
    feed.reference_updates = Some(rx);
    let places: Places = Arc::new(RwLock::new(Arc::new(reference.jurisdictions())));
    let to_dataflow: api::reference::Listener = Box::new(move |r| {
        if tx.send(r).is_err() {
            tracing::warn!("reference data changed after the dataflow stopped");
        }
    });
    let to_places: api::reference::Listener = {
        let places = places.clone();
        Box::new(move |r: Arc<Reference>| {
            *places.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(r.jurisdictions());
        })
    };
    (places, vec![to_dataflow, to_places])
}

/// The device messages in: MQTT, and before it what the logs kept across the last stop.
pub struct Intake {
    pub ingest: Ingest,
    /// What alerts want to know of events besides conditions, tapped from the intake.
    pub facts: Arc<alerts::Facts>,
    pub input_log: Option<Arc<ingest::input_log::InputLog>>,
    /// What the first worker feeds before live input, once the start has chosen its mark.
    pub replayed: Arc<Mutex<Option<Vec<dataflow::Ingested>>>>,
    pub durable: crate::checkpoints::Durable,
}

/// Opens the complaint log and the input log, starts MQTT, and opens what keeps the input
/// durable (the replay mark's accounting, a cluster's signals, checkpoints). Complaints come
/// back first, so handling deadlines survive a restart; then every message the alert journal
/// had not accounted for at the last stop (docs/operations.md, "What is durable when").
pub fn open_intake(
    settings: &Settings,
    cluster: Option<(usize, usize)>,
    deadletters: Arc<DeadLetters>,
    stats: Arc<Stats>,
) -> anyhow::Result<Intake> {
    let (complaint_log, logged) = ingest::ComplaintLog::open(
        &settings.data_dir.join("complaints"),
        now_ms(),
        dataflow::build::COMPLAINT_ID_RETENTION_MS,
    )
    .with_context(|| {
        format!(
            "opening the complaint log in {}",
            settings.data_dir.display()
        )
    })?;
    let input = crate::input::open(settings)?;
    let facts = Arc::new(alerts::Facts::default());
    let tap: ingest::Tap = {
        let facts = facts.clone();
        Arc::new(move |event, received_ms| facts.remember(event, received_ms))
    };
    let ingest = Ingest::start(
        &settings.mqtt_config(),
        deadletters,
        Some(Arc::new(complaint_log)),
        input.as_ref().map(|i| i.log.clone()),
        Some(tap),
    )?;
    let unaccounted = input
        .as_ref()
        .map(|i| crate::input::replayed(settings, &facts, &i.replay))
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            let seq = i.seq;
            (i, seq)
        });
    let logged = match &input {
        Some(i) => crate::input::paired(logged, &i.replay),
        None => logged.into_iter().map(|l| (l, None)).collect(),
    };
    let opened_mark = input.as_ref().map(|i| (i.log.ledger(), i.mark.clone()));
    let input_log = input.map(|i| i.log);
    let mut kept = crate::input::complaints_fed_again(settings, &facts, logged);
    if !kept.is_empty() {
        tracing::info!(
            messages = kept.len(),
            "complaint log: restoring handling deadlines"
        );
    }
    kept.extend(unaccounted);
    // What is fed again first goes by the replay mark the start chooses (with checkpoints in a
    // cluster, once every process has said which checkpoints it holds).
    let replayed = Arc::new(Mutex::new(None));
    let choose: crate::checkpoints::ChooseFn = {
        let replayed = replayed.clone();
        Box::new(move |mark| {
            *replayed.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(crate::input::by_mark(kept, mark));
        })
    };
    let durable = crate::checkpoints::open(settings, cluster, opened_mark, stats, choose);
    Ok(Intake {
        ingest,
        facts,
        input_log,
        replayed,
        durable,
    })
}

/// The alerts (with rules, on the process that owns them): journaled, then notified by
/// webhook and MQTT push; they hear reference changes for routing.
pub fn open_alerts(
    settings: &Settings,
    reference: &Arc<Reference>,
    intake: &Intake,
    places: &Places,
    deadletters: &Arc<DeadLetters>,
    listeners: &mut Vec<api::reference::Listener>,
) -> anyhow::Result<Arc<alerts::Alerts>> {
    let policies = alerts::Policies::load(settings.reference.as_deref())
        .map_err(|e| anyhow::anyhow!("escalation policies: {e}"))?;
    let alerts = alerts::Alerts::open_with(
        &settings.data_dir.join("alerts.db"),
        reference.clone(),
        alerts::Options {
            policies,
            evidence: Some(kitchen_evidence(intake.facts.evidence.clone())),
            labels: Some(complaint_labels(
                intake.facts.complaints.clone(),
                places.clone(),
            )),
            signed_acks: (!settings.accept_unsigned_acks).then(|| settings.mqtt_prefix.clone()),
            webhook_ca_file: settings.webhook_ca_file.clone(),
            ..alerts::Options::default()
        },
    )?;
    alerts.set_push(start_push(settings, alerts.clone(), deadletters.clone())?);
    let routing = alerts.clone();
    listeners.push(Box::new(move |r| routing.set_reference(r)));
    Ok(alerts)
}

/// Where the dataflow's outputs go, and what the API reads of them.
pub struct Outputs {
    pub dataflow: dataflow::Outputs,
    pub snapshots: tokio::sync::watch::Receiver<Arc<dataflow::Snapshot>>,
    pub conditions: tokio::sync::watch::Receiver<Arc<dataflow::ConditionsSnapshot>>,
    /// The alerts' journal behind its bounded queue (with alerts).
    pub alerts_stage: Option<Arc<alerts::Stage>>,
}

/// Counters go to the API (and InfluxDB); conditions to the alerts' stage, then the API (and
/// InfluxDB as transitions); what the journal has accounted for moves the replay mark (without
/// alerts: what the counters have counted).
pub fn outputs(
    settings: &Settings,
    intake: &Intake,
    cluster: bool,
    alerts: Option<&Arc<alerts::Alerts>>,
    sink: Option<&influx::InfluxSink>,
    manager: &Arc<control::RuleManager>,
) -> Outputs {
    let journaled = intake.durable.journaled.clone();
    let (snapshots, publish) = api::state::snapshot_channel();
    let (publish, series) = match sink {
        None => (publish, None),
        Some(sink) => {
            let (snapshot_points, windows) =
                influx::points::writers(sink.sender(), settings.influx_snapshot_interval_ms);
            let publish: dataflow::SnapshotFn = Arc::new(move |s: dataflow::Snapshot| {
                snapshot_points(&s);
                publish(s);
            });
            (publish, Some(windows))
        }
    };
    let (conditions, publish_conditions) = api::state::conditions_channel();
    let publish_conditions = match alerts {
        None => publish_conditions,
        Some(a) => journal_conditions(a, manager, journaled.clone(), publish_conditions),
    };
    let publish_conditions = match sink {
        None => publish_conditions,
        Some(sink) => transitions_to_influx(sink, manager, publish_conditions),
    };
    // Without alerts there is nothing to journal: the input is accounted for once counted.
    let publish: dataflow::SnapshotFn = match (alerts, journaled) {
        (None, Some(j)) => Arc::new(move |s: dataflow::Snapshot| {
            let as_of = s.as_of;
            publish(s);
            j(as_of);
        }),
        _ => publish,
    };
    // With alerts, the journal has a thread of its own behind a bounded queue: the dataflow
    // never waits on the disk under it, unless the queue is full.
    let alerts_stage =
        alerts.map(|_| alerts::Stage::start(ALERTS_QUEUE, publish_conditions.clone()));
    let publish_conditions = match &alerts_stage {
        Some(stage) => stage.sender(),
        None => publish_conditions,
    };
    let durable = &intake.durable;
    let dataflow = dataflow::Outputs {
        snapshots: publish,
        series,
        raw: settings.influx_raw_telemetry,
        conditions: Some(publish_conditions),
        checkpoints: durable.checkpoints.as_ref().map(|c| c.checkpoints.clone()),
        signals: durable.signals.clone(),
        // In a cluster the owner of the alerts hears the facts they need of every message,
        // whichever process received it: the dataflow carries them to its worker 0.
        facts: cluster.then(|| {
            let facts = intake.facts.clone();
            Arc::new(move |fact| facts.keep(fact)) as dataflow::build::FactsFn
        }),
    };
    Outputs {
        dataflow,
        snapshots,
        conditions,
        alerts_stage,
    }
}

/// Journals each snapshot's transitions, then says how far the journal is (the input before
/// it need not be fed again), then hands the snapshot on.
fn journal_conditions(
    alerts: &Arc<alerts::Alerts>,
    manager: &Arc<control::RuleManager>,
    journaled: Option<crate::checkpoints::JournaledFn>,
    next: dataflow::ConditionsFn,
) -> dataflow::ConditionsFn {
    let (a, manager) = (alerts.clone(), manager.clone());
    Arc::new(move |c: dataflow::ConditionsSnapshot| {
        match a.apply(&c, &manager.current()) {
            Ok(()) => {
                if let Some(j) = &journaled {
                    j(c.as_of);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot journal alert transitions"),
        }
        next(c);
    })
}

/// Every alert transition is also a point in InfluxDB, with its rule's severity.
fn transitions_to_influx(
    sink: &influx::InfluxSink,
    manager: &Arc<control::RuleManager>,
    next: dataflow::ConditionsFn,
) -> dataflow::ConditionsFn {
    let tx = sink.sender();
    let manager = manager.clone();
    Arc::new(move |c: dataflow::ConditionsSnapshot| {
        if !c.changes.is_empty() {
            let current = manager.current();
            let rules = c.latest_rules().unwrap_or(&current);
            let severity = |id: &str| {
                rules
                    .iter()
                    .find(|r| r.id == id)
                    .map_or("info", |r| r.severity.as_str())
            };
            tx.send(influx::points::transitions(&c, severity));
        }
        next(c);
    })
}

/// Each worker's input: live MQTT, and on this process's first worker what is fed again
/// before it.
pub fn sources(settings: &Settings, intake: &Intake) -> SourceFactory {
    let rx = intake.ingest.receiver();
    let handed = intake.ingest.handed_factory();
    let replayed = intake.replayed.clone();
    let workers = settings.workers.max(1);
    Arc::new(move |index, _| {
        let live = Box::new(ChannelSource::new(rx.clone(), Some(handed()))) as Box<dyn Source>;
        let first = (index % workers == 0)
            .then(|| replayed.lock().ok().and_then(|mut r| r.take()))
            .flatten();
        match first {
            Some(items) => Box::new(dataflow::ChainSource::new(
                Box::new(dataflow::VecSource::new(items)),
                live,
            )),
            None => live,
        }
    })
}

/// The MQTT connection for push notifications and the units' answers; a bad answer is
/// dead-lettered like bad device input.
fn start_push(
    settings: &Settings,
    alerts: Arc<alerts::Alerts>,
    deadletters: Arc<ingest::DeadLetters>,
) -> anyhow::Result<alerts::push::MqttPush> {
    let mqtt = settings.mqtt_config();
    let (host, port) = mqtt.endpoint()?;
    let config = alerts::push::PushConfig {
        host,
        port,
        client_id: format!("{}-notify", mqtt.client_id),
        username: mqtt.username.clone(),
        password: mqtt.password.clone(),
        prefix: mqtt.prefix.clone(),
        transport: mqtt.transport()?,
    };
    // Weak: the handler lives inside the push connection that `alerts` owns.
    let alerts = Arc::downgrade(&alerts);
    let on_ack: alerts::push::AckHandler = Arc::new(move |unit, topic, payload| {
        let Some(alerts) = alerts.upgrade() else {
            return false;
        };
        let refused = match alerts.unit_ack(unit, payload) {
            Ok(a) => {
                tracing::info!(alert = %a.id, unit, "unit answer applied");
                return true;
            }
            Err(alerts::UnitAckError::Store(e)) => {
                // Not journaled: left with the broker, which sends it again.
                tracing::error!(error = %e, "cannot journal a unit's answer");
                return false;
            }
            Err(alerts::UnitAckError::Payload(why)) => (model::Reason::WrongType, why),
            Err(alerts::UnitAckError::Refused(why)) => (model::Reason::OutOfRange, why),
            Err(alerts::UnitAckError::Unsigned(why)) => (model::Reason::Unauthorized, why),
        };
        let rejection = model::Rejection {
            reason: refused.0,
            field: None,
            message: format!("{topic}: {}", refused.1),
        };
        tracing::warn!(message = %rejection.message, "unit answer rejected");
        let received = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        deadletters.put(topic, payload, &rejection, received);
        true
    });
    Ok(alerts::push::MqttPush::start(config, on_ack))
}

/// An alert about a kitchen camera carries that camera's latest image of the detected kind
/// (or of any kind when the rule does not group by kind): `{"snapshot", "ts"}`.
fn kitchen_evidence(store: Arc<alerts::facts::Evidence>) -> alerts::EvidenceFn {
    Arc::new(move |labels| {
        let kitchen = labels.get("kitchen_id")?;
        let camera = labels.get("camera_id")?;
        let s = store.latest(kitchen, camera, labels.get("kind").map(String::as_str))?;
        Some(serde_json::json!({ "snapshot": s.snapshot, "ts": s.ts }))
    })
}

/// An alert keyed by a complaint id (a handling deadline) learns whom the complaint is about
/// and the office of the jurisdiction where it happened, so it is routed like the complaint:
/// to that office, else to the merchant's.
fn complaint_labels(store: Arc<alerts::facts::Complaints>, places: Places) -> alerts::LabelsFn {
    Arc::new(move |labels| {
        let Some(facts) = labels.get("complaint_id").and_then(|id| store.get(id)) else {
            return Vec::new();
        };
        let mut out = vec![
            ("merchant_name".to_owned(), facts.merchant_name),
            ("complaint_kind".to_owned(), facts.kind),
        ];
        out.extend(facts.merchant_id.map(|m| ("merchant_id".to_owned(), m)));
        let places = places
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let office = facts
            .place
            .and_then(|(lat, lon)| places.office_at(lat, lon));
        out.extend(office.map(|o| ("office".to_owned(), o.to_string())));
        out
    })
}
