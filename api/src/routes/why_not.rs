//! `GET /api/v1/rules/{id}/explain?group=…&at=…`: why a rule did not fire for a group at a
//! time (docs/explain.md). The group's events before that time are read back from the input
//! log (kept `input_log_keep_ms` after the alerts accounted for them), each judged by the
//! rule in force, the latest part by part; the answer says which part of the rule stood in
//! the way: a filter false at the last event, a `for` period not yet run, a window short of
//! its condition.

use crate::auth::{Caller, Need};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use dataflow::explain::{Explanation, RefValues, explain, group_of, holds};
use model::Envelope;
use rules::spec::{Kind, Rule};
use serde::{Deserialize, Serialize};

/// How many of the group's events an answer lists (the latest).
const LISTED: usize = 32;

/// Beyond the rule's own periods, how far back the events are read.
const MARGIN_MS: u64 = 60_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhyNotQuery {
    /// The group, as the rule's conditions name it (`E0042`; `M1/S3/pork`).
    group: String,
    /// The time asked about, epoch ms (default: now).
    at: Option<u64>,
}

/// Why a rule did (not) fire for a group at a time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WhyNot {
    rule: String,
    group: String,
    at_ms: u64,
    /// The events were read from here to `at_ms` (event time).
    from_ms: u64,
    /// Whether its condition is active for the group now.
    firing: bool,
    /// What stood in the way, in words.
    verdict: String,
    /// The group's events, oldest first (the latest 32), each with whether the filter held.
    #[schema(value_type = Vec<Object>)]
    events: Vec<Judged>,
    /// Earlier events of the period not listed.
    earlier: usize,
    /// Since when the filter held without a break up to the last event.
    held_since_ms: Option<u64>,
    for_ms: u64,
    /// The rule's expressions over the last event, part by part.
    #[schema(value_type = Option<Object>)]
    last: Option<Explanation>,
}

/// One event of the group, judged.
#[derive(Debug, Serialize)]
struct Judged {
    time_ms: u64,
    topic: String,
    holds: bool,
}

/// `GET /api/v1/rules/{id}/explain`.
#[utoipa::path(get, path = "/api/v1/rules/{id}/explain", tag = "rules",
    params(("id" = String, Path, description = "Rule id", example = "elevator.trapped_outside_zone"), WhyNotQuery),
    security(("token" = ["any role"])),
    responses((status = 200, description = "The group's events before `at` judged by the rule in force, the latest part by part, and what stood in the way", body = WhyNot),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No such rule, or no input log to read", body = ErrorBody)))]
pub(crate) async fn rule_why_not(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WhyNotQuery>,
) -> Result<Json<WhyNot>, ApiError> {
    // It reads the input log back: any token, as for the other explanations.
    caller.require(&s.auth, Need::Token, None)?;
    let current = s.rules.current();
    let rule = current
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no rule {id:?}")))?;
    let history = s.input_history.clone().ok_or_else(|| {
        ApiError::not_found("the input log is off: there is no history to explain from")
    })?;
    let at = q.at.unwrap_or_else(crate::now_ms);
    let from = at.saturating_sub(lookback(&rule).min(history.keep_ms.max(MARGIN_MS)));
    let (group, stream) = (q.group.clone(), rule.stream);
    let decoder = history.decoder.clone();
    let wanted = move |topic: &str| {
        let prefix = &decoder.config().prefix;
        model::topic::parse(prefix, topic).is_ok_and(|r| r.stream == stream)
    };
    let dir = history.dir.clone();
    let records = tokio::task::spawn_blocking(move || {
        ingest::input_log::history::received_since(&dir, from, wanted)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("reading the input log: {e}")))?;
    let mut events: Vec<Envelope> = records
        .iter()
        .filter_map(|r| {
            history
                .decoder
                .decode(&r.topic, &r.payload, r.received_ms)
                .ok()
        })
        .filter(|e| (from..=at).contains(&e.time_ms) && group_of(&rule, e) == group)
        .collect();
    events.sort_by_key(|e| e.time_ms);
    let firing = s
        .conditions
        .borrow()
        .active
        .contains_key(&(rule.id.clone(), group.clone()));
    let refs = RefValues::new(s.reference.current());
    Ok(Json(judge(
        &rule,
        &refs,
        &events,
        (group, from, at),
        firing,
    )))
}

/// How far back the rule's own periods reach: its `for`, its window, an absence's silence.
fn lookback(rule: &Rule) -> u64 {
    let own = match &rule.kind {
        Kind::Window { window, .. } => window.size_ms(),
        Kind::Absence { after_ms, .. } => *after_ms,
        _ => 0,
    };
    rule.for_ms + own + MARGIN_MS
}

/// The group's `events` (in event-time order) judged by `rule`.
fn judge(
    rule: &Rule,
    refs: &RefValues,
    events: &[Envelope],
    (group, from, at): (String, u64, u64),
    firing: bool,
) -> WhyNot {
    let explained: Vec<Explanation> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| explain(rule, refs, e, i.checked_sub(1).map(|p| &events[p])).ok())
        .collect();
    let held: Vec<bool> = explained.iter().map(holds).collect();
    let run = held.iter().rev().take_while(|h| **h).count();
    let held_since_ms = (run > 0).then(|| events[events.len() - run].time_ms);
    let verdict = verdict(rule, events, &held, held_since_ms, (at, firing));
    let earlier = events.len().saturating_sub(LISTED);
    let listed = events.iter().zip(&held).skip(earlier);
    WhyNot {
        rule: rule.id.clone(),
        group,
        at_ms: at,
        from_ms: from,
        firing,
        verdict,
        events: listed
            .map(|(e, h)| Judged {
                time_ms: e.time_ms,
                topic: e.event.encode(model::topic::DEFAULT_PREFIX).0,
                holds: *h,
            })
            .collect(),
        earlier,
        held_since_ms,
        for_ms: rule.for_ms,
        last: explained.into_iter().last(),
    }
}

/// What stood in the way, in words.
fn verdict(
    rule: &Rule,
    events: &[Envelope],
    held: &[bool],
    held_since: Option<u64>,
    (at, firing): (u64, bool),
) -> String {
    let Some(last) = events.last() else {
        return "no event of the group in the period read: the rule had nothing to judge \
                (an absence rule fires on such a silence)"
            .into();
    };
    let window = match &rule.kind {
        Kind::Window {
            window, condition, ..
        } => Some((window.size_ms(), &condition.source)),
        _ => None,
    };
    if let Some((w, condition)) = window {
        let start = at.saturating_sub(w);
        let n = events
            .iter()
            .zip(held)
            .filter(|(e, h)| **h && e.time_ms > start)
            .count();
        return format!(
            "{n} event(s) held the filter in the {} s window before the time asked; the window's condition is `{condition}`",
            w / 1000
        );
    }
    match held_since {
        None => format!(
            "its filter did not hold at the group's last event ({} ms): `last` shows which part was false",
            last.time_ms
        ),
        Some(since) if since + rule.for_ms > at => format!(
            "its filter held from {since} ms, {} s before the time asked, and the rule needs it for {} s",
            (at - since) / 1000,
            rule.for_ms / 1000
        ),
        Some(_) if firing => "its filter held long enough: it fires".into(),
        Some(since) => format!(
            "its filter held from {since} ms on, for as long as the rule asks: it fired then (see the alerts)"
        ),
    }
}
