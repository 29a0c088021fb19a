//! The alert lifecycle inside one journal transaction: opening and closing episodes,
//! operator actions, escalation steps, and holding back / releasing notifications for
//! silences and inhibition. Every change is a transition appended with the notifications it
//! causes, in the same transaction, before anything is sent.

use crate::journal::{self, AlertRow, AlertState, EscalationRow, TransitionEvent, TransitionRow};
use crate::matcher::all_match;
use crate::policy::{Policies, Unless};
use crate::{AlertsError, fingerprint, routing};
use control::Active;
use control::reference::Receiver;
use rusqlite::{Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The field states of an elevator incident (DOMAIN.md: 响应 → 到场 → 完成, or 误报).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldState {
    /// 响应: the maintenance unit has taken the call (acknowledges the alert).
    Responded,
    /// 到场: on site.
    OnSite,
    /// 完成: rescue or repair done; closes the alert.
    Done,
    /// 误报: false alarm; closes the alert as a false positive.
    FalseAlarm,
}

impl FieldState {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldState::Responded => "responded",
            FieldState::OnSite => "on_site",
            FieldState::Done => "done",
            FieldState::FalseAlarm => "false_alarm",
        }
    }

    fn rank(self) -> u8 {
        match self {
            FieldState::Responded => 1,
            FieldState::OnSite => 2,
            FieldState::Done | FieldState::FalseAlarm => 3,
        }
    }

    pub fn parse(s: &str) -> Option<FieldState> {
        [
            FieldState::Responded,
            FieldState::OnSite,
            FieldState::Done,
            FieldState::FalseAlarm,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// An operator's (or a maintenance unit's) action on an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Ack { comment: Option<String> },
    Assign { to: String },
    Comment { text: String },
    Resolve { reason: Option<String> },
    FalsePositive { reason: Option<String> },
    Field(FieldState),
}

/// Why an action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("no alert {0:?}")]
    NotFound(String),
    #[error("no silence {0:?}")]
    NoSilence(String),
    /// The action does not fit the alert's state.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] AlertsError),
}

impl From<rusqlite::Error> for ActError {
    fn from(e: rusqlite::Error) -> ActError {
        ActError::Store(e.into())
    }
}

/// One transaction's worth of lifecycle work.
pub(crate) struct Ctx<'a, 't> {
    pub tx: &'a Transaction<'t>,
    /// Wall-clock now.
    pub now: u64,
    pub directory: &'a routing::Directory,
    pub policies: &'a Policies,
    /// The transitions appended, to broadcast after commit.
    pub rows: Vec<TransitionRow>,
    /// Route roles that reached no receiver.
    pub routing_errors: u64,
    pub evidence: Option<&'a crate::service::EvidenceFn>,
    pub labels: Option<&'a crate::service::LabelsFn>,
    /// The incidents changed, to broadcast after commit.
    pub incidents: Vec<crate::IncidentRow>,
}

impl Ctx<'_, '_> {
    /// The office an alert's `office` route names first (an incident's office).
    pub(crate) fn office_of(&self, a: &AlertRow) -> Option<String> {
        let (owners, _) = self
            .directory
            .owners(&["office".to_owned()], &match_labels(a));
        owners.into_iter().next()
    }
}

/// An alert's labels with `rule` and `severity`, as matchers see them.
pub(crate) fn match_labels(a: &AlertRow) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = a.body["labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    labels.insert("rule".into(), a.rule.clone());
    labels.insert("severity".into(), a.severity.clone());
    labels
}

fn ops(a: &mut AlertRow) -> &mut serde_json::Map<String, Value> {
    if !a.body["ops"].is_object() {
        a.body["ops"] = json!({});
    }
    a.body["ops"].as_object_mut().expect("just made an object")
}

