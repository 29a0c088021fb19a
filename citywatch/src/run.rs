//! `citywatch run`: the service.

use crate::settings::Settings;
use anyhow::Context;
use dataflow::{ChannelSource, Source, SourceFactory, Stats};
use ingest::{DeadLetters, Ingest};
use model::time::now_ms;
use std::sync::Arc;
use std::time::Duration;

/// How long shutdown waits for HTTP clients (event streams) to leave.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// How long shutdown waits for the last acknowledgements.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Condition snapshots that may wait for the alert journal: one per tick (100 ms), so about
/// six seconds of a journal that has stalled before the dataflow waits for it.
const ALERTS_QUEUE: usize = 64;

/// What `citywatch demo` adds to `run`: a simulated district publishing to the broker.
pub struct Demo {
    pub seed: u64,
    /// Seconds between injected incidents.
    pub incident_every: u64,
}

pub fn run(settings: Settings, demo: Option<Demo>) -> anyhow::Result<()> {
    exit_when_the_dataflow_fails();
    rules::limits::set(settings.rule_limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let result = runtime.block_on(serve(settings, demo));
    // A cluster's workers may still wait for the other processes: they do not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(settings: Settings, demo: Option<Demo>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    let reference = Arc::new(settings.reference()?);
    let leader = settings.is_leader();
    let rule_source = settings.rule_source();
    let base = settings.rules()?;
    tracing::info!("{}", rule_source.describe(base.len()));
    // Changes made through the API before a stop are in force again (docs/rules.md).
    let kept = (rule_source.any() && leader)
        .then(|| control::kept_rules::KeptRules::new(&settings.data_dir, &base));
    let rules = Arc::new(match kept.as_ref().and_then(|k| k.load()) {
        Some(changed) => {
            tracing::info!(
                rules = changed.len(),
                "rules: as last changed through the API (rules-changed.json in the data directory)"
            );
            changed
        }
        None => base,
    });
    // In a cluster, process 0 owns the alerts, the API and the changes of rules and reference
    // data; the others ingest their share and run their workers (docs/cluster.md).
    let cluster = settings.cluster()?;
    // With rules, they can change at run time (API; a directory's file changes too).
    let (mut rule_feed, rule_manager) = match rule_source {
        crate::settings::RuleSource::None => (
            dataflow::RuleFeed::default(),
            Arc::new(control::RuleManager::new(rules.clone(), None)),
        ),
        _ => {
            let (tx, rx) = crossbeam_channel::bounded(16);
            (
                dataflow::RuleFeed {
                    initial: rules.clone(),
                    updates: Some(rx),
                    reference_updates: None,
                },
                Arc::new(match kept {
                    Some(kept) => control::RuleManager::new(rules.clone(), Some(tx)).keeping(kept),
                    None => control::RuleManager::new(rules.clone(), Some(tx)),
                }),
            )
        }
    };
    // Reference tables replaced through the API reach the dataflow (and alert routing, and
    // complaint labels, below).
    let (reference_tx, reference_rx) = crossbeam_channel::unbounded::<Arc<dataflow::Reference>>();
    rule_feed.reference_updates = Some(reference_rx);
    let places = Arc::new(std::sync::RwLock::new(Arc::new(reference.jurisdictions())));
    let mut reference_listeners: Vec<api::reference::Listener> = vec![
        Box::new(move |r| {
            if reference_tx.send(r).is_err() {
                tracing::warn!("reference data changed after the dataflow stopped");
            }
        }),
        {
            let places = places.clone();
            Box::new(move |r: Arc<dataflow::Reference>| {
                *places
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Arc::new(r.jurisdictions());
            })
        },
    ];
    let deadletters = Arc::new(DeadLetters::open(
        &settings.data_dir.join("deadletter"),
        settings.deadletter_max_bytes,
    )?);
    let listener = tokio::net::TcpListener::bind(settings.http)
        .await
        .with_context(|| format!("binding HTTP on {}", settings.http))?;
    let http_addr = listener.local_addr()?;

    // Complaints and their status updates, kept on disk: fed again first, so that handling
    // deadlines and open complaints survive a restart.
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
    // Every device message, on disk before it is acknowledged; what the alert journal did not
    // account for before the last stop is fed again first (docs/operations.md, "What is
    // durable when").
    let input = crate::input::open(&settings)?;
    let ingest = Ingest::start(
        &settings.mqtt_config(),
        deadletters.clone(),
        Some(Arc::new(complaint_log)),
        input.as_ref().map(|i| i.log.clone()),
    )?;
    let unaccounted = input
        .as_ref()
        .map(|i| crate::input::replayed(&settings, &ingest, &i.replay))
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
    let mut kept = crate::input::complaints_fed_again(&settings, &ingest, logged);
    if !kept.is_empty() {
        tracing::info!(
            messages = kept.len(),
            "complaint log: restoring handling deadlines"
        );
    }
    kept.extend(unaccounted);
    // What is fed again first goes by the replay mark the start chooses (with checkpoints in a
    // cluster, once every process has said which checkpoints it holds).
    let replayed = Arc::new(std::sync::Mutex::new(None));
    let choose: crate::checkpoints::ChooseFn = {
        let replayed = replayed.clone();
        Box::new(move |mark| {
            *replayed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(crate::input::by_mark(kept, mark));
        })
    };
    let stats = Arc::new(Stats::default());
    // Where the replay mark may go, the signals of a cluster, and the checkpoints of the
    // dataflow's state (with the input log only: a restart restores one and feeds the log
    // again from its time).
    let durable = crate::checkpoints::open(
        &settings,
        cluster.as_ref().map(|c| (c.process, c.addresses.len())),
        opened_mark,
        stats.clone(),
        choose,
    );
    let (ledger, journaled, checkpoints) =
        (durable.accounting, durable.journaled, durable.checkpoints);
    let (snapshots, publish) = api::state::snapshot_channel();
    let sink =
        influx::InfluxSink::start(&settings.influx_config(), &settings.data_dir.join("influx"))?;
    let (publish, series) = match &sink {
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
    // With rules, conditions become alerts: journaled, then notified.
    let alerts = match rule_source.any() {
        true if leader => {
            let policies = alerts::Policies::load(settings.reference.as_deref())
                .map_err(|e| anyhow::anyhow!("escalation policies: {e}"))?;
            let alerts = alerts::Alerts::open_with(
                &settings.data_dir.join("alerts.db"),
                reference.clone(),
                alerts::Options {
                    policies,
                    evidence: Some(kitchen_evidence(ingest.evidence())),
                    labels: Some(complaint_labels(ingest.complaints(), places.clone())),
                    signed_acks: (!settings.accept_unsigned_acks)
                        .then(|| settings.mqtt_prefix.clone()),
                    webhook_ca_file: settings.webhook_ca_file.clone(),
                    ..alerts::Options::default()
                },
            )?;
            alerts.set_push(start_push(&settings, alerts.clone(), deadletters.clone())?);
            let routing = alerts.clone();
            reference_listeners.push(Box::new(move |r| routing.set_reference(r)));
            Some(alerts)
        }
        _ => None,
    };
    let publish_conditions: dataflow::ConditionsFn = match &alerts {
        None => publish_conditions,
        Some(a) => {
            let (a, manager) = (a.clone(), rule_manager.clone());
            let journaled = journaled.clone();
            Arc::new(move |c: dataflow::ConditionsSnapshot| {
                match a.apply(&c, &manager.current()) {
                    // Journaled: the input before `as_of` need not be replayed any more.
                    Ok(()) => {
                        if let Some(j) = &journaled {
                            j(c.as_of);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot journal alert transitions"),
                }
                publish_conditions(c);
            })
        }
    };
    // With the sink on, every alert transition is also a point.
    let publish_conditions: dataflow::ConditionsFn = match &sink {
        None => publish_conditions,
        Some(sink) => {
            let tx = sink.sender();
            let manager = rule_manager.clone();
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
                publish_conditions(c);
            })
        }
    };
    // Without alerts there is nothing to journal: the input is accounted for once counted.
    let publish: dataflow::SnapshotFn = match (&alerts, &journaled) {
        (None, Some(j)) => {
            let j = j.clone();
            Arc::new(move |s: dataflow::Snapshot| {
                let as_of = s.as_of;
                publish(s);
                j(as_of);
            })
        }
        _ => publish,
    };
    // With alerts, the journal has a thread of its own behind a bounded queue: the dataflow
    // never waits on the disk under it, unless the queue is full.
    let alerts_stage = alerts
        .as_ref()
        .map(|_| alerts::Stage::start(ALERTS_QUEUE, publish_conditions.clone()));
    let publish_conditions = match &alerts_stage {
        Some(stage) => stage.sender(),
        None => publish_conditions,
    };
    let outputs = dataflow::Outputs {
        snapshots: publish,
        series,
        raw: settings.influx_raw_telemetry,
        conditions: Some(publish_conditions),
        checkpoints: checkpoints.as_ref().map(|c| c.checkpoints.clone()),
        signals: durable.signals,
        // In a cluster the owner of the alerts hears the facts they need of every message,
        // whichever process received it: the dataflow carries them to its worker 0.
        facts: cluster
            .as_ref()
            .map(|_| Arc::new(ingest.fact_keeper()) as dataflow::build::FactsFn),
    };
    let rx = ingest.receiver();
    let handed = ingest.handed_factory();
    let workers = settings.workers.max(1);
    let sources: SourceFactory = Arc::new(move |index, _| {
        let live = Box::new(ChannelSource::new(rx.clone(), Some(handed()))) as Box<dyn Source>;
        // This process's first worker feeds the complaint log before live input.
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
    });
    // In a cluster this waits until every process is connected: the API answers meanwhile.
    let starting = {
        let (config, reference, stats) =
            (settings.dataflow_config(), reference.clone(), stats.clone());
        tokio::task::spawn_blocking(move || {
            dataflow::start(config, reference, rule_feed, sources, outputs, stats)
        })
    };

    let state = api::AppState {
        snapshots,
        deadletters,
        ingest: ingest.stats(),
        dataflow: stats,
        influx: sink.as_ref().map(|s| s.stats()),
        conditions,
        rules: rule_manager.clone(),
        alerts: alerts.clone(),
        alerts_queue: alerts_stage.as_ref().map(|s| s.stats()),
        auth: Arc::new(api::auth::Auth::new(settings.auth, &settings.data_dir)),
        reference: Arc::new(api::reference::ReferenceManager::new(
            reference.clone(),
            Some(settings.reference_changes_dir()),
            reference_listeners,
        )),
        history: Default::default(),
        cluster: cluster.as_ref().map(|c| api::state::ClusterView {
            processes: c.addresses.len(),
            index: c.process,
            leader_url: c.api_urls.first().cloned().flatten(),
        }),
        complaints: Some(ingest.complaints()),
        residue_tests: Some(ingest.residue_tests()),
    };
    if demo.is_some() && settings.auth != api::auth::AuthMode::Off {
        let token = state
            .auth
            .create("demo-operator", &api::auth::Role::Operator)
            .map_err(|e| anyhow::anyhow!("creating the demo's operator token: {e}"))?;
        tracing::info!(
            "demo: the control room, signed in as an operator: http://{http_addr}/#token={token} \
             (API: Authorization: Bearer {token})"
        );
    }
    let delivery = alerts.clone().map(|a| tokio::spawn(a.run()));
    if let crate::settings::RuleSource::Dir(dir) = &rule_source
        && leader
    {
        tokio::spawn(crate::rules_cmd::watch(dir.clone(), rule_manager.clone()));
    }
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state, async {
        let _ = http_stopped.await;
    }));
    if let Some(c) = &cluster {
        tracing::info!(
            process = c.process,
            processes = c.addresses.len(),
            peers = ?c.addresses,
            "waiting for every process of the cluster"
        );
    }
    let running = tokio::select! {
        started = starting => started.context("starting the dataflow")??,
        _ = shutdown_signal() => {
            // The workers were never started: nothing to drain, nothing was acknowledged.
            tracing::info!("stopped before the cluster formed");
            std::process::exit(0);
        }
    };
    if cluster.is_some() {
        tracing::info!("cluster formed: workers running");
    }
    tracing::info!(
        http = %http_addr,
        mqtt = %settings.mqtt,
        broker = %if settings.mqtt == "embedded" { settings.embedded_broker_addr.to_string() } else { settings.mqtt.clone() },
        elevators = reference.elevators.len(),
        cameras = reference.cameras.len(),
        rules = rules.len(),
        "citywatch running: counters at http://{http_addr}/api/v1/counters"
    );

    let simulation = match demo {
        None => None,
        Some(demo) => {
            let (host, port) = settings.mqtt_config().endpoint()?;
            let district = crate::demo::district(&reference);
            let truth = settings.data_dir.join("demo-ground-truth.jsonl");
            tracing::info!(
                "demo: a simulated district publishes to {host}:{port}; alerts at http://{http_addr}/api/v1/alerts \
                 (live: /api/v1/alerts/stream), pushes to units and offices on {host}:{port} under cw/v1/notify/#, \
                 injected incidents in {}",
                truth.display()
            );
            Some(tokio::spawn(crate::demo::publish(
                host, port, district, demo, truth,
            )))
        }
    };

    shutdown_signal().await;
    if let Some(sim) = simulation {
        sim.abort();
    }
    if let Some(d) = delivery {
        // The outbox is durable: what is not delivered now is delivered at the next start.
        d.abort();
    }
    tracing::info!("shutting down: draining the ingest queue");
    ingest.stop_intake();
    running.stop();
    let joined = tokio::task::spawn_blocking(move || running.join());
    if cluster.is_some() {
        // A cluster's dataflow ends only when every process stops: when they are stopped
        // together this returns at once; a process stopped alone leaves without the others
        // (which then stop too, and are restarted as a whole).
        match tokio::time::timeout(DRAIN_TIMEOUT, joined).await {
            Ok(j) => j.context("joining the dataflow")?,
            Err(_) => {
                tracing::warn!("the other processes of the cluster still run: leaving without them")
            }
        }
    } else {
        joined.await.context("joining the dataflow")?;
    }
    // The last snapshots are journaled before the replay mark is written for the last time.
    if let Some(stage) = &alerts_stage {
        stage.finish();
    }
    ingest.finish(DRAIN_TIMEOUT).await;
    if let Some(c) = &checkpoints {
        c.finish();
    }
    if let Some(log) = input_log {
        log.close();
    }
    if let Some(l) = &ledger {
        l.flush();
    }
    if let Some(sink) = sink {
        sink.shutdown(DRAIN_TIMEOUT).await;
    }
    let _ = stop_http.send(());
    // Open event streams (SSE) would hold a graceful shutdown for ever: they get a moment,
    // then the server is stopped.
    match tokio::time::timeout(HTTP_DRAIN, server).await {
        Ok(joined) => joined
            .context("joining the HTTP server")?
            .context("HTTP server")?,
        Err(_) => tracing::info!(
            "HTTP clients still connected after {} s: closing",
            HTTP_DRAIN.as_secs()
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

/// A dataflow worker that panics (in a cluster: because a process was lost, which timely
/// cannot survive) ends the process with status 70, so that its service manager restarts it
/// and the cluster forms again; a process without its dataflow would only look alive.
fn exit_when_the_dataflow_fails() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The CEL parser runs on threads of its own because it can fail this way on some
        // malformed text: the rule is refused with a syntax error, nothing else is affected.
        if std::thread::current().name() == Some("cel-parse") {
            tracing::warn!(
                "the expression parser failed on a rule's text ({info}); the rule is refused"
            );
            return;
        }
        default(info);
        let timely = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("timely:"));
        if timely {
            tracing::error!(
                thread = std::thread::current().name().unwrap_or_default(),
                "the dataflow failed: {info}; exiting (status 70) to be restarted"
            );
            std::process::exit(70);
        }
    }));
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
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
fn kitchen_evidence(store: Arc<ingest::Evidence>) -> alerts::EvidenceFn {
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
fn complaint_labels(
    store: Arc<ingest::Complaints>,
    places: Arc<std::sync::RwLock<Arc<dataflow::reference::Jurisdictions>>>,
) -> alerts::LabelsFn {
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
