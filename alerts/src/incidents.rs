//! Incidents (docs/explain.md §3): an alert and a complaint that an incident rule joins, kept
//! as one case with its own lifecycle (open, assigned, closed with a finding), routed to the
//! office of its first alert.
//!
//! The dataflow hands each joined pair with the conditions; here a pair joins the open
//! incident of its rule and subject whose latest member lies within the rule's time bound,
//! else opens one. Both members are journaled once (a pair found again after a restart adds
//! nothing), in the snapshot's transaction. `seq` numbers every change of every incident, so
//! a client of the live stream resumes after the last one it saw.

use crate::AlertsError;
use crate::journal::Journal;
use control::conditions::Joined;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, severity TEXT NOT NULL,
    state TEXT NOT NULL, office TEXT, assignee TEXT, finding TEXT,
    opened_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, closed_ms INTEGER,
    seq INTEGER NOT NULL, log TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (rule, subject, state);
CREATE INDEX IF NOT EXISTS incidents_seq ON incidents (seq);
CREATE TABLE IF NOT EXISTS incident_members (
    incident_id TEXT NOT NULL, kind TEXT NOT NULL, member TEXT NOT NULL,
    since_ms INTEGER NOT NULL, joined_ms INTEGER NOT NULL, detail TEXT NOT NULL,
    PRIMARY KEY (incident_id, kind, member, since_ms));
CREATE INDEX IF NOT EXISTS incident_members_by ON incident_members (kind, member);
";

/// An incident as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentRow {
    pub id: String,
    /// The incident rule.
    pub rule: String,
    /// What its members are about: `elevator/E0042`, `kitchen/K001`, `merchant/M001`.
    pub subject: String,
    pub severity: String,
    /// `open`, `assigned` or `closed`.
    pub state: String,
    /// The office of its first alert (none: the alert named no office).
    pub office: Option<String>,
    pub assignee: Option<String>,
    /// What the closing operator found.
    pub finding: Option<String>,
    /// Its earliest member's time (event time).
    pub opened_ms: u64,
    /// Its latest member's time.
    pub last_ms: u64,
    /// When an operator closed it (wall clock).
    pub closed_ms: Option<u64>,
    /// Increases with every change of any incident.
    pub seq: u64,
    /// The operators' actions, oldest first (`{at_ms, by, action, text}`).
    #[schema(value_type = Object)]
    pub log: serde_json::Value,
}

/// A member of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MemberRow {
    /// `alert` or `complaint`.
    pub kind: String,
    /// The alert's id or the complaint's id.
    pub member: String,
    /// The alert episode's start, or the complaint's time.
    pub since_ms: u64,
    /// When the dataflow found it joined (event time).
    pub joined_ms: u64,
    /// The alert's rule and group; the complaint's distance from the device.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// What an operator does to an incident.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum IncidentAction {
    Assign {
        to: String,
    },
    Comment {
        text: String,
    },
    /// Closes it with what was found (required).
    Close {
        finding: String,
    },
}

/// Which incidents a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct IncidentFilter<'a> {
    /// `open`, `assigned` or `closed`.
    pub state: Option<&'a str>,
    /// The office it is routed to.
    pub office: Option<&'a str>,
}

const COLUMNS: &str = "id, rule, subject, severity, state, office, assignee, finding, opened_ms, \
                       last_ms, closed_ms, seq, log";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRow> {
    let log: String = r.get(12)?;
    Ok(IncidentRow {
        id: r.get(0)?,
        rule: r.get(1)?,
        subject: r.get(2)?,
        severity: r.get(3)?,
        state: r.get(4)?,
        office: r.get(5)?,
        assignee: r.get(6)?,
        finding: r.get(7)?,
        opened_ms: r.get::<_, i64>(8)? as u64,
        last_ms: r.get::<_, i64>(9)? as u64,
        closed_ms: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        seq: r.get::<_, i64>(11)? as u64,
        log: serde_json::from_str(&log).unwrap_or_default(),
    })
}

fn next_seq(tx: &Transaction<'_>) -> Result<u64, AlertsError> {
    let max: Option<i64> = tx.query_row("SELECT MAX(seq) FROM incidents", [], |r| r.get(0))?;
    Ok(max.unwrap_or(0) as u64 + 1)
}

