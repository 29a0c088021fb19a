//! [`Alerts`]: conditions in, journal and deliveries out.

use crate::deliver::{self, Outcome, Transport, Webhook, backoff_ms};
use crate::journal::{
    self, AlertRow, AlertState, Due, Journal, NotificationRow, SilenceRow, TransitionRow,
};
use crate::lifecycle::{ActError, Action, Ctx, FieldState};
use crate::matcher::Matcher;
use crate::policy::Policies;
use crate::push::MqttPush;
use crate::{AlertsError, fingerprint, routing};
use control::ConditionsSnapshot;
use control::reference::Reference;
use rusqlite::params;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore, broadcast};

/// Delivery attempts before a notification is marked failed.
pub const MAX_ATTEMPTS: u32 = 12;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;
/// How often escalation timers, silences and repeats are looked at.
const TICK: Duration = Duration::from_secs(1);
/// Most notifications sent as one grouped message.
const GROUP_LIMIT: usize = 100;
/// Most body bytes in one grouped message (the embedded broker takes 64 KiB payloads).
const GROUP_MAX_BYTES: usize = 48 * 1024;

/// What the alerts stage did, for `/metrics`.
#[derive(Debug, Default)]
pub struct AlertsStats {
    notifications: Mutex<BTreeMap<(String, &'static str), u64>>,
    routing_errors: AtomicU64,
    unit_acks: [AtomicU64; 3],
}

impl AlertsStats {
    fn count(&self, kind: &str, outcome: &'static str) {
        *self
            .notifications
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((kind.to_owned(), outcome))
            .or_default() += 1;
    }

    /// Delivery attempts by (receiver kind, outcome: delivered, retried, failed).
    pub fn notifications(&self) -> Vec<(String, &'static str, u64)> {
        self.notifications
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((k, o), n)| (k.clone(), *o, *n))
            .collect()
    }

    /// Units' MQTT answers: (outcome, count) for applied, repeated, rejected.
    pub fn unit_acks(&self) -> [(&'static str, u64); 3] {
        let n = |i: usize| self.unit_acks[i].load(Ordering::Relaxed);
        [("applied", n(0)), ("repeated", n(1)), ("rejected", n(2))]
    }

    /// Route roles that resolved to no receiver.
    pub fn routing_errors(&self) -> u64 {
        self.routing_errors.load(Ordering::Relaxed)
    }
}

/// A wall clock the lifecycle reads: the system's, or one a test moves by hand.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }
}

/// How the alerts stage is set up.
#[derive(Clone)]
pub struct Options {
    pub policies: Policies,
    pub clock: Clock,
    /// Webhook request timeout.
    pub timeout: Duration,
    /// Evidence for a new alert from its labels (a kitchen camera's latest image), kept on the
    /// alert as `evidence` and carried by its notifications.
    pub evidence: Option<EvidenceFn>,
    /// Labels a new alert gains from what ingest saw (a complaint's merchant for an alert
    /// keyed by complaint id), before it is routed. Existing labels are kept.
    pub labels: Option<LabelsFn>,
    /// Units' answers over MQTT must be signed ([`crate::ack_signature`]); the contract's topic
    /// prefix. `None` takes unsigned answers (a broker whose ACLs already allow each unit only
    /// its own ack topic).
    pub signed_acks: Option<String>,
    /// CA certificates (PEM) trusted for `https://` webhooks besides the system's roots (a
    /// receiver with its own CA).
    pub webhook_ca_file: Option<std::path::PathBuf>,
}

/// Finds more labels for an alert with these labels.
pub type LabelsFn = Arc<dyn Fn(&BTreeMap<String, String>) -> Vec<(String, String)> + Send + Sync>;

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("policies", &self.policies)
            .field("clock", &self.clock)
            .field("timeout", &self.timeout)
            .field("evidence", &self.evidence.is_some())
            .field("labels", &self.labels.is_some())
            .finish()
    }
}

/// Finds evidence for an alert with these labels.
pub type EvidenceFn =
    Arc<dyn Fn(&BTreeMap<String, String>) -> Option<serde_json::Value> + Send + Sync>;

