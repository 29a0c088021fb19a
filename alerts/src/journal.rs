//! The journal: SQLite in WAL mode. `alerts` holds each alert's state, `transitions` every
//! change and operator action (its `seq` orders them and numbers the SSE events), `outbox`
//! every notification to deliver and how it went, `escalations` the timed steps of each
//! episode, `silences` the operators' silences.
//!
//! Reads and writes go through [`Journal`] or, inside a transaction, the free functions of this
//! module, so the service can append a transition and its notifications atomically.

use crate::AlertsError;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;

/// The rule whose firing puts a stall's goods on hold: the tiles count its alerts, the API
/// lists its conditions (`GET /api/v1/holds`).
pub const HOLD_RULE: &str = "market.residue_fail";

/// The schema version this build writes (`PRAGMA user_version`).
const VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, rule TEXT NOT NULL, grp TEXT NOT NULL, severity TEXT NOT NULL,
    state TEXT NOT NULL, value REAL NOT NULL, since_ms INTEGER NOT NULL, resolved_ms INTEGER,
    version INTEGER NOT NULL, body TEXT NOT NULL,
    episode INTEGER NOT NULL DEFAULT 1, opened_ms INTEGER NOT NULL DEFAULT 0,
    acked_ms INTEGER, suppressed TEXT, repeat_due_ms INTEGER);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, version INTEGER NOT NULL,
    state TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL,
    event TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, version INTEGER NOT NULL,
    receiver_id TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, secret TEXT NOT NULL,
    body TEXT NOT NULL, idem_key TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL, last_error TEXT,
    delivered_ms INTEGER, grp TEXT);
CREATE TABLE IF NOT EXISTS escalations (
    alert_id TEXT NOT NULL, episode INTEGER NOT NULL, step INTEGER NOT NULL,
    due_ms INTEGER NOT NULL, status TEXT NOT NULL, policy TEXT NOT NULL,
    PRIMARY KEY (alert_id, episode, step));
CREATE TABLE IF NOT EXISTS inhibitions (
    source_id TEXT NOT NULL, target_rule TEXT NOT NULL, PRIMARY KEY (target_rule, source_id));
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_ms INTEGER NOT NULL,
    ends_ms INTEGER NOT NULL, author TEXT NOT NULL, reason TEXT NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_ms);
CREATE INDEX IF NOT EXISTS outbox_alert ON outbox (alert_id, version);
CREATE INDEX IF NOT EXISTS outbox_group ON outbox (grp, status);
CREATE INDEX IF NOT EXISTS transitions_alert ON transitions (alert_id);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE INDEX IF NOT EXISTS alerts_suppressed ON alerts (suppressed) WHERE suppressed IS NOT NULL;
CREATE INDEX IF NOT EXISTS alerts_repeat ON alerts (repeat_due_ms) WHERE repeat_due_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS escalations_due ON escalations (status, due_ms);
CREATE INDEX IF NOT EXISTS inhibitions_source ON inhibitions (source_id);
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule);
CREATE INDEX IF NOT EXISTS silences_ends ON silences (ends_ms);
";

/// Columns added since the first journal: added in place when an older journal is opened.
const ADDED_COLUMNS: [(&str, &str, &str); 7] = [
    ("alerts", "episode", "INTEGER NOT NULL DEFAULT 1"),
    ("alerts", "opened_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("alerts", "acked_ms", "INTEGER"),
    ("alerts", "suppressed", "TEXT"),
    ("transitions", "event", "TEXT NOT NULL DEFAULT ''"),
    ("outbox", "grp", "TEXT"),
    ("alerts", "repeat_due_ms", "INTEGER"),
];

/// Where an alert is: its condition fires (and it is open for actions), or it has resolved.
/// Stored as its name (`firing`, `resolved`), as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    const ALL: [AlertState; 2] = [AlertState::Firing, AlertState::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// What a transition of an alert was. Stored as its name, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionEvent {
    Firing,
    Resolved,
    Acknowledged,
    Assigned,
    Commented,
    FieldState,
    Escalated,
    Repeated,
    Released,
}