pub(crate) fn incident(tx: &Transaction<'_>, id: &str) -> Result<Option<IncidentRow>, AlertsError> {
    let sql = format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1");
    Ok(tx.query_row(&sql, params![id], row).optional()?)
}

/// Journals a joined pair found at `at`: into the open incident of its rule and subject that
/// is recent enough, else a new one (its office `office`, its severity `severity`). The
/// incident after it, when anything changed.
pub(crate) fn join(
    tx: &Transaction<'_>,
    j: &Joined,
    at: u64,
    severity: &str,
    office: Option<String>,
) -> Result<Option<IncidentRow>, AlertsError> {
    let first = j.since.min(j.complaint_ms);
    let last = j.since.max(j.complaint_ms);
    let alert = crate::fingerprint(&j.rule, &j.group);
    if joined_before(tx, j, &alert)? {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM incidents WHERE rule = ?1 AND subject = ?2 AND state != 'closed'
         AND last_ms + ?3 >= ?4 ORDER BY opened_ms DESC LIMIT 1"
    );
    let open = tx
        .query_row(
            &sql,
            params![j.incident, j.subject, j.within_ms as i64, first as i64],
            row,
        )
        .optional()?;
    let (id, fresh) = match open {
        Some(i) => (i.id, false),
        None => {
            // Named by the pair that opens it: after a close, the same alert with another
            // complaint opens another.
            let id = format!(
                "inc-{:016x}",
                crate::fnv([
                    j.incident.as_bytes(),
                    &[0],
                    j.subject.as_bytes(),
                    &first.to_be_bytes(),
                    alert.as_bytes(),
                    &[0],
                    j.complaint_id.as_bytes(),
                ])
            );
            tx.execute(
                "INSERT OR IGNORE INTO incidents (id, rule, subject, severity, state, office,
                 opened_ms, last_ms, seq) VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?6, 0)",
                params![id, j.incident, j.subject, severity, office, first as i64],
            )?;
            (id, true)
        }
    };
    let members = [
        (
            "alert",
            alert,
            j.since,
            serde_json::json!({"rule": j.rule, "group": j.group}),
        ),
        (
            "complaint",
            j.complaint_id.clone(),
            j.complaint_ms,
            serde_json::json!({"distance_m": j.distance_m}),
        ),
    ];
    let mut added = 0;
    for (kind, member, since, detail) in members {
        added += tx.execute(
            "INSERT OR IGNORE INTO incident_members (incident_id, kind, member, since_ms,
             joined_ms, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                kind,
                member,
                since as i64,
                at as i64,
                detail.to_string()
            ],
        )?;
    }
    if added == 0 && !fresh {
        return Ok(None);
    }
    let seq = next_seq(tx)?;
    tx.execute(
        "UPDATE incidents SET last_ms = MAX(last_ms, ?2), opened_ms = MIN(opened_ms, ?3),
         seq = ?4 WHERE id = ?1",
        params![id, last as i64, first as i64, seq as i64],
    )?;
    incident(tx, &id)
}