impl Default for Options {
    fn default() -> Options {
        Options {
            policies: Policies::domain_default(),
            clock: Clock::System,
            timeout: Duration::from_secs(10),
            evidence: None,
            labels: None,
            signed_acks: Some(model::topic::DEFAULT_PREFIX.to_owned()),
            webhook_ca_file: None,
        }
    }
}

/// An alert with its whole story.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AlertDetail {
    pub alert: AlertRow,
    /// Every transition and action, oldest first.
    pub transitions: Vec<crate::TransitionRow>,
    /// Every notification with its delivery status, newest first (at most 1000).
    pub notifications: Vec<crate::NotificationRow>,
    /// Escalation steps, done and waiting.
    pub escalations: Vec<crate::journal::EscalationRow>,
    /// The incidents it is a member of, newest first.
    pub incidents: Vec<String>,
}

/// A new silence, as the API takes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Alertmanager matchers: `label=value`, `label!=value`, `label=~regex`, `label!~regex`.
    #[schema(value_type = Vec<String>, example = json!(["rule=elevator.offline", "building=时代广场"]))]
    pub matchers: Vec<Matcher>,
    /// Defaults to now.
    pub starts_ms: Option<u64>,
    pub ends_ms: u64,
    pub author: String,
    pub reason: String,
}

/// Alerts that were firing when the journal was opened: each is confirmed by its condition
/// re-deriving, or resolved once the dataflow has run long enough past the restart that the
/// condition would have re-derived.
#[derive(Default)]
struct Inherited {
    alerts: BTreeMap<String, (String, String)>,
    first_as_of: Option<u64>,
}

/// The alerts stage.
pub struct Alerts {
    journal: Mutex<Journal>,
    /// Replaced whole when the reference data changes.
    directory: std::sync::RwLock<Arc<routing::Directory>>,
    policies: Policies,
    clock: Clock,
    events: broadcast::Sender<TransitionRow>,
    incident_events: broadcast::Sender<crate::IncidentRow>,
    wake: Notify,
    stats: AlertsStats,
    timeout: Duration,
    transports: Mutex<HashMap<String, Arc<dyn Transport>>>,
    inherited: Mutex<Inherited>,
    evidence: Option<EvidenceFn>,
    labels: Option<LabelsFn>,
    signed_acks: Option<String>,
}

impl Alerts {
    /// Opens the journal at `path` with the default options; pending notifications in it are
    /// delivered once [`Alerts::run`] runs.
    pub fn open(path: &Path, reference: Arc<Reference>) -> Result<Arc<Alerts>, AlertsError> {
        Alerts::open_with(path, reference, Options::default())
    }

    /// Opens the journal at `path`.
    pub fn open_with(
        path: &Path,
        reference: Arc<Reference>,
        options: Options,
    ) -> Result<Arc<Alerts>, AlertsError> {
        let journal = Journal::open(path)?;
        let inherited = Inherited {
            alerts: journal::alerts_where(journal.conn(), "state = ?1", "firing")?
                .into_iter()
                .map(|a| (a.id, (a.rule, a.group)))
                .collect(),
            first_as_of: None,
        };
        let (events, _) = broadcast::channel(1024);
        let (incident_events, _) = broadcast::channel(256);
        let client = webhook_client(options.webhook_ca_file.as_deref())?;
        Ok(Arc::new(Alerts {
            journal: Mutex::new(journal),
            directory: std::sync::RwLock::new(Arc::new(routing::Directory::new(reference))),
            policies: options.policies,
            clock: options.clock,
            events,
            incident_events,
            wake: Notify::new(),
            stats: AlertsStats::default(),
            timeout: options.timeout,
            transports: Mutex::new(HashMap::from([(
                "webhook".to_owned(),
                Arc::new(Webhook { client }) as Arc<dyn Transport>,
            )])),
            inherited: Mutex::new(inherited),
            evidence: options.evidence,
            labels: options.labels,
            signed_acks: options.signed_acks,
        }))
    }

    /// Sends `mqtt` receivers' notifications through this connection.
    pub fn set_push(&self, push: MqttPush) {
        self.register("mqtt", Arc::new(push));
    }

