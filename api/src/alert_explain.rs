//! `GET /api/v1/alerts/{id}/explain`: why an alert fired (docs/explain.md). For each episode,
//! what the dataflow kept when it started (journaled with the start): the matched events over
//! a `for` period, a window's items and aggregate, when a device was last heard; and the
//! rule, as it was in force then, evaluated part by part over the deciding event.

use crate::alerts::{alerts_of, visible};
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::state::AppState;
use alerts::CauseRow;
use axum::Json;
use axum::extract::{Path, State};
use dataflow::explain::{Explanation, RefValues};
use rules::machine::Item;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainQuery {
    /// One episode, by its start (epoch ms); the latest episodes without it.
    since: Option<u64>,
    /// At most this many episodes, newest first (default 10, at most 100).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// An alert's episodes explained, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertExplained {
    alert_id: String,
    #[schema(value_type = Vec<Object>)]
    episodes: Vec<Episode>,
}

/// One episode: what made it fire.
#[derive(Debug, Serialize)]
struct Episode {
    since_ms: u64,
    /// When the start was known (event time).
    at_ms: u64,
    value: f64,
    /// The rule as it was in force, as its file spells it.
    rule: rules::RuleSource,
    /// Since when its raw condition held (a `for` period's start).
    raw_since_ms: Option<u64>,
    for_ms: u64,
    /// The matched events kept, oldest first.
    events: Vec<Shown>,
    /// Window items when it fired, oldest first: (event time, what each added).
    items: Vec<(u64, serde_json::Value)>,
    /// Earlier events (or items) of the episode not kept.
    earlier: u32,
    /// An absence rule's last matching event (or registration); a deadline's due time.
    last_seen_ms: Option<u64>,
    /// The rule's expressions over the latest kept event, part by part, with the reference
    /// rows it reads (as in force now).
    deciding: Option<Explanation>,
    /// A window rule's condition over the aggregate it fired with.
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<rules::compiled::Traced>,
}

/// A kept event as it arrived.
#[derive(Debug, Serialize)]
struct Shown {
    time_ms: u64,
    received_ms: u64,
    topic: String,
    payload: serde_json::Value,
}

/// `GET /api/v1/alerts/{id}/explain`.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/explain", tag = "alerts",
    params(("id" = String, Path, description = "Alert id"), ExplainQuery),
    responses((status = 200, description = "Each episode's cause: the matched events over its `for` period (or the window's items), and the rule in force then evaluated part by part over the deciding event", body = AlertExplained),
        (status = 400, body = ErrorBody),
        (status = 404, description = "No such alert (or another unit's)", body = ErrorBody)))]
pub(crate) async fn explain(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ExplainQuery>,
) -> Result<Json<AlertExplained>, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_field("limit", "between 1 and 100"));
    }
    let alerts = alerts_of(&s)?;
    let d = alerts
        .detail(&id)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id:?}")))?;
    visible(&caller, &d.alert.body, &id)?;
    let rows = alerts
        .causes(&id, q.since, limit)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let refs = (!rows.is_empty()).then(|| RefValues::new(s.reference.current()));
    let episodes = rows
        .into_iter()
        .map(|r| episode(r, refs.as_ref()))
        .collect();
    Ok(Json(AlertExplained {
        alert_id: id,
        episodes,
    }))
}

fn episode(row: CauseRow, refs: Option<&RefValues>) -> Episode {
    let c = row.cause;
    let rule = rules::compile(&row.rule, "journal").ok();
    let deciding = match (&rule, c.events.last(), refs) {
        (Some(r), Some(seen), Some(refs)) => seen
            .envelope()
            .ok()
            .and_then(|env| dataflow::explain::explain(r, refs, &env, None).ok()),
        _ => None,
    };
    let counted = c.items.len() + c.earlier as usize;
    let condition = rule
        .as_ref()
        .and_then(|r| window_condition(r, c.value, counted));
    Episode {
        since_ms: c.since,
        at_ms: row.at_ms,
        value: c.value,
        for_ms: rule.as_ref().map_or(0, |r| r.for_ms),
        rule: row.rule,
        raw_since_ms: c.raw_since,
        events: c.events.iter().map(shown).collect(),
        items: c.items.into_iter().map(|(t, i)| (t, item(i))).collect(),
        earlier: c.earlier,
        last_seen_ms: c.last_seen,
        deciding,
        condition,
    }
}

/// A window rule's condition over the aggregate it fired with and the items counted (rules
/// that read earlier windows are left out: those windows are not kept with the cause).
fn window_condition(r: &rules::Rule, value: f64, count: usize) -> Option<rules::compiled::Traced> {
    let rules::spec::Kind::Window {
        condition, prior, ..
    } = &r.kind
    else {
        return None;
    };
    if *prior > 0 {
        return None;
    }
    let rules::compiled::Program::Compiled(node) =
        rules::compiled::Program::compile(&condition.source)
    else {
        return None;
    };
    let vars = rules::compiled::WindowVars {
        value,
        count,
        prior: &[],
    };
    Some(node.trace(&vars).1)
}

fn shown(s: &model::seen::Seen) -> Shown {
    Shown {
        time_ms: s.time_ms,
        received_ms: s.received_ms,
        topic: format!("{}{}", model::topic::DEFAULT_PREFIX, s.body.topic),
        payload: serde_json::from_str(&s.payload()).unwrap_or(serde_json::Value::Null),
    }
}

fn item(i: Item) -> serde_json::Value {
    match i {
        Item::Num(n) => serde_json::json!(n),
        Item::Text(t) => serde_json::Value::String(t),
        Item::Unit => serde_json::Value::Null,
    }
}