/// Whether both members of `j` are already in one incident of its rule (a pair found again
/// after a restart, its incident closed meanwhile or not).
fn joined_before(tx: &Transaction<'_>, j: &Joined, alert: &str) -> Result<bool, AlertsError> {
    let found: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM incident_members a JOIN incident_members c
             ON a.incident_id = c.incident_id JOIN incidents i ON i.id = a.incident_id
             WHERE i.rule = ?1 AND a.kind = 'alert' AND a.member = ?2 AND a.since_ms = ?3
             AND c.kind = 'complaint' AND c.member = ?4 LIMIT 1",
            params![j.incident, alert, j.since as i64, j.complaint_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(found.is_some())
}

/// Applies an operator's action; the incident after it.
pub(crate) fn act(
    tx: &Transaction<'_>,
    id: &str,
    action: &IncidentAction,
    by: &str,
    now: u64,
) -> Result<IncidentRow, crate::ActError> {
    let i = incident(tx, id)?.ok_or_else(|| crate::ActError::NotFound(id.into()))?;
    if i.state == "closed" {
        return Err(crate::ActError::Conflict(format!(
            "incident {id} is closed"
        )));
    }
    let (name, text) = match action {
        IncidentAction::Assign { to } => ("assign", to),
        IncidentAction::Comment { text } => ("comment", text),
        IncidentAction::Close { finding } => ("close", finding),
    };
    if text.trim().is_empty() {
        return Err(crate::ActError::Conflict(format!(
            "{name} needs a non-empty text"
        )));
    }
    let mut log = i.log.as_array().cloned().unwrap_or_default();
    log.push(serde_json::json!({"at_ms": now, "by": by, "action": name, "text": text}));
    let log = serde_json::Value::Array(log).to_string();
    let seq = next_seq(tx)? as i64;
    match action {
        IncidentAction::Assign { to } => tx.execute(
            "UPDATE incidents SET state = 'assigned', assignee = ?2, log = ?3, seq = ?4 WHERE id = ?1",
            params![id, to, log, seq],
        )?,
        IncidentAction::Comment { .. } => tx.execute(
            "UPDATE incidents SET log = ?2, seq = ?3 WHERE id = ?1",
            params![id, log, seq],
        )?,
        IncidentAction::Close { finding } => tx.execute(
            "UPDATE incidents SET state = 'closed', finding = ?2, closed_ms = ?3, log = ?4,
             seq = ?5 WHERE id = ?1",
            params![id, finding, now as i64, log, seq],
        )?,
    };
    incident(tx, id)?.ok_or_else(|| crate::ActError::NotFound(id.into()))
}

impl Journal {
    /// Incidents, most recently changed first: those in `filter.state` and of `filter.office`
    /// when given, at most `limit`; with `after_seq`, only those changed after it, oldest
    /// change first.
    pub fn incidents(
        &self,
        filter: &IncidentFilter<'_>,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<IncidentRow>, AlertsError> {
        let order = if after_seq.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {COLUMNS} FROM incidents WHERE (?1 IS NULL OR state = ?1)
             AND (?2 IS NULL OR office = ?2) AND (?3 IS NULL OR seq > ?3)
             ORDER BY seq {order} LIMIT ?4"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                filter.state,
                filter.office,
                after_seq.map(|s| s as i64),
                limit as i64
            ],
            row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One incident and its members, oldest first.
    pub fn incident(&self, id: &str) -> Result<Option<(IncidentRow, Vec<MemberRow>)>, AlertsError> {
        let sql = format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1");
        let Some(i) = self.conn().query_row(&sql, params![id], row).optional()? else {
            return Ok(None);
        };
        let mut stmt = self.conn().prepare_cached(
            "SELECT kind, member, since_ms, joined_ms, detail FROM incident_members
             WHERE incident_id = ?1 ORDER BY since_ms, kind, member",
        )?;
        let members = stmt
            .query_map(params![id], |r| {
                let detail: String = r.get(4)?;
                Ok(MemberRow {
                    kind: r.get(0)?,
                    member: r.get(1)?,
                    since_ms: r.get::<_, i64>(2)? as u64,
                    joined_ms: r.get::<_, i64>(3)? as u64,
                    detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some((i, members)))
    }

    /// (rule, group, episode start) of every alert whose latest episode started at or after
    /// `from_ms`: what incident rules may still join after a restart.
    pub fn alert_starts_since(
        &self,
        from_ms: u64,
    ) -> Result<Vec<(String, String, u64)>, AlertsError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT rule, grp, since_ms FROM alerts WHERE since_ms >= ?1")?;
        let rows = stmt.query_map(params![from_ms as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The incidents an alert or a complaint (`kind`) is a member of, newest first.
    pub fn incidents_of(&self, kind: &str, member: &str) -> Result<Vec<String>, AlertsError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT DISTINCT m.incident_id FROM incident_members m JOIN incidents i
             ON i.id = m.incident_id WHERE m.kind = ?1 AND m.member = ?2 ORDER BY i.opened_ms DESC",
        )?;
        let ids = stmt.query_map(params![kind, member], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }
}