    /// Sends notifications of receivers of `kind` through `transport`.
    pub fn register(&self, kind: &str, transport: Arc<dyn Transport>) {
        self.transports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind.to_owned(), transport);
        self.wake.notify_one();
    }

    /// The journal, for queries.
    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Transitions as they are journaled.
    pub fn subscribe(&self) -> broadcast::Receiver<TransitionRow> {
        self.events.subscribe()
    }

    /// Statistics.
    pub fn stats(&self) -> &AlertsStats {
        &self.stats
    }

    /// The escalation policies in force.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Routes alerts that open from now on through `reference` (alerts already open keep
    /// the receivers they were given).
    pub fn set_reference(&self, reference: Arc<Reference>) {
        let next = Arc::new(routing::Directory::new(reference));
        *self
            .directory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
    }

    fn directory(&self) -> Arc<routing::Directory> {
        self.directory
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs `f` in one journal transaction, then publishes its transitions and wakes delivery.
    fn with_tx<T, E: From<AlertsError> + From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&mut Ctx<'_, '_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let directory = self.directory();
        let (out, woke) = {
            let mut j = self.journal();
            let tx = j.transaction()?;
            let mut ctx = Ctx {
                tx: &tx,
                now: self.clock.now_ms(),
                directory: &directory,
                policies: &self.policies,
                rows: Vec::new(),
                routing_errors: 0,
                evidence: self.evidence.as_ref(),
                labels: self.labels.as_ref(),
                incidents: Vec::new(),
            };
            let out = f(&mut ctx)?;
            let (rows, errors) = (std::mem::take(&mut ctx.rows), ctx.routing_errors);
            let incidents = std::mem::take(&mut ctx.incidents);
            drop(ctx);
            tx.commit()?;
            self.stats
                .routing_errors
                .fetch_add(errors, Ordering::Relaxed);
            // Broadcast under the journal lock, so the live stream sees sequence order.
            let woke = !rows.is_empty();
            for row in rows {
                let _ = self.events.send(row);
            }
            for row in incidents {
                let _ = self.incident_events.send(row);
            }
            (out, woke)
        };
        if woke {
            self.wake.notify_one();
        }
        Ok(out)
    }

    /// Journals the condition changes of a snapshot as alert transitions, each with its
    /// notifications, in one transaction; then wakes the delivery. Alerts inherited from
    /// before a restart whose condition has not re-derived are resolved once the dataflow is
    /// far enough past the restart. Each change is judged by the rule set the snapshot says
    /// it was computed under; `rules` serves where the snapshot does not say.
    pub fn apply(&self, c: &ConditionsSnapshot, rules: &[rules::Rule]) -> Result<(), AlertsError> {
        let stale = self.stale_inherited(c, c.latest_rules().unwrap_or(rules));
        if c.changes.is_empty() && stale.is_empty() && c.joined.is_empty() {
            return Ok(());
        }
        self.with_tx(|ctx| -> Result<(), AlertsError> {
            for (active, started, at) in &c.changes {
                let id = fingerprint(&active.rule, &active.group);
                if *started {
                    // The rule as it was when the change was computed (a change through the
                    // API reaches the dataflow at its frontier, later than `rules`).
                    let under = c.rules_at(*at).unwrap_or(rules);
                    if let Some(rule) = under.iter().find(|r| r.id == active.rule)
                        && ctx.open(rule, active, *at)?.is_some()
                        && let Some(cause) = c.cause_of(active)
                    {
                        crate::causes::put(ctx.tx, &id, *at, rule, cause)?;
                    }
                } else if let Some(mut a) = journal::alert(ctx.tx, &id)?
                    // The end of an older episode (fed again after a crash) is not this one's.
                    && a.since_ms <= active.since
                {
                    if a.state == AlertState::Firing {
                        ctx.close(&mut a, *at, json!({}))?;
                    } else {
                        ctx.stopped(&mut a)?;
                    }
                }
            }
            for (j, at) in &c.joined {
                let alert = journal::alert(ctx.tx, &fingerprint(&j.rule, &j.group))?;
                let office = alert.as_ref().and_then(|a| ctx.office_of(a));
                if let Some(i) =
                    crate::incidents::join(ctx.tx, j, *at, j.severity.as_str(), office)?
                {
                    ctx.incidents.push(i);
                }
            }
            for id in &stale {
                if let Some(mut a) = journal::alert(ctx.tx, id)?.filter(|a| a.state == AlertState::Firing) {
                    tracing::info!(alert = %id, rule = %a.rule, "resolving: its condition did not re-derive after the restart");
                    ctx.close(&mut a, c.as_of, json!({ "reason": "condition not active after restart" }))?;
                }
            }
            Ok(())
        })
    }

    /// The inherited alerts now known to be stale; those confirmed active are forgotten.
    fn stale_inherited(&self, c: &ConditionsSnapshot, rules: &[rules::Rule]) -> Vec<String> {
        let mut inh = self
            .inherited
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if inh.alerts.is_empty() {
            return Vec::new();
        }
        let first = *inh.first_as_of.get_or_insert(c.as_of);
        let mut stale = Vec::new();
        inh.alerts.retain(|id, (rule, group)| {
            if c.active.contains_key(&(rule.clone(), group.clone())) {
                return false;
            }
            let settle = rules.iter().find(|r| &r.id == rule).map_or(0, settle_ms);
            if c.as_of >= first.saturating_add(settle) {
                stale.push(id.clone());
                return false;
            }
            true
        });
        stale
    }

    /// What made the episodes of alert `id` fire, newest first (at most `limit`; with
    /// `since_ms`, that episode's only).
    pub fn causes(
        &self,
        id: &str,
        since_ms: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::CauseRow>, AlertsError> {
        self.journal().causes_of(id, since_ms, limit)
    }

    /// Incident changes as they are journaled.
    pub fn subscribe_incidents(&self) -> broadcast::Receiver<crate::IncidentRow> {
        self.incident_events.subscribe()
    }

    /// Applies an operator's action to an incident; returns the incident after it.
    pub fn act_incident(
        &self,
        id: &str,
        action: &crate::IncidentAction,
        by: &str,
    ) -> Result<crate::IncidentRow, ActError> {
        self.with_tx(|ctx| {
            let i = crate::incidents::act(ctx.tx, id, action, by, ctx.now)?;
            ctx.incidents.push(i.clone());
            Ok(i)
        })
    }

    /// Applies an operator's action; returns the alert after it.
    pub fn act(&self, id: &str, action: &Action, by: &str) -> Result<AlertRow, ActError> {
        self.act_changed(id, action, by).map(|(a, _)| a)
    }

    /// Applies an action; returns the alert after it and whether it changed anything.
    fn act_changed(
        &self,
        id: &str,
        action: &Action,
        by: &str,
    ) -> Result<(AlertRow, bool), ActError> {
        self.with_tx(|ctx| {
            let changed = ctx.act(id, action, by)?;
            let a = journal::alert(ctx.tx, id)?.ok_or_else(|| ActError::NotFound(id.into()))?;
            Ok((a, changed))
        })
    }

    /// Runs the escalation steps due now, releases alerts no longer silenced or inhibited, and
    /// repeats unacknowledged ones whose repeat interval has passed.
    pub fn tick(&self) -> Result<(), AlertsError> {
        self.with_tx(|ctx| -> Result<(), AlertsError> {
            for row in journal::due_escalations(ctx.tx, ctx.now)? {
                ctx.escalate(&row)?;
            }
            let held =
                journal::alerts_where(ctx.tx, "suppressed IS NOT NULL AND +state = ?1", "firing")?;
            for mut a in held {
                ctx.recheck(&mut a)?;
            }
            let due = journal::alerts_where(
                ctx.tx,
                "repeat_due_ms <= ?1 AND +state = 'firing'",
                ctx.now as i64,
            )?;
            for mut a in due {
                ctx.repeat(&mut a)?;
            }
            Ok(())
        })
    }

    /// Creates a silence; it holds back notifications of matching alerts from `starts_ms`
    /// to `ends_ms`.
    pub fn silence(&self, s: NewSilence) -> Result<SilenceRow, ActError> {
        let now = self.clock.now_ms();
        let starts_ms = s.starts_ms.unwrap_or(now);
        if s.matchers.is_empty() {
            return Err(ActError::Conflict(
                "a silence needs at least one matcher".into(),
            ));
        }
        if s.ends_ms <= starts_ms.max(now) {
            return Err(ActError::Conflict(
                "ends_ms must be after starts_ms and now".into(),
            ));
        }
        if s.author.trim().is_empty() || s.reason.trim().is_empty() {
            return Err(ActError::Conflict(
                "a silence needs an author and a reason".into(),
            ));
        }
        let row = SilenceRow {
            id: format!(
                "{:016x}",
                crate::fnv([format!("{now}{:?}{}", s.matchers, s.author).as_bytes()])
            ),
            matchers: s.matchers,
            starts_ms,
            ends_ms: s.ends_ms,
            author: s.author,
            reason: s.reason,
            created_ms: now,
        };
        let matchers = serde_json::to_string(&row.matchers).map_err(AlertsError::from)?;
        self.with_tx(|ctx| -> Result<(), ActError> {
            ctx.tx.execute(
                "INSERT INTO silences (id, matchers, starts_ms, ends_ms, author, reason, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![row.id, matchers, row.starts_ms as i64, row.ends_ms as i64, row.author, row.reason, row.created_ms as i64],
            )?;
            // Alerts firing now are held from now on (what they sent stays sent).
            for mut a in journal::alerts_where(ctx.tx, "suppressed IS NULL AND +state = ?1", "firing")? {
                ctx.recheck(&mut a)?;
            }
            Ok(())
        })?;
        Ok(row)
    }

    /// Ends a silence now; alerts it held are released at the next tick.
    pub fn expire_silence(&self, id: &str) -> Result<(), ActError> {
        let now = self.clock.now_ms();
        let n = self.journal().conn().execute(
            "UPDATE silences SET ends_ms = MIN(ends_ms, ?2) WHERE id = ?1",
            params![id, now as i64],
        )?;
        if n == 0 {
            return Err(ActError::NoSilence(id.into()));
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Delivers the outbox, for ever: due notifications are sent concurrently, each (or each
    /// group) retried on its own schedule; once a second the escalation timers run.
    pub async fn run(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut last_tick: Option<std::time::Instant> = None;
        loop {
            if last_tick.is_none_or(|t| t.elapsed() >= TICK) {
                last_tick = Some(std::time::Instant::now());
                if let Err(e) = self.tick() {
                    tracing::error!(error = %e, "cannot run escalations");
                }
            }
            let due = match self.journal().due(self.clock.now_ms(), 256) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    Vec::new()
                }
            };
            for n in due {
                let key = n
                    .group
                    .as_ref()
                    .map_or_else(|| format!("n:{}", n.id), |g| format!("g:{g}"));
                // A due row is listed again at every wake until its attempt is recorded.
                if !in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.clone())
                {
                    continue;
                }
                let (me, slots, in_flight) = (self.clone(), slots.clone(), in_flight.clone());
                tokio::spawn(async move {
                    if let Ok(_permit) = slots.acquire_owned().await {
                        me.send(n).await;
                    }
                    in_flight
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                    me.wake.notify_one();
                });
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// Sends one due notification, or the whole pending group it belongs to as one message,
    /// and records the outcome on every row sent.
    async fn send(&self, due: Due) {
        let rows: Vec<NotificationRow> = {
            let j = self.journal();
            // Only if the listed row is still as listed: the listing may predate an attempt
            // that finished since (and set a backoff).
            let rows = j
                .pending(&due)
                .and_then(|listed| match (listed, &due.group) {
                    (None, _) => Ok(Vec::new()),
                    (Some(row), None) => Ok(vec![row]),
                    (Some(_), Some(g)) => j.group(g, GROUP_LIMIT),
                });
            let mut rows = rows.unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the outbox");
                Vec::new()
            });
            // Signed with the receiver's secret as it is now (rows made before secrets
            // stopped being copied keep theirs when the receiver is gone).
            let directory = self.directory();
            for r in &mut rows {
                if let Some(receiver) = directory.receiver(&r.receiver_id) {
                    r.secret.clone_from(&receiver.secret);
                }
            }
            // A grouped message stays well under the brokers' and receivers' size limits.
            let mut bytes = 0;
            rows.retain(|r| {
                bytes += r.body.len();
                bytes <= GROUP_MAX_BYTES || bytes == r.body.len()
            });
            rows
        };
        let Some(first) = rows.first() else {
            return;
        };
        let transport = self
            .transports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&first.kind)
            .cloned();
        let outcome = match transport {
            // MQTT push connects in the background: wait for it rather than fail.
            None if first.kind == "mqtt" => Outcome::Retry("mqtt push is not connected".into()),
            None => Outcome::Fail(format!("receiver kind {:?} is not supported", first.kind)),
            Some(t) if rows.len() == 1 => t.send(first, self.timeout).await,
            Some(t) => t.send(&deliver::batch(&rows), self.timeout).await,
        };
        let now = self.clock.now_ms();
        let name = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry(_) => "retried",
            Outcome::Fail(_) => "failed",
        };
        self.stats.count(&first.kind, name);
        // Each row counts its own attempts: a row that joined a retrying group is not failed
        // early for the group's history.
        let records: Vec<journal::Attempt<'_>> = rows
            .iter()
            .map(|r| {
                let attempts = r.attempts + 1;
                match &outcome {
                    Outcome::Delivered => (r.id, "delivered", attempts, now, None, Some(now)),
                    Outcome::Retry(why) if attempts < MAX_ATTEMPTS => (
                        r.id,
                        "pending",
                        attempts,
                        now + backoff_ms(attempts - 1, now ^ first.id),
                        Some(why.as_str()),
                        None,
                    ),
                    Outcome::Retry(why) | Outcome::Fail(why) => {
                        tracing::warn!(receiver = %r.receiver_id, alert = %r.alert_id, error = %why, "notification failed");
                        (r.id, "failed", attempts, now, Some(why.as_str()), None)
                    }
                }
            })
            .collect();
        if let Err(e) = self.journal().record_all(&records) {
            tracing::error!(error = %e, "cannot record a delivery");
        }
    }

    /// One alert with its history and notifications.
    pub fn detail(&self, id: &str) -> Result<Option<AlertDetail>, AlertsError> {
        let j = self.journal();
        let Some(alert): Option<AlertRow> = j.alert(id)? else {
            return Ok(None);
        };
        Ok(Some(AlertDetail {
            transitions: j.transitions_of(id)?,
            notifications: j.notifications(Some(id), 1000)?,
            escalations: j.escalations_of(id)?,
            incidents: j.incidents_of("alert", id)?,
            alert,
        }))
    }

    /// A maintenance unit's answer over MQTT (`…/notify/{unit}/ack`): `{"alert_id", "action":
    /// "ack" | "responded" | "on_site" | "done" | "false_alarm", "by"?, "comment"?}`. `unit` is
    /// the unit's id or one of its receivers' ids; it may act only on alerts it was notified
    /// of or whose elevator it maintains.
    pub fn unit_ack(&self, unit: &str, payload: &[u8]) -> Result<AlertRow, UnitAckError> {
        let result = self.unit_ack_inner(unit, payload);
        let slot = match &result {
            Ok((_, true)) => 0,
            Ok((_, false)) => 1,
            Err(_) => 2,
        };
        self.stats.unit_acks[slot].fetch_add(1, Ordering::Relaxed);
        result.map(|(a, _)| a)
    }

    fn unit_ack_inner(&self, unit: &str, payload: &[u8]) -> Result<(AlertRow, bool), UnitAckError> {
        #[derive(Deserialize)]
        struct Ack {
            alert_id: String,
            action: String,
            by: Option<String>,
            comment: Option<String>,
            /// `sha256=<hex>`: see [`crate::ack_signature`].
            sig: Option<String>,
        }
        if payload.len() > MAX_ACK_BYTES {
            return Err(UnitAckError::Payload(format!(
                "{} bytes, over the {MAX_ACK_BYTES} an answer may have",
                payload.len()
            )));
        }
        let ack: Ack =
            serde_json::from_slice(payload).map_err(|e| UnitAckError::Payload(e.to_string()))?;
        let directory = self.directory();
        if let Some(prefix) = &self.signed_acks {
            crate::ack_signature::verify(
                &directory,
                prefix,
                unit,
                &crate::ack_signature::Signed {
                    alert_id: &ack.alert_id,
                    action: &ack.action,
                    by: ack.by.as_deref(),
                    comment: ack.comment.as_deref(),
                    sig: ack.sig.as_deref(),
                },
            )
            .map_err(UnitAckError::Unsigned)?;
        }
        let action = match ack.action.as_str() {
            "ack" => Action::Ack { comment: ack.comment },
            other => Action::Field(FieldState::parse(other).ok_or_else(|| {
                UnitAckError::Payload(format!(
                    "field \"action\": {other:?} is not one of ack, responded, on_site, done, false_alarm"
                ))
            })?),
        };
        let owner = directory
            .receiver(unit)
            .map_or(unit.to_owned(), |r| r.owner.clone());
        let allowed = {
            let j = self.journal();
            let alert = j
                .alert(&ack.alert_id)?
                .ok_or_else(|| UnitAckError::Refused(format!("no alert {:?}", ack.alert_id)))?;
            let maintains =
                alert.body["labels"]["maintenance_unit"].as_str() == Some(owner.as_str());
            maintains
                || j.notifications(Some(&ack.alert_id), 1000)?.iter().any(|n| {
                    directory
                        .receiver(&n.receiver_id)
                        .is_some_and(|r| r.owner == owner)
                })
        };
        if !allowed {
            return Err(UnitAckError::Refused(format!(
                "unit {owner:?} was not notified of alert {:?}",
                ack.alert_id
            )));
        }
        let by = ack.by.unwrap_or_else(|| format!("unit:{owner}"));
        self.act_changed(&ack.alert_id, &action, &by)
            .map_err(|e| match e {
                ActError::Store(e) => UnitAckError::Store(e),
                other => UnitAckError::Refused(other.to_string()),
            })
    }
}

