//! `citywatch run`: the service.

use crate::settings::Settings;
use crate::wiring;
use anyhow::Context;
use dataflow::Stats;
use ingest::DeadLetters;
use std::sync::Arc;
use std::time::Duration;

/// How long shutdown waits for HTTP clients (event streams) to leave.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// How long shutdown waits for the last acknowledgements.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    // In a cluster, process 0 owns the alerts, the API and the changes of rules and reference
    // data; the others ingest their share and run their workers (docs/cluster.md).
    let leader = settings.is_leader();
    let rule_source = settings.rule_source();
    let wiring::StartingRules {
        rules,
        kept,
        incidents,
    } = wiring::starting_rules(&settings, &rule_source, leader)?;
    let cluster = settings.cluster()?;
    let (mut rule_feed, rule_manager) = wiring::rule_changes(&rule_source, &rules, kept);
    rule_feed.incidents = Arc::new(incidents);
    let (places, mut reference_listeners) = wiring::reference_changes(&reference, &mut rule_feed);
    let deadletters = Arc::new(DeadLetters::open(
        &settings.data_dir.join("deadletter"),
        settings.deadletter_max_bytes,
    )?);
    let listener = tokio::net::TcpListener::bind(settings.http)
        .await
        .with_context(|| format!("binding HTTP on {}", settings.http))?;
    let http_addr = listener.local_addr()?;
    let stats = Arc::new(Stats::default());
    let intake = wiring::open_intake(
        &settings,
        cluster.as_ref().map(|c| (c.process, c.addresses.len())),
        deadletters.clone(),
        stats.clone(),
    )?;
    let sink =
        influx::InfluxSink::start(&settings.influx_config(), &settings.data_dir.join("influx"))?;
    let alerts = match rule_source.any() && leader {
        true => Some(wiring::open_alerts(
            &settings,
            &reference,
            &intake,
            &places,
            &deadletters,
            &mut reference_listeners,
        )?),
        false => None,
    };
    if let Some(a) = &alerts {
        rule_feed.alerts_before = wiring::alerts_before(a, &rule_feed.incidents, &settings)?;
    }
    let outputs = wiring::outputs(
        &settings,
        &intake,
        cluster.is_some(),
        alerts.as_ref(),
        sink.as_ref(),
        &rule_manager,
    );
    let sources = wiring::sources(&settings, &intake);
    // In a cluster this waits until every process is connected: the API answers meanwhile.
    let starting = {
        let (config, reference, stats) =
            (settings.dataflow_config(), reference.clone(), stats.clone());
        let outputs = outputs.dataflow;
        tokio::task::spawn_blocking(move || {
            dataflow::start(config, reference, rule_feed, sources, outputs, stats)
        })
    };
    let alerts_stage = outputs.alerts_stage;
    let state = api::AppState {
        snapshots: outputs.snapshots,
        deadletters,
        ingest: intake.ingest.stats(),
        dataflow: stats,
        influx: sink.as_ref().map(|s| s.stats()),
        conditions: outputs.conditions,
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
        complaints: Some(intake.facts.complaints.clone()),
        residue_tests: Some(intake.facts.residue.clone()),
        input_history: settings.input_log.then(|| api::state::InputHistory {
            dir: settings.data_dir.join("input"),
            decoder: settings.decoder(),
            keep_ms: settings.input_log_keep_ms,
        }),
    };
    if demo.is_some() && settings.auth != api::auth::AuthMode::Off {
        demo_token(&state, http_addr)?;
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
    let running = started(starting, cluster.as_ref()).await?;
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
        Some(demo) => Some(start_demo(&settings, &reference, http_addr, demo)?),
    };

    shutdown_signal().await;
    if let Some(sim) = simulation {
        sim.abort();
    }
    if let Some(d) = delivery {
        // The outbox is durable: what is not delivered now is delivered at the next start.
        d.abort();
    }
    let stopping = Stopping {
        running,
        in_cluster: cluster.is_some(),
        alerts_stage,
        intake,
        sink,
    };
    stopping.drain().await?;
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

