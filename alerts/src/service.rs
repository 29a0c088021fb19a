//! [`Alerts`]: conditions in, journal and deliveries out.

use crate::deliver::{Outcome, backoff_ms, deliver};
use crate::journal::{self, AlertRow, Journal, TransitionRow};
use crate::{AlertsError, fingerprint, routing};
use dataflow::ConditionsSnapshot;
use dataflow::reference::Reference;
use rusqlite::params;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore, broadcast};

/// Delivery attempts before a notification is marked failed.
pub const MAX_ATTEMPTS: u32 = 12;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;

/// What the alerts stage did, for `/metrics`.
#[derive(Debug, Default)]
pub struct AlertsStats {
    notifications: Mutex<BTreeMap<(String, &'static str), u64>>,
    routing_errors: AtomicU64,
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

    /// Route roles that resolved to no receiver.
    pub fn routing_errors(&self) -> u64 {
        self.routing_errors.load(Ordering::Relaxed)
    }
}

/// The alerts stage.
pub struct Alerts {
    journal: Mutex<Journal>,
    reference: Arc<Reference>,
    events: broadcast::Sender<TransitionRow>,
    wake: Notify,
    stats: AlertsStats,
    client: reqwest::Client,
    timeout: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Alerts {
    /// Opens the journal at `path`; pending notifications in it are delivered once
    /// [`Alerts::run`] runs.
    pub fn open(path: &Path, reference: Arc<Reference>) -> Result<Arc<Alerts>, AlertsError> {
        let journal = Journal::open(path)?;
        let (events, _) = broadcast::channel(1024);
        Ok(Arc::new(Alerts {
            journal: Mutex::new(journal),
            reference,
            events,
            wake: Notify::new(),
            stats: AlertsStats::default(),
            client: reqwest::Client::new(),
            timeout: Duration::from_secs(10),
        }))
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

    /// Journals the condition changes of a snapshot as alert transitions, each with its
    /// notifications, in one transaction; then wakes the delivery.
    pub fn apply(&self, c: &ConditionsSnapshot, rules: &[rules::Rule]) -> Result<(), AlertsError> {
        if c.changes.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::new();
        {
            let mut j = self.journal();
            let tx = j.transaction()?;
            let now = now_ms();
            for (active, started, at) in &c.changes {
                let id = fingerprint(&active.rule, &active.group);
                let existing = journal::alert(&tx, &id)?;
                if *started {
                    let Some(rule) = rules.iter().find(|r| r.id == active.rule) else {
                        continue;
                    };
                    let labels = routing::labels(rule, &active.group);
                    let version = existing.map_or(1, |a| a.version + 1);
                    let body = json!({
                        "id": id, "rule": rule.id, "group": active.group, "state": "firing", "version": version,
                        "severity": rule.severity.as_str(), "since_ms": at, "value": active.value,
                        "description": rule.description, "labels": labels, "annotations": rule.annotations,
                    });
                    tx.execute(
                        "INSERT INTO alerts (id, rule, grp, severity, state, value, since_ms, resolved_ms, version, body)
                         VALUES (?1, ?2, ?3, ?4, 'firing', ?5, ?6, NULL, ?7, ?8)
                         ON CONFLICT(id) DO UPDATE SET severity = ?4, state = 'firing', value = ?5, since_ms = ?6,
                             resolved_ms = NULL, version = ?7, body = ?8",
                        params![id, rule.id, active.group, rule.severity.as_str(), active.value, *at as i64, version as i64, body.to_string()],
                    )?;
                    rows.push(transition(&tx, &id, version, "firing", *at, &body)?);
                    let (owners, unresolved) =
                        routing::owners(&rule.route, &labels, &self.reference);
                    if !unresolved.is_empty() {
                        self.stats
                            .routing_errors
                            .fetch_add(unresolved.len() as u64, Ordering::Relaxed);
                        tracing::debug!(alert = %id, rule = %rule.id, roles = ?unresolved, "route reaches no receiver");
                    }
                    for r in routing::receivers(&owners, &self.reference) {
                        outbox(
                            &tx,
                            &id,
                            version,
                            &r.receiver_id,
                            &r.kind,
                            &r.target,
                            &r.secret,
                            &body,
                            now,
                        )?;
                    }
                } else if let Some(alert) = existing.filter(|a| a.state == "firing") {
                    let version = alert.version + 1;
                    let mut body = alert.body.clone();
                    body["state"] = json!("resolved");
                    body["version"] = json!(version);
                    body["resolved_ms"] = json!(at);
                    tx.execute(
                        "UPDATE alerts SET state = 'resolved', resolved_ms = ?2, version = ?3, body = ?4 WHERE id = ?1",
                        params![id, *at as i64, version as i64, body.to_string()],
                    )?;
                    rows.push(transition(&tx, &id, version, "resolved", *at, &body)?);
                    // Whoever was told it fires is told it is resolved.
                    let told: Vec<(String, String, String, String)> = {
                        let mut stmt = tx.prepare(
                            "SELECT DISTINCT receiver_id, kind, target, secret FROM outbox WHERE alert_id = ?1 AND version = ?2",
                        )?;
                        let rows = stmt.query_map(params![id, alert.version as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })?;
                        rows.collect::<Result<_, _>>()?
                    };
                    for (rid, kind, target, secret) in told {
                        outbox(&tx, &id, version, &rid, &kind, &target, &secret, &body, now)?;
                    }
                }
            }
            tx.commit()?;
        }
        for row in rows {
            let _ = self.events.send(row);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Delivers the outbox, for ever: due notifications are sent concurrently, each retried
    /// on its own schedule.
    pub async fn run(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let in_flight: Arc<Mutex<HashSet<u64>>> = Arc::default();
        loop {
            let due = match self.journal().due(now_ms(), 256) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    Vec::new()
                }
            };
            for n in due {
                if !in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(n.id)
                {
                    continue;
                }
                let (me, slots, in_flight) = (self.clone(), slots.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let Ok(_permit) = slots.acquire_owned().await else {
                        return;
                    };
                    let outcome = deliver(&me.client, &n, me.timeout).await;
                    let attempts = n.attempts + 1;
                    let now = now_ms();
                    let recorded = match &outcome {
                        Outcome::Delivered => {
                            me.stats.count(&n.kind, "delivered");
                            me.journal()
                                .record(n.id, "delivered", attempts, now, None, Some(now))
                        }
                        Outcome::Retry(why) if attempts < MAX_ATTEMPTS => {
                            me.stats.count(&n.kind, "retried");
                            let next = now + backoff_ms(n.attempts, now ^ n.id);
                            me.journal()
                                .record(n.id, "pending", attempts, next, Some(why), None)
                        }
                        Outcome::Retry(why) | Outcome::Fail(why) => {
                            me.stats.count(&n.kind, "failed");
                            tracing::warn!(receiver = %n.receiver_id, alert = %n.alert_id, error = %why, "notification failed");
                            me.journal()
                                .record(n.id, "failed", attempts, now, Some(why), None)
                        }
                    };
                    if let Err(e) = recorded {
                        tracing::error!(error = %e, "cannot record a delivery");
                    }
                    in_flight
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&n.id);
                    me.wake.notify_one();
                });
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// One alert with its history and notifications.
    pub fn detail(&self, id: &str) -> Result<Option<serde_json::Value>, AlertsError> {
        let j = self.journal();
        let Some(alert): Option<AlertRow> = j.alert(id)? else {
            return Ok(None);
        };
        Ok(Some(json!({
            "alert": alert,
            "transitions": j.transitions_of(id)?,
            "notifications": j.notifications(Some(id), 1000)?,
        })))
    }
}

fn transition(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    version: u64,
    state: &str,
    at: u64,
    body: &serde_json::Value,
) -> Result<TransitionRow, AlertsError> {
    tx.execute(
        "INSERT INTO transitions (alert_id, version, state, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, version as i64, state, at as i64, body.to_string()],
    )?;
    Ok(TransitionRow {
        seq: tx.last_insert_rowid() as u64,
        alert_id: id.to_owned(),
        version,
        state: state.to_owned(),
        at_ms: at,
        body: body.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
fn outbox(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    version: u64,
    receiver: &str,
    kind: &str,
    target: &str,
    secret: &str,
    body: &serde_json::Value,
    now: u64,
) -> Result<(), AlertsError> {
    tx.execute(
        "INSERT OR IGNORE INTO outbox (alert_id, version, receiver_id, kind, target, secret, body, idem_key, status, next_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9)",
        params![id, version as i64, receiver, kind, target, secret, body.to_string(), format!("{id}-{version}-{receiver}"), now as i64],
    )?;
    Ok(())
}