impl Ctx<'_, '_> {
    /// Appends a transition of `a` (its version bumped, its state as set by the caller).
    fn record(
        &mut self,
        a: &mut AlertRow,
        event: TransitionEvent,
        at_ms: u64,
        detail: Value,
    ) -> Result<Value, AlertsError> {
        a.version += 1;
        a.body["version"] = json!(a.version);
        a.body["state"] = json!(a.state);
        journal::save(self.tx, a)?;
        let mut body = a.body.clone();
        let mut ev = json!({ "kind": event, "at_ms": at_ms, "wall_ms": self.now });
        if let (Some(ev), Some(detail)) = (ev.as_object_mut(), detail.as_object()) {
            ev.extend(detail.clone());
        }
        body["event"] = ev;
        self.tx.prepare_cached("INSERT INTO transitions (alert_id, version, state, at_ms, body, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![a.id, a.version as i64, a.state, at_ms as i64, body.to_string(), event])?;
        self.rows.push(TransitionRow {
            seq: self.tx.last_insert_rowid() as u64,
            alert_id: a.id.clone(),
            version: a.version,
            state: a.state,
            event,
            at_ms,
            body: body.clone(),
        });
        Ok(body)
    }

    /// Queues `body` for each receiver: pending, or held while the alert is suppressed. Under
    /// a policy with `group_by`, each row carries its group (receiver, policy, label values),
    /// and a firing one waits `group_wait` for others to join it.
    fn notify(
        &mut self,
        a: &AlertRow,
        receivers: &[(String, String, String, String)],
        body: &Value,
        held: bool,
    ) -> Result<(), AlertsError> {
        let status = if held { "held" } else { "pending" };
        let policy = a.body["policy"]
            .as_str()
            .and_then(|p| self.policies.get(p))
            .filter(|p| !p.group_by.is_empty());
        let labels = match_labels(a);
        let firing = body["event"]["kind"] == "firing";
        // The secret is not copied into the row: delivery reads the receiver's current one,
        // so a rotated secret signs what is still pending.
        for (rid, kind, target, _secret) in receivers {
            let group = policy.map(|p| {
                let values: Vec<&str> = p
                    .group_by
                    .iter()
                    .map(|l| labels.get(l).map_or("", String::as_str))
                    .collect();
                format!("{rid}|{}|{}", p.name, values.join("|"))
            });
            let wait = match policy {
                Some(p) if firing => p.group_wait_ms,
                _ => 0,
            };
            self.tx.prepare_cached("INSERT OR IGNORE INTO outbox (alert_id, version, receiver_id, kind, target, secret, body, idem_key, status, next_ms, grp)
                 VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, ?8, ?9, ?10)")?.execute(params![a.id, a.version as i64, rid, kind, target, body.to_string(),
                    format!("{}-{}-{rid}", a.id, a.version), status, (self.now + wait) as i64, group])?;
        }
        Ok(())
    }

    /// The receivers told of the current episode (not those whose notices were held).
    fn told(&self, a: &AlertRow) -> Result<Vec<(String, String, String, String)>, AlertsError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT DISTINCT receiver_id, kind, target, secret FROM outbox
             WHERE alert_id = ?1 AND version >= ?2 AND +status IN ('pending', 'delivered', 'failed')",
        )?;
        let rows = stmt.query_map(params![a.id, a.episode as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sends a firing alert nobody acknowledged again, every `repeat` of its policy, to the
    /// receivers told of it. Called for alerts whose `repeat_due_ms` has passed.
    pub fn repeat(&mut self, a: &mut AlertRow) -> Result<(), AlertsError> {
        let every = a.body["policy"]
            .as_str()
            .and_then(|p| self.policies.get(p))
            .and_then(|p| p.repeat_ms);
        let (Some(every), Some(due)) = (every, a.repeat_due_ms) else {
            a.repeat_due_ms = None;
            return journal::save(self.tx, a);
        };
        if a.acked_ms.is_some() || self.now < due {
            return Ok(());
        }
        // Next time from the due time, not from now: a late tick does not shift the schedule.
        a.repeat_due_ms = Some((due + every).max(self.now + 1));
        a.suppressed = self.suppression(a)?;
        if a.suppressed.is_some() {
            // A silenced or inhibited alert is not repeated; its schedule goes on.
            return journal::save(self.tx, a);
        }
        let told = self.told(a)?;
        let done = a.body["ops"]["repeats"].as_u64().unwrap_or(0);
        ops(a).insert("repeats".into(), json!(done + 1));
        let now = self.now;
        let body = self.record(
            a,
            TransitionEvent::Repeated,
            now,
            json!({ "repeat": done + 1 }),
        )?;
        self.notify(a, &told, &body, false)
    }

    /// The receivers a list of roles reaches for this alert.
    /// Roles that reach no receiver are counted and listed on the alert (`routing_errors`).
    fn route(
        &mut self,
        a: &mut AlertRow,
        roles: &[String],
    ) -> Vec<(String, String, String, String)> {
        let labels = match_labels(a);
        let (owners, mut unresolved) = self.directory.owners(roles, &labels);
        let reached: Vec<&str> = owners
            .iter()
            .filter(|o| {
                self.directory
                    .receivers(std::slice::from_ref(*o))
                    .is_empty()
            })
            .map(String::as_str)
            .collect();
        // An owner named but without a receiver is as unreachable as a role naming nobody.
        unresolved.extend(reached.iter().map(|o| format!("{o} (no receiver)")));
        if !unresolved.is_empty() {
            self.routing_errors += unresolved.len() as u64;
            tracing::debug!(alert = %a.id, rule = %a.rule, unreachable = ?unresolved, "route reaches no receiver");
            let errors = a.body["routing_errors"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut errors: Vec<Value> = errors;
            errors.extend(unresolved.into_iter().map(Value::from));
            a.body["routing_errors"] = Value::Array(errors);
        }
        self.directory
            .receivers(&owners)
            .into_iter()
            .map(|r: &Receiver| {
                (
                    r.receiver_id.to_string(),
                    r.kind.clone(),
                    r.target.clone(),
                    r.secret.clone(),
                )
            })
            .collect()
    }

    /// Why the alert's notifications are held now: an active silence that matches it, or a
    /// firing alert that inhibits it (its rule lists this rule in `inhibits`, and the labels
    /// both alerts group by agree).
    fn suppression(&self, a: &AlertRow) -> Result<Option<String>, AlertsError> {
        let labels = match_labels(a);
        for s in journal::silences(self.tx, self.now, false)? {
            if s.starts_ms <= self.now && all_match(&s.matchers, &labels) {
                return Ok(Some(format!("silence:{}", s.id)));
            }
        }
        let sources = journal::alerts_where(
            self.tx,
            "+state = 'firing' AND id IN (SELECT source_id FROM inhibitions WHERE target_rule = ?1)",
            &a.rule,
        )?;
        for source in sources {
            if source.id == a.id {
                continue;
            }
            let theirs = source.body["group_labels"].as_object();
            let ours = a.body["group_labels"].as_object();
            let (Some(theirs), Some(ours)) = (theirs, ours) else {
                continue;
            };
            let shared: Vec<&String> = theirs.keys().filter(|k| ours.contains_key(*k)).collect();
            if !shared.is_empty() && shared.iter().all(|k| theirs[*k] == ours[*k]) {
                return Ok(Some(format!("inhibited:{}", source.id)));
            }
        }
        Ok(None)
    }

    /// A condition started: opens an episode, unless the alert is already firing (a
    /// condition re-derived after a restart continues the open episode).
    pub fn open(
        &mut self,
        rule: &rules::Rule,
        active: &Active,
        at: u64,
    ) -> Result<Option<String>, AlertsError> {
        let id = fingerprint(&active.rule, &active.group);
        let existing = journal::alert(self.tx, &id)?;
        if existing.as_ref().is_some_and(|a| {
            a.state == AlertState::Firing
                || a.body["ops"]["hold_until_stop"] == json!(true)
                // An episode this one is not newer than: the journal has it already (input
                // fed again after a crash finds the same conditions at the same times).
                || a.since_ms >= active.since
        }) {
            return Ok(None);
        }
        let group_labels = routing::labels(
            &rules::Rule {
                labels: BTreeMap::new(),
                ..rule.clone()
            },
            &active.group,
        );
        let mut labels = routing::labels(rule, &active.group);
        if let Some(more) = self.labels {
            for (k, v) in more(&labels) {
                labels.entry(k).or_insert(v);
            }
        }
        self.directory.enrich(&mut labels);
        let mut a = AlertRow {
            id: id.clone(),
            rule: rule.id.clone(),
            group: active.group.clone(),
            severity: rule.severity.as_str().to_owned(),
            state: AlertState::Firing,
            value: active.value,
            since_ms: active.since,
            resolved_ms: None,
            version: existing.as_ref().map_or(0, |a| a.version),
            episode: 0,
            opened_ms: self.now,
            acked_ms: None,
            suppressed: None,
            repeat_due_ms: None,
            body: json!({
                "id": id, "rule": rule.id, "group": active.group,
                "severity": rule.severity.as_str(), "since_ms": active.since, "value": active.value,
                "description": rule.description, "labels": labels, "group_labels": group_labels,
                "annotations": rule.annotations, "inhibits": rule.inhibits, "ops": {},
            }),
        };
        a.episode = a.version + 1;
        a.body["episode"] = json!(a.episode);
        // Found in a device's late backlog: it says how late, for the operator and the
        // receivers alike (docs/rules.md, "Every device on its own clock").
        if active.late_by_ms > 0 {
            a.body["late_by_ms"] = json!(active.late_by_ms);
        }
        let evidence = self.evidence.and_then(|f| f(&match_labels(&a)));
        if let Some(evidence) = evidence {
            a.body["evidence"] = evidence;
        }
        let policy = self.policies.for_labels(&match_labels(&a));
        a.body["policy"] = json!(policy.map(|p| p.name.clone()));
        a.repeat_due_ms = policy.and_then(|p| p.repeat_ms).map(|r| self.now + r);
        a.suppressed = self.suppression(&a)?;
        let receivers = self.route(&mut a, &rule.route);
        let detail = json!({ "suppressed": a.suppressed });
        let body = self.record(&mut a, TransitionEvent::Firing, at, detail)?;
        self.notify(&a, &receivers, &body, a.suppressed.is_some())?;
        for target in &rule.inhibits {
            self.tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO inhibitions (source_id, target_rule) VALUES (?1, ?2)",
                )?
                .execute(params![id, target])?;
            // Targets already firing are held from now on (what they sent stays sent).
            for mut t in journal::alerts_where(self.tx, "rule = ?1 AND +state = 'firing'", target)?
            {
                if t.suppressed.is_none() {
                    self.recheck(&mut t)?;
                }
            }
        }
        if let Some(policy) = policy {
            for (i, step) in policy.steps.iter().enumerate() {
                self.tx.prepare_cached("INSERT OR REPLACE INTO escalations (alert_id, episode, step, due_ms, status, policy) VALUES (?1, ?2, ?3, ?4, 'pending', ?5)")?.execute(params![id, a.episode as i64, i as i64, (self.now + step.after_ms) as i64, policy.name])?;
            }
        }
        Ok(Some(id))
    }

    /// The condition of a closed alert stopped: a later start opens a new episode again.
    pub fn stopped(&mut self, a: &mut AlertRow) -> Result<(), AlertsError> {
        if a.body["ops"]["hold_until_stop"] == json!(true) {
            ops(a).remove("hold_until_stop");
            journal::save(self.tx, a)?;
        }
        Ok(())
    }

    /// Ends the alert's episode: resolved, with the receivers its firing reached told so.
    pub fn close(&mut self, a: &mut AlertRow, at: u64, detail: Value) -> Result<(), AlertsError> {
        a.state = AlertState::Resolved;
        a.resolved_ms = Some(at);
        a.repeat_due_ms = None;
        a.body["resolved_ms"] = json!(at);
        ops(a).insert("closed_ms".into(), json!(self.now));
        let body = self.record(a, TransitionEvent::Resolved, at, detail)?;
        // Whoever was told it fires is told it is resolved; what was held is dropped.
        let told = self.told(a)?;
        self.tx
            .prepare_cached(
                "UPDATE outbox SET status = 'dropped' WHERE alert_id = ?1 AND +status = 'held'",
            )?
            .execute(params![a.id])?;
        self.notify(a, &told, &body, false)?;
        self.tx.prepare_cached("UPDATE escalations SET status = 'cancelled' WHERE alert_id = ?1 AND +status = 'pending'")?.execute(params![a.id])?;
        // Alerts this one inhibited may be free now.
        self.tx
            .prepare_cached("DELETE FROM inhibitions WHERE source_id = ?1")?
            .execute(params![a.id])?;
        let inhibited = journal::alerts_where(
            self.tx,
            "+state = 'firing' AND suppressed = ?1",
            format!("inhibited:{}", a.id),
        )?;
        for mut o in inhibited {
            self.recheck(&mut o)?;
        }
        Ok(())
    }

    /// Re-evaluates a held alert: when nothing suppresses it any more, its held notifications
    /// go out now.
    pub fn recheck(&mut self, a: &mut AlertRow) -> Result<(), AlertsError> {
        let now = self.suppression(a)?;
        if now == a.suppressed {
            return Ok(());
        }
        let was = a.suppressed.take();
        a.suppressed = now;
        if a.suppressed.is_some() {
            // Held for another reason now.
            journal::save(self.tx, a)?;
            return Ok(());
        }
        self.tx.prepare_cached("UPDATE outbox SET status = 'pending', next_ms = ?2 WHERE alert_id = ?1 AND +status = 'held'")?.execute(params![a.id, self.now as i64])?;
        self.record(
            a,
            TransitionEvent::Released,
            self.now,
            json!({ "was": was }),
        )?;
        Ok(())
    }

    /// Applies an operator's action. `Ok(false)`: it changed nothing (a repeat).
    pub fn act(&mut self, id: &str, action: &Action, by: &str) -> Result<bool, ActError> {
        let mut a = journal::alert(self.tx, id)?.ok_or_else(|| ActError::NotFound(id.into()))?;
        let now = self.now;
        let firing = a.state == AlertState::Firing;
        let refuse = |what: &str| {
            Err(ActError::Conflict(format!(
                "cannot {what}: alert {id} is resolved"
            )))
        };
        match action {
            Action::Ack { comment } => {
                if !firing {
                    return refuse("acknowledge");
                }
                if a.acked_ms.is_some() {
                    return Ok(false);
                }
                self.ack(&mut a, by);
                self.record(
                    &mut a,
                    TransitionEvent::Acknowledged,
                    now,
                    json!({ "by": by, "comment": comment }),
                )?;
            }
            Action::Assign { to } => {
                if ops(&mut a).get("assignee").and_then(Value::as_str) == Some(to) {
                    return Ok(false);
                }
                ops(&mut a).insert("assignee".into(), json!(to));
                self.record(
                    &mut a,
                    TransitionEvent::Assigned,
                    now,
                    json!({ "by": by, "to": to }),
                )?;
            }
            Action::Comment { text } => {
                let n = ops(&mut a)
                    .get("comments")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                ops(&mut a).insert("comments".into(), json!(n + 1));
                self.record(
                    &mut a,
                    TransitionEvent::Commented,
                    now,
                    json!({ "by": by, "text": text }),
                )?;
            }
            Action::Resolve { reason } | Action::FalsePositive { reason } => {
                if !firing {
                    return refuse("resolve");
                }
                let false_positive = matches!(action, Action::FalsePositive { .. });
                self.close_by(&mut a, by, false_positive, json!({ "reason": reason }))?;
            }
            Action::Field(state) => {
                if a.body["labels"]["domain"].as_str() != Some("elevator") {
                    return Err(ActError::Conflict(format!(
                        "field states are for elevator incidents; alert {id} is not one"
                    )));
                }
                let current = ops(&mut a)
                    .get("field_state")
                    .and_then(Value::as_str)
                    .and_then(FieldState::parse);
                if current == Some(*state) {
                    return Ok(false);
                }
                if !firing {
                    return refuse(&format!("report {}", state.as_str()));
                }
                if let Some(c) = current.filter(|c| c.rank() >= state.rank()) {
                    return Err(ActError::Conflict(format!(
                        "alert {id} is already {}; it cannot go back to {}",
                        c.as_str(),
                        state.as_str()
                    )));
                }
                self.ack(&mut a, by);
                let o = ops(&mut a);
                o.insert("field_state".into(), json!(state.as_str()));
                let times = o.entry("field_times").or_insert_with(|| json!({}));
                times[state.as_str()] = json!({ "by": by, "at_ms": now });
                self.record(
                    &mut a,
                    TransitionEvent::FieldState,
                    now,
                    json!({ "by": by, "state": state.as_str() }),
                )?;
                if matches!(state, FieldState::Done | FieldState::FalseAlarm) {
                    let false_positive = *state == FieldState::FalseAlarm;
                    self.close_by(
                        &mut a,
                        by,
                        false_positive,
                        json!({ "field_state": state.as_str() }),
                    )?;
                }
            }
        }
        Ok(true)
    }

    /// Closes the alert by a person's decision rather than its condition.
    fn close_by(
        &mut self,
        a: &mut AlertRow,
        by: &str,
        false_positive: bool,
        mut detail: Value,
    ) -> Result<(), AlertsError> {
        let o = ops(a);
        o.insert("resolved_by".into(), json!(by));
        o.insert("false_positive".into(), json!(false_positive));
        // The condition may still hold: a start of it is ignored until it has stopped (also
        // when it re-derives after a restart), so a closed incident does not reopen by itself.
        o.insert("hold_until_stop".into(), json!(true));
        detail["by"] = json!(by);
        detail["manual"] = json!(true);
        detail["false_positive"] = json!(false_positive);
        let now = self.now;
        self.close(a, now, detail)
    }

    /// Marks the alert acknowledged (once); for elevator incidents that is 响应 responded.
    fn ack(&self, a: &mut AlertRow, by: &str) {
        if a.acked_ms.is_some() {
            return;
        }
        a.acked_ms = Some(self.now);
        a.repeat_due_ms = None;
        let now = self.now;
        let elevator = a.body["labels"]["domain"].as_str() == Some("elevator");
        let o = ops(a);
        o.insert("acked_by".into(), json!(by));
        o.insert("acked_ms".into(), json!(now));
        if elevator && !o.contains_key("field_state") {
            o.insert("field_state".into(), json!("responded"));
            o.insert(
                "field_times".into(),
                json!({ "responded": { "by": by, "at_ms": now } }),
            );
        }
    }

    /// Runs one due escalation step.
    pub fn escalate(&mut self, row: &EscalationRow) -> Result<(), AlertsError> {
        let set = |tx: &Transaction<'_>, status: &str| {
            tx.execute(
                "UPDATE escalations SET status = ?4 WHERE alert_id = ?1 AND episode = ?2 AND step = ?3",
                params![row.alert_id, row.episode as i64, row.step as i64, status],
            )
        };
        let alert = journal::alert(self.tx, &row.alert_id)?;
        let Some(mut a) =
            alert.filter(|a| a.episode == row.episode && a.state == AlertState::Firing)
        else {
            set(self.tx, "cancelled")?;
            return Ok(());
        };
        let Some(step) = self
            .policies
            .get(&row.policy)
            .and_then(|p| p.steps.get(row.step as usize))
            .cloned()
        else {
            // The policy changed since the episode opened.
            set(self.tx, "skipped")?;
            return Ok(());
        };
        if step.unless == Unless::Acknowledged && a.acked_ms.is_some() {
            set(self.tx, "skipped")?;
            return Ok(());
        }
        let o = ops(&mut a);
        o.insert("escalation_step".into(), json!(row.step + 1));
        if let Some(mark) = &step.mark {
            o.insert(mark.clone(), json!(true));
        }
        let receivers = self.route(&mut a, &step.notify);
        // Held like any notification of a silenced or inhibited alert, and released with them.
        a.suppressed = self.suppression(&a)?;
        let body = self.record(
            &mut a,
            TransitionEvent::Escalated,
            self.now,
            json!({ "policy": row.policy, "step": row.step + 1, "notify": step.notify, "mark": step.mark }),
        )?;
        self.notify(&a, &receivers, &body, a.suppressed.is_some())?;
        set(self.tx, "done")?;
        Ok(())
    }
}