impl TransitionEvent {
    const ALL: [TransitionEvent; 9] = [
        TransitionEvent::Firing,
        TransitionEvent::Resolved,
        TransitionEvent::Acknowledged,
        TransitionEvent::Assigned,
        TransitionEvent::Commented,
        TransitionEvent::FieldState,
        TransitionEvent::Escalated,
        TransitionEvent::Repeated,
        TransitionEvent::Released,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransitionEvent::Firing => "firing",
            TransitionEvent::Resolved => "resolved",
            TransitionEvent::Acknowledged => "acknowledged",
            TransitionEvent::Assigned => "assigned",
            TransitionEvent::Commented => "commented",
            TransitionEvent::FieldState => "field_state",
            TransitionEvent::Escalated => "escalated",
            TransitionEvent::Repeated => "repeated",
            TransitionEvent::Released => "released",
        }
    }
}

/// A kind kept by its name (`ALL` and `as_str`): it compares with the name
/// (`a.state == "firing"`), prints as it, and is written to and read from SQLite as it (an
/// unknown name in the journal is an error that names it).
macro_rules! by_name {
    ($t:ident) => {
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let name = v.as_str()?;
                $t::ALL
                    .into_iter()
                    .find(|k| k.as_str() == name)
                    .ok_or_else(|| {
                        let why = format!("not a known {}: {name}", stringify!($t));
                        rusqlite::types::FromSqlError::Other(why.into())
                    })
            }
        }
    };
}

by_name!(AlertState);
by_name!(TransitionEvent);

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertRow {
    pub id: String,
    pub rule: String,
    pub group: String,
    pub severity: String,
    pub state: AlertState,
    pub value: f64,
    /// Event time the condition started.
    pub since_ms: u64,
    pub resolved_ms: Option<u64>,
    /// Increases with every transition and action of the alert, across episodes.
    pub version: u64,
    /// The version that opened the current episode.
    pub episode: u64,
    /// Wall-clock time the episode opened: escalation timers count from it.
    pub opened_ms: u64,
    pub acked_ms: Option<u64>,
    /// Why notifications are held back: `silence:<id>` or `inhibited:<alert id>`.
    pub suppressed: Option<String>,
    /// When a firing, unacknowledged alert is next sent again (its policy's `repeat`).
    #[serde(skip)]
    pub repeat_due_ms: Option<u64>,
    /// Labels, annotations, description, operator state: what notifications carry.
    pub body: serde_json::Value,
}

/// A transition as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TransitionRow {
    pub seq: u64,
    pub alert_id: String,
    pub version: u64,
    /// The alert's state after it.
    pub state: AlertState,
    /// What happened: `firing`, `resolved`, `acknowledged`, `assigned`, `commented`,
    /// `field_state`, `escalated`, `released`.
    pub event: TransitionEvent,
    pub at_ms: u64,
    /// The alert as it was after the transition, with `event` describing it.
    pub body: serde_json::Value,
}

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NotificationRow {
    pub id: u64,
    pub alert_id: String,
    pub version: u64,
    pub receiver_id: String,
    pub kind: String,
    pub target: String,
    #[serde(skip)]
    pub secret: String,
    #[serde(skip)]
    pub body: String,
    pub idempotency_key: String,
    /// `pending`, `delivered`, `failed`, `held` (silenced or inhibited) or `dropped` (held
    /// until the alert resolved).
    pub status: String,
    pub attempts: u32,
    pub next_ms: u64,
    pub last_error: Option<String>,
    pub delivered_ms: Option<u64>,
    /// Notifications with the same group go to their receiver in one message.
    pub group: Option<String>,
}

/// One attempt's outcome for a row: (id, status, attempts, next_ms, error, delivered_ms).
pub type Attempt<'a> = (u64, &'a str, u32, u64, Option<&'a str>, Option<u64>);

/// A notification due for delivery, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub id: u64,
    pub attempts: u32,
    pub group: Option<String>,
}

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SilenceRow {
    pub id: String,
    /// Alertmanager matchers: `label=value`, `label!=value`, `label=~regex`, `label!~regex`.
    #[schema(value_type = Vec<String>, example = json!(["domain=elevator", "building=~解放碑.*"]))]
    pub matchers: Vec<crate::matcher::Matcher>,
    pub starts_ms: u64,
    pub ends_ms: u64,
    pub author: String,
    pub reason: String,
    pub created_ms: u64,
}