/// The dataflow once started: in a cluster, once every process is connected (a stop
/// meanwhile ends the process: nothing was acknowledged, nothing is to drain).
async fn started(
    starting: tokio::task::JoinHandle<Result<dataflow::Running, dataflow::runtime::RuntimeError>>,
    cluster: Option<&crate::settings::Cluster>,
) -> anyhow::Result<dataflow::Running> {
    if let Some(c) = cluster {
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
            tracing::info!("stopped before the cluster formed");
            std::process::exit(0);
        }
    };
    if cluster.is_some() {
        tracing::info!("cluster formed: workers running");
    }
    Ok(running)
}

/// `citywatch demo` signs the page in as an operator: the link with its token is logged.
fn demo_token(state: &api::AppState, http_addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let token = state
        .auth
        .create("demo-operator", &api::auth::Role::Operator)
        .map_err(|e| anyhow::anyhow!("creating the demo's operator token: {e}"))?;
    tracing::info!(
        "demo: the control room, signed in as an operator: http://{http_addr}/#token={token} \
         (API: Authorization: Bearer {token})"
    );
    Ok(())
}

/// `citywatch demo`'s simulated district, publishing to the broker.
fn start_demo(
    settings: &Settings,
    reference: &dataflow::Reference,
    http_addr: std::net::SocketAddr,
    demo: Demo,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (host, port) = settings.mqtt_config().endpoint()?;
    let district = crate::demo::district(reference);
    let truth = settings.data_dir.join("demo-ground-truth.jsonl");
    tracing::info!(
        "demo: a simulated district publishes to {host}:{port}; alerts at http://{http_addr}/api/v1/alerts \
         (live: /api/v1/alerts/stream), pushes to units and offices on {host}:{port} under cw/v1/notify/#, \
         injected incidents in {}",
        truth.display()
    );
    Ok(tokio::spawn(crate::demo::publish(
        host, port, district, demo, truth,
    )))
}

/// What a stop drains, in order: the dataflow (the ingest queue first), the alerts' queue
/// (the last snapshots are journaled before the replay mark is written for the last time), the
/// acknowledgements, the checkpoints, the input log, the mark, then InfluxDB.
struct Stopping {
    running: dataflow::Running,
    in_cluster: bool,
    alerts_stage: Option<Arc<alerts::Stage>>,
    intake: wiring::Intake,
    sink: Option<influx::InfluxSink>,
}

impl Stopping {
    async fn drain(self) -> anyhow::Result<()> {
        let Stopping {
            running,
            in_cluster,
            alerts_stage,
            intake,
            sink,
        } = self;
        tracing::info!("shutting down: draining the ingest queue");
        intake.ingest.stop_intake();
        running.stop();
        let joined = tokio::task::spawn_blocking(move || running.join());
        if in_cluster {
            // A cluster's dataflow ends only when every process stops: when they are stopped
            // together this returns at once; a process stopped alone leaves without the others
            // (which then stop too, and are restarted as a whole).
            match tokio::time::timeout(DRAIN_TIMEOUT, joined).await {
                Ok(j) => j.context("joining the dataflow")?,
                Err(_) => tracing::warn!(
                    "the other processes of the cluster still run: leaving without them"
                ),
            }
        } else {
            joined.await.context("joining the dataflow")?;
        }
        if let Some(stage) = &alerts_stage {
            stage.finish();
        }
        intake.ingest.finish(DRAIN_TIMEOUT).await;
        if let Some(c) = &intake.durable.checkpoints {
            c.finish();
        }
        if let Some(log) = intake.input_log {
            log.close();
        }
        if let Some(l) = &intake.durable.accounting {
            l.flush();
        }
        if let Some(sink) = sink {
            sink.shutdown(DRAIN_TIMEOUT).await;
        }
        Ok(())
    }
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