/// The HTTP client of webhooks: https through rustls with the system's roots and the
/// certificates of `ca` (PEM); redirects are not followed (a signed body goes where it was
/// addressed, nowhere else).
fn webhook_client(ca: Option<&Path>) -> Result<reqwest::Client, AlertsError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca {
        let pem = std::fs::read(path)
            .map_err(|e| AlertsError::Tls(format!("CA file {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| AlertsError::Tls(format!("CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(AlertsError::Tls(format!(
                "CA file {}: holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| AlertsError::Tls(e.to_string()))
}

/// Largest answer from a unit: a few ids and a comment.
pub const MAX_ACK_BYTES: usize = 16 * 1024;

/// Why a unit's MQTT answer was not applied.
#[derive(Debug, thiserror::Error)]
pub enum UnitAckError {
    /// The payload is not what the contract says.
    #[error("{0}")]
    Payload(String),
    /// The action does not apply (unknown alert, not this unit's, wrong state).
    #[error("{0}")]
    Refused(String),
    /// Not signed with a secret of the unit's receivers: anyone on the broker could have sent it.
    #[error("{0}")]
    Unsigned(String),
    #[error(transparent)]
    Store(#[from] AlertsError),
}

/// How long after a restart a rule's condition needs to re-derive from fresh events.
fn settle_ms(rule: &rules::Rule) -> u64 {
    use model::time::DAY_MS;
    use rules::spec::Kind;
    let shape = match &rule.kind {
        Kind::Event | Kind::State { .. } => 0,
        Kind::Window { window, .. } => window.size_ms(),
        // Counting only market hours, an absence can span the night.
        Kind::Absence {
            after_ms, hours, ..
        } => *after_ms + if hours.is_some() { DAY_MS } else { 0 },
        // A clock that ran before the restart does not re-derive (its starting event is
        // gone): an inherited deadline alert stays until its person closes it.
        Kind::Deadline { .. } => return u64::MAX,
    };
    // A minute on top: devices report at least that often (idle heartbeats).
    shape + rule.for_ms + rule.keep_firing_for_ms + 60_000
}
