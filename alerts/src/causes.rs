//! What made each episode of an alert fire (docs/explain.md): the cause the dataflow handed
//! with the start (the matched events, a window's items), journaled in the start's
//! transaction with the rule as it was in force, so it survives restarts and outlives the
//! events themselves.

use crate::AlertsError;
use crate::journal::Journal;
use control::conditions::Cause;
use rusqlite::params;
use serde::{Deserialize, Serialize};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS causes (
    alert_id TEXT NOT NULL, since_ms INTEGER NOT NULL, at_ms INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (alert_id, since_ms));
";

/// An episode's cause, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseRow {
    pub alert_id: String,
    /// The episode's start.
    pub since_ms: u64,
    /// When the start was known (event time).
    pub at_ms: u64,
    /// The rule in force when it started.
    pub rule: rules::RuleSource,
    pub cause: Cause,
}

/// What the body column holds.
#[derive(Serialize, Deserialize)]
struct Body {
    rule: rules::RuleSource,
    cause: Cause,
}

/// Journals `cause`, the start of `alert_id`'s episode under `rule`, known at `at_ms` (once:
/// a start fed again after a crash keeps the first).
pub(crate) fn put(
    tx: &rusqlite::Transaction<'_>,
    alert_id: &str,
    at_ms: u64,
    rule: &rules::Rule,
    cause: &Cause,
) -> Result<(), AlertsError> {
    let body = serde_json::to_string(&Body {
        rule: rule.source.clone(),
        cause: cause.clone(),
    })?;
    tx.execute(
        "INSERT OR IGNORE INTO causes (alert_id, since_ms, at_ms, body) VALUES (?1, ?2, ?3, ?4)",
        params![alert_id, cause.since as i64, at_ms as i64, body],
    )?;
    Ok(())
}

impl Journal {
    /// The causes of an alert's episodes, newest first, at most `limit`; with `since_ms`,
    /// only that episode's.
    pub fn causes_of(
        &self,
        alert_id: &str,
        since_ms: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CauseRow>, AlertsError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT since_ms, at_ms, body FROM causes WHERE alert_id = ?1
             AND (?2 IS NULL OR since_ms = ?2) ORDER BY since_ms DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![alert_id, since_ms.map(|s| s as i64), limit as i64],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (since, at, body) = row?;
            let b: Body = serde_json::from_str(&body)?;
            out.push(CauseRow {
                alert_id: alert_id.to_owned(),
                since_ms: since as u64,
                at_ms: at as u64,
                rule: b.rule,
                cause: b.cause,
            });
        }
        Ok(out)
    }
}
