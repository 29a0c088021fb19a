//! The journal: SQLite in WAL mode. `alerts` holds each alert's state, `transitions` every
//! change (its `seq` orders them and numbers the SSE events), `outbox` every notification to
//! deliver and how it went.

use crate::AlertsError;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, rule TEXT NOT NULL, grp TEXT NOT NULL, severity TEXT NOT NULL,
    state TEXT NOT NULL, value REAL NOT NULL, since_ms INTEGER NOT NULL, resolved_ms INTEGER,
    version INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, version INTEGER NOT NULL,
    state TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, version INTEGER NOT NULL,
    receiver_id TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, secret TEXT NOT NULL,
    body TEXT NOT NULL, idem_key TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL, last_error TEXT,
    delivered_ms INTEGER);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_ms);
CREATE INDEX IF NOT EXISTS transitions_alert ON transitions (alert_id);
";

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: String,
    pub rule: String,
    pub group: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub value: f64,
    pub since_ms: u64,
    pub resolved_ms: Option<u64>,
    pub version: u64,
    /// Labels, annotations, description: what notifications carry.
    pub body: serde_json::Value,
}

/// A transition as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionRow {
    pub seq: u64,
    pub alert_id: String,
    pub version: u64,
    pub state: String,
    pub at_ms: u64,
    /// The notification body of this transition.
    pub body: serde_json::Value,
}

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub next_ms: u64,
    pub last_error: Option<String>,
    pub delivered_ms: Option<u64>,
}

/// The journal.
pub struct Journal {
    conn: Connection,
}

impl Journal {
    /// Opens (or creates) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, AlertsError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Journal { conn })
    }

    /// A transaction, for appending a transition with its notifications atomically.
    pub fn transaction(&mut self) -> Result<rusqlite::Transaction<'_>, AlertsError> {
        Ok(self.conn.transaction()?)
    }

    /// One alert.
    pub fn alert(&self, id: &str) -> Result<Option<AlertRow>, AlertsError> {
        alert(&self.conn, id)
    }

    /// Alerts, newest first, optionally of one state / rule / severity.
    pub fn alerts(
        &self,
        state: Option<&str>,
        rule: Option<&str>,
        severity: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AlertRow>, AlertsError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, rule, grp, severity, state, value, since_ms, resolved_ms, version, body FROM alerts
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR rule = ?2) AND (?3 IS NULL OR severity = ?3)
             ORDER BY since_ms DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![state, rule, severity, limit as i64], alert_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// Transitions after `seq`, oldest first (at most `limit`).
    pub fn transitions_after(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<TransitionRow>, AlertsError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, alert_id, version, state, at_ms, body FROM transitions WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![seq as i64, limit as i64], transition_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// The transitions of one alert.
    pub fn transitions_of(&self, alert_id: &str) -> Result<Vec<TransitionRow>, AlertsError> {
        let mut stmt = self.conn.prepare("SELECT seq, alert_id, version, state, at_ms, body FROM transitions WHERE alert_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![alert_id], transition_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// Notifications, optionally of one alert, newest first.
    pub fn notifications(
        &self,
        alert_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, AlertsError> {
        let mut stmt = self.conn.prepare(&format!(
            "{NOTIFICATION_COLUMNS} WHERE (?1 IS NULL OR alert_id = ?1) ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![alert_id, limit as i64], notification_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Pending notifications due at `now_ms`, oldest first.
    pub fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<NotificationRow>, AlertsError> {
        let mut stmt = self.conn.prepare(&format!(
            "{NOTIFICATION_COLUMNS} WHERE status = 'pending' AND next_ms <= ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms as i64, limit as i64], notification_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a delivery attempt's outcome.
    pub fn record(
        &self,
        id: u64,
        status: &str,
        attempts: u32,
        next_ms: u64,
        error: Option<&str>,
        delivered_ms: Option<u64>,
    ) -> Result<(), AlertsError> {
        self.conn.execute(
            "UPDATE outbox SET status = ?2, attempts = ?3, next_ms = ?4, last_error = ?5, delivered_ms = ?6 WHERE id = ?1",
            params![id as i64, status, attempts, next_ms as i64, error, delivered_ms.map(|d| d as i64)],
        )?;
        Ok(())
    }

    /// How many alerts fire now.
    pub fn firing(&self) -> Result<u64, AlertsError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM alerts WHERE state = 'firing'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}

const NOTIFICATION_COLUMNS: &str = "SELECT id, alert_id, version, receiver_id, kind, target, secret, body, idem_key, status, attempts, next_ms, last_error, delivered_ms FROM outbox";

pub(crate) fn alert(conn: &Connection, id: &str) -> Result<Option<AlertRow>, AlertsError> {
    let row = conn
        .query_row(
            "SELECT id, rule, grp, severity, state, value, since_ms, resolved_ms, version, body FROM alerts WHERE id = ?1",
            params![id],
            alert_row,
        )
        .optional()?;
    row.transpose().map_err(AlertsError::from)
}

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AlertRow, serde_json::Error>> {
    let body: String = r.get(9)?;
    Ok(serde_json::from_str(&body).map(|body| AlertRow {
        id: r.get(0).unwrap_or_default(),
        rule: r.get(1).unwrap_or_default(),
        group: r.get(2).unwrap_or_default(),
        severity: r.get(3).unwrap_or_default(),
        state: r.get(4).unwrap_or_default(),
        value: r.get(5).unwrap_or_default(),
        since_ms: r.get::<_, i64>(6).unwrap_or_default() as u64,
        resolved_ms: r
            .get::<_, Option<i64>>(7)
            .unwrap_or_default()
            .map(|v| v as u64),
        version: r.get::<_, i64>(8).unwrap_or_default() as u64,
        body,
    }))
}

fn transition_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<TransitionRow, serde_json::Error>> {
    let body: String = r.get(5)?;
    Ok(serde_json::from_str(&body).map(|body| TransitionRow {
        seq: r.get::<_, i64>(0).unwrap_or_default() as u64,
        alert_id: r.get(1).unwrap_or_default(),
        version: r.get::<_, i64>(2).unwrap_or_default() as u64,
        state: r.get(3).unwrap_or_default(),
        at_ms: r.get::<_, i64>(4).unwrap_or_default() as u64,
        body,
    }))
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
    })
}