/// An escalation step waiting for its time.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EscalationRow {
    pub alert_id: String,
    pub episode: u64,
    pub step: u32,
    pub due_ms: u64,
    /// `pending`, `done`, `skipped` (its `unless` held) or `cancelled` (the alert resolved).
    pub status: String,
    pub policy: String,
}

/// The journal.
pub struct Journal {
    conn: Connection,
}

impl Journal {
    /// Opens (or creates, or upgrades) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, AlertsError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
        for (table, column, decl) in ADDED_COLUMNS {
            let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
            let columns: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(1))?
                .collect::<Result<_, _>>()?;
            // A table that does not exist yet is created whole by the schema below.
            if !columns.is_empty() && !columns.iter().any(|c| c == column) {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::causes::SCHEMA)?;
        conn.execute_batch(crate::incidents::SCHEMA)?;
        // Rows once kept their receiver's secret; it is read from the reference data now.
        conn.execute("UPDATE outbox SET secret = '' WHERE secret != ''", [])?;
        conn.execute_batch(&format!("PRAGMA user_version = {VERSION}"))?;
        Ok(Journal { conn })
    }

    /// The connection, for the lifecycle's own statements.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A transaction, for appending a transition with its notifications atomically.
    pub fn transaction(&mut self) -> Result<rusqlite::Transaction<'_>, AlertsError> {
        Ok(self.conn.transaction()?)
    }

    /// One alert.
    pub fn alert(&self, id: &str) -> Result<Option<AlertRow>, AlertsError> {
        alert(&self.conn, id)
    }

    /// Alerts, newest first, filtered.
    pub fn alerts(&self, f: &AlertFilter<'_>, limit: usize) -> Result<Vec<AlertRow>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{ALERT_COLUMNS} WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR rule = ?2)
               AND (?3 IS NULL OR severity = ?3) AND (?4 IS NULL OR since_ms >= ?4)
               AND (?5 IS NULL OR json_extract(body, '$.labels.domain') = ?5)
               AND (?6 IS NULL OR json_extract(body, '$.labels.district') = ?6)
               AND (?7 IS NULL OR json_extract(body, '$.labels.maintenance_unit') = ?7)
             ORDER BY since_ms DESC, id LIMIT ?8"
        ))?;
        let rows = stmt.query_map(
            params![
                f.state,
                f.rule,
                f.severity,
                f.since_ms.map(|s| s as i64),
                f.domain,
                f.district,
                f.unit,
                limit as i64
            ],
            alert_row,
        )?;
        parsed(rows)
    }

    /// Transitions after `seq`, oldest first (at most `limit`).
    pub fn transitions_after(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<TransitionRow>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{TRANSITION_COLUMNS} WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![seq as i64, limit as i64], transition_row)?;
        parsed(rows)
    }

    /// The transitions of one alert.
    pub fn transitions_of(&self, alert_id: &str) -> Result<Vec<TransitionRow>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{TRANSITION_COLUMNS} WHERE alert_id = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![alert_id], transition_row)?;
        parsed(rows)
    }

    /// Notifications, optionally of one alert, newest first.
    pub fn notifications(
        &self,
        alert_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, AlertsError> {
        // Two statements: one `?1 IS NULL OR …` query cannot use the alert index.
        let sql = match alert_id {
            Some(_) => {
                format!("{NOTIFICATION_COLUMNS} WHERE alert_id = ?1 ORDER BY id DESC LIMIT ?2")
            }
            None => format!("{NOTIFICATION_COLUMNS} WHERE ?1 IS NULL ORDER BY id DESC LIMIT ?2"),
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![alert_id, limit as i64], notification_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Pending notifications due at `now_ms`, earliest first: only what the delivery loop
    /// needs to pick them (it lists them often).
    pub fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<Due>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, attempts, grp FROM outbox WHERE status = 'pending' AND next_ms <= ?1 ORDER BY next_ms, id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms as i64, limit as i64], |r| {
            Ok(Due {
                id: r.get::<_, i64>(0)? as u64,
                attempts: r.get(1)?,
                group: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One notification, if it is still pending after `attempts` attempts (the delivery
    /// loop's listing may predate an attempt that finished since).
    pub fn pending(&self, due: &Due) -> Result<Option<NotificationRow>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{NOTIFICATION_COLUMNS} WHERE id = ?1 AND status = 'pending' AND attempts = ?2"
        ))?;
        Ok(stmt
            .query_row(params![due.id as i64, due.attempts], notification_row)
            .optional()?)
    }

    /// The pending notifications of a group, oldest first (at most `limit`).
    pub fn group(&self, group: &str, limit: usize) -> Result<Vec<NotificationRow>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{NOTIFICATION_COLUMNS} WHERE grp = ?1 AND status = 'pending' ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![group, limit as i64], notification_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records delivery attempts' outcomes, in one transaction.
    pub fn record_all(&mut self, attempts: &[Attempt<'_>]) -> Result<(), AlertsError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE outbox SET status = ?2, attempts = ?3, next_ms = ?4, last_error = ?5, delivered_ms = ?6 WHERE id = ?1",
            )?;
            for (id, status, n, next_ms, error, delivered_ms) in attempts {
                stmt.execute(params![
                    *id as i64,
                    status,
                    n,
                    *next_ms as i64,
                    error,
                    delivered_ms.map(|d| d as i64)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Alerts firing now, by (severity, domain).
    pub fn firing_by(&self) -> Result<Vec<(String, String, u64)>, AlertsError> {
        self.firing_by_of(None)
    }

    /// As [`Journal::firing_by`], of one maintenance unit's alerts when `unit` is given.
    pub fn firing_by_of(
        &self,
        unit: Option<&str>,
    ) -> Result<Vec<(String, String, u64)>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT severity, COALESCE(json_extract(body, '$.labels.domain'), ''), COUNT(*)
             FROM alerts WHERE state = 'firing'
               AND (?1 IS NULL OR json_extract(body, '$.labels.maintenance_unit') = ?1)
             GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let rows = stmt.query_map(params![unit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many alerts fire now with `labels.<label> = value`.
    pub fn firing_with(&self, label: &str, value: &str) -> Result<u64, AlertsError> {
        self.firing_with_of(label, value, None)
    }

    /// As [`Journal::firing_with`], of one maintenance unit's alerts when `unit` is given.
    pub fn firing_with_of(
        &self,
        label: &str,
        value: &str,
        unit: Option<&str>,
    ) -> Result<u64, AlertsError> {
        Ok(self.conn.prepare_cached(
            "SELECT COUNT(*) FROM alerts WHERE state = 'firing' AND json_extract(body, '$.labels.' || ?1) = ?2
               AND (?3 IS NULL OR json_extract(body, '$.labels.maintenance_unit') = ?3)",
        )?
        .query_row(params![label, value, unit], |r| r.get::<_, i64>(0))? as u64)
    }

    /// What the control room's tiles show about alerts now; `since_ms` starts "today".
    pub fn overview(&self, since_ms: u64) -> Result<Overview, AlertsError> {
        let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<u64, AlertsError> {
            Ok(self
                .conn
                .prepare_cached(sql)?
                .query_row(p, |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(Overview {
            firing: self.firing()?,
            unacknowledged: count(
                "SELECT COUNT(*) FROM alerts WHERE +state = 'firing' AND acked_ms IS NULL",
                &[],
            )?,
            elevators_in_fault: count(
                "SELECT COUNT(DISTINCT json_extract(body, '$.labels.elevator_id')) FROM alerts
                 WHERE state = 'firing' AND rule LIKE 'elevator.%' AND rule != 'elevator.offline'",
                &[],
            )?,
            trapped: self.firing_with("fault", "trapped")?,
            residue_failed_today: count(
                "SELECT COUNT(*) FROM alerts WHERE rule = ?1 AND opened_ms >= ?2",
                &[&HOLD_RULE, &(since_ms as i64)],
            )?,
            stalls_on_hold: count(
                "SELECT COUNT(*) FROM alerts WHERE state = 'firing' AND rule = ?1",
                &[&HOLD_RULE],
            )?,
            group_risk_firing: count(
                "SELECT COUNT(*) FROM alerts WHERE state = 'firing' AND rule LIKE 'complaint.%group_risk'",
                &[],
            )?,
            deadline_near: count(
                "SELECT COUNT(*) FROM alerts WHERE state = 'firing'
                 AND json_extract(body, '$.labels.deadline') IS NOT NULL AND rule LIKE '%near'",
                &[],
            )?,
            overdue: count(
                "SELECT COUNT(*) FROM alerts WHERE state = 'firing'
                 AND json_extract(body, '$.labels.deadline') IS NOT NULL AND rule LIKE '%overdue'",
                &[],
            )?,
        })
    }

    /// How many alerts fire now.
    pub fn firing(&self) -> Result<u64, AlertsError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM alerts WHERE state = 'firing'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Silences, newest first; only those not yet ended at `now_ms` unless `all`.
    pub fn silences(&self, now_ms: u64, all: bool) -> Result<Vec<SilenceRow>, AlertsError> {
        silences(&self.conn, now_ms, all)
    }

    /// The escalation steps of one alert.
    pub fn escalations_of(&self, alert_id: &str) -> Result<Vec<EscalationRow>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{ESCALATION_COLUMNS} WHERE alert_id = ?1 ORDER BY episode, step"
        ))?;
        let rows = stmt.query_map(params![alert_id], escalation_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per maintenance unit, over alerts opened since `since_ms`: (unit, alerts, acknowledged,
    /// mean ms to acknowledge, resolved, mean ms to resolve).
    pub fn unit_times(&self, since_ms: u64) -> Result<Vec<UnitTimes>, AlertsError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT json_extract(body, '$.labels.maintenance_unit') AS unit, COUNT(*),
                    COUNT(acked_ms), AVG(acked_ms - opened_ms),
                    SUM(state = 'resolved'),
                    AVG(CASE WHEN state = 'resolved' THEN json_extract(body, '$.ops.closed_ms') - opened_ms END)
             FROM alerts WHERE opened_ms >= ?1 AND unit IS NOT NULL GROUP BY unit ORDER BY unit",
        )?;
        let rows = stmt.query_map(params![since_ms as i64], |r| {
            Ok(UnitTimes {
                unit: r.get(0)?,
                alerts: r.get::<_, i64>(1)? as u64,
                acknowledged: r.get::<_, i64>(2)? as u64,
                mean_ack_ms: r.get::<_, Option<f64>>(3)?,
                resolved: r.get::<_, Option<i64>>(4)?.unwrap_or(0) as u64,
                mean_resolve_ms: r.get::<_, Option<f64>>(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Alert counts for the control room's tiles.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// Alerts firing now.
    pub firing: u64,
    /// Firing and nobody has acknowledged them.
    pub unacknowledged: u64,
    /// Elevators with a firing fault alert (offline is not a fault).
    pub elevators_in_fault: u64,
    /// Firing trapped-passenger alerts.
    pub trapped: u64,
    /// Failed pesticide-residue tests (alerts of `market.residue_fail` opened since `since_ms`).
    pub residue_failed_today: u64,
    /// A stall's goods on hold now: `market.residue_fail` firing, until a later test of the
    /// same stall and goods passes.
    pub stalls_on_hold: u64,
    /// Group-complaint risks firing now.
    pub group_risk_firing: u64,
    /// Complaints and reports within a working day of a handling limit (rules labelled
    /// `deadline`, ids ending in `near`).
    pub deadline_near: u64,
    /// Complaints and reports past a handling limit (ids ending in `overdue`).
    pub overdue: u64,
}

/// Response times of one maintenance unit.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UnitTimes {
    pub unit: String,
    pub alerts: u64,
    pub acknowledged: u64,
    pub mean_ack_ms: Option<f64>,
    pub resolved: u64,
    pub mean_resolve_ms: Option<f64>,
}

/// What `GET /api/v1/alerts` filters on; `None` matches everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertFilter<'a> {
    pub state: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub since_ms: Option<u64>,
    pub domain: Option<&'a str>,
    pub district: Option<&'a str>,
    pub unit: Option<&'a str>,
}

const ALERT_COLUMNS: &str = "SELECT id, rule, grp, severity, state, value, since_ms, resolved_ms, version, body, episode, opened_ms, acked_ms, suppressed, repeat_due_ms FROM alerts";
const TRANSITION_COLUMNS: &str =
    "SELECT seq, alert_id, version, state, at_ms, body, event FROM transitions";
const NOTIFICATION_COLUMNS: &str = "SELECT id, alert_id, version, receiver_id, kind, target, secret, body, idem_key, status, attempts, next_ms, last_error, delivered_ms, grp FROM outbox";
const ESCALATION_COLUMNS: &str =
    "SELECT alert_id, episode, step, due_ms, status, policy FROM escalations";

pub(crate) fn alert(conn: &Connection, id: &str) -> Result<Option<AlertRow>, AlertsError> {
    let mut stmt = conn.prepare_cached(&format!("{ALERT_COLUMNS} WHERE id = ?1"))?;
    let row = stmt.query_row(params![id], alert_row).optional()?;
    row.transpose().map_err(AlertsError::from)
}

/// Alerts selected by a condition on the alerts table (a `WHERE` clause with one parameter).
/// Hot conditions write `+state` so that SQLite does not walk the index of every firing alert
/// when a narrower one (id, `suppressed`, `repeat_due_ms`) applies.
pub(crate) fn alerts_where(
    conn: &Connection,
    condition: &str,
    param: impl rusqlite::ToSql,
) -> Result<Vec<AlertRow>, AlertsError> {
    let mut stmt = conn.prepare_cached(&format!("{ALERT_COLUMNS} WHERE {condition}"))?;
    let rows = stmt.query_map(params![param], alert_row)?;
    parsed(rows)
}

/// Writes every column of an alert.
pub(crate) fn save(conn: &Connection, a: &AlertRow) -> Result<(), AlertsError> {
    conn.prepare_cached(
        "INSERT INTO alerts (id, rule, grp, severity, state, value, since_ms, resolved_ms, version, body, episode, opened_ms, acked_ms, suppressed, repeat_due_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT(id) DO UPDATE SET severity = ?4, state = ?5, value = ?6, since_ms = ?7,
             resolved_ms = ?8, version = ?9, body = ?10, episode = ?11, opened_ms = ?12,
             acked_ms = ?13, suppressed = ?14, repeat_due_ms = ?15",
    )?
    .execute(params![
            a.id,
            a.rule,
            a.group,
            a.severity,
            a.state,
            a.value,
            a.since_ms as i64,
            a.resolved_ms.map(|v| v as i64),
            a.version as i64,
            a.body.to_string(),
            a.episode as i64,
            a.opened_ms as i64,
            a.acked_ms.map(|v| v as i64),
            a.suppressed,
            a.repeat_due_ms.map(|v| v as i64),
        ])?;
    Ok(())
}

pub(crate) fn silences(
    conn: &Connection,
    now_ms: u64,
    all: bool,
) -> Result<Vec<SilenceRow>, AlertsError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, matchers, starts_ms, ends_ms, author, reason, created_ms FROM silences
         WHERE ?2 OR ends_ms > ?1 ORDER BY created_ms DESC, id",
    )?;
    let rows = stmt.query_map(params![now_ms as i64, all], |r| {
        let matchers: String = r.get(1)?;
        Ok((
            matchers,
            SilenceRow {
                id: r.get(0)?,
                matchers: Vec::new(),
                starts_ms: r.get::<_, i64>(2)? as u64,
                ends_ms: r.get::<_, i64>(3)? as u64,
                author: r.get(4)?,
                reason: r.get(5)?,
                created_ms: r.get::<_, i64>(6)? as u64,
            },
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (matchers, mut s) = r?;
        s.matchers = serde_json::from_str(&matchers)?;
        out.push(s);
    }
    Ok(out)
}

pub(crate) fn due_escalations(
    conn: &Connection,
    now_ms: u64,
) -> Result<Vec<EscalationRow>, AlertsError> {
    let mut stmt = conn.prepare(&format!(
        "{ESCALATION_COLUMNS} WHERE status = 'pending' AND due_ms <= ?1 ORDER BY due_ms, alert_id, step"
    ))?;
    let rows = stmt.query_map(params![now_ms as i64], escalation_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Rows whose JSON column is parsed as they are read: the first failure of either kind.
fn parsed<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, serde_json::Error>>>,
) -> Result<Vec<T>, AlertsError> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AlertRow, serde_json::Error>> {
    let body: String = r.get(9)?;
    let opt = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.map(|v| v as u64));
    let row = AlertRow {
        id: r.get(0)?,
        rule: r.get(1)?,
        group: r.get(2)?,
        severity: r.get(3)?,
        state: r.get(4)?,
        value: r.get(5)?,
        since_ms: r.get::<_, i64>(6)? as u64,
        resolved_ms: opt(7)?,
        version: r.get::<_, i64>(8)? as u64,
        body: serde_json::Value::Null,
        episode: r.get::<_, i64>(10)? as u64,
        opened_ms: r.get::<_, i64>(11)? as u64,
        acked_ms: opt(12)?,
        suppressed: r.get(13)?,
        repeat_due_ms: opt(14)?,
    };
    Ok(serde_json::from_str(&body).map(|body| AlertRow { body, ..row }))
}

fn transition_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<TransitionRow, serde_json::Error>> {
    let body: String = r.get(5)?;
    let row = TransitionRow {
        seq: r.get::<_, i64>(0)? as u64,
        alert_id: r.get(1)?,
        version: r.get::<_, i64>(2)? as u64,
        state: r.get(3)?,
        at_ms: r.get::<_, i64>(4)? as u64,
        body: serde_json::Value::Null,
        event: r.get(6)?,
    };
    Ok(serde_json::from_str(&body).map(|body| TransitionRow { body, ..row }))
}

fn notification_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: r.get::<_, i64>(0)? as u64,
        alert_id: r.get(1)?,
        version: r.get::<_, i64>(2)? as u64,
        receiver_id: r.get(3)?,
        kind: r.get(4)?,
        target: r.get(5)?,
        secret: r.get(6)?,
        body: r.get(7)?,
        idempotency_key: r.get(8)?,
        status: r.get(9)?,
        attempts: r.get(10)?,
        next_ms: r.get::<_, i64>(11)? as u64,
        last_error: r.get(12)?,
        delivered_ms: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
        group: r.get(14)?,
    })
}

fn escalation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EscalationRow> {
    Ok(EscalationRow {
        alert_id: r.get(0)?,
        episode: r.get::<_, i64>(1)? as u64,
        step: r.get::<_, i64>(2)? as u32,
        due_ms: r.get::<_, i64>(3)? as u64,
        status: r.get(4)?,
        policy: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_transitions_are_read_by_name_and_an_unknown_name_is_named() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let read = |sql: &str| c.query_row(sql, [], |r| r.get::<_, AlertState>(0));
        assert_eq!(read("SELECT 'firing'").unwrap(), AlertState::Firing);
        let err = read("SELECT 'frozen'").unwrap_err().to_string();
        assert!(err.contains("not a known AlertState: frozen"), "{err}");
        let event = c.query_row("SELECT 'field_state'", [], |r| {
            r.get::<_, TransitionEvent>(0)
        });
        assert_eq!(event.unwrap(), "field_state");
    }

    #[test]
    fn a_version_1_journal_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE alerts (id TEXT PRIMARY KEY, rule TEXT NOT NULL, grp TEXT NOT NULL,
                   severity TEXT NOT NULL, state TEXT NOT NULL, value REAL NOT NULL,
                   since_ms INTEGER NOT NULL, resolved_ms INTEGER, version INTEGER NOT NULL,
                   body TEXT NOT NULL);
                 CREATE TABLE transitions (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                   alert_id TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL,
                   at_ms INTEGER NOT NULL, body TEXT NOT NULL);
                 INSERT INTO alerts VALUES ('a', 'r', 'g', 'major', 'firing', 1.0, 5, NULL, 1, '{}');",
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let a = j.alert("a").unwrap().unwrap();
        assert_eq!(
            (a.state.as_str(), a.episode, a.acked_ms),
            ("firing", 1, None)
        );
        drop(j);
        // Opening again is a no-op.
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.firing().unwrap(), 1);
    }
}
