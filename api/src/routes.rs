//! The handlers.

use crate::auth::{Caller, Need};
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dataflow::SnapshotView;
use futures_util::Stream;
use model::Reason;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

/// The router with every route.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/counters", get(counters))
        .route("/api/v1/counters/stream", get(counters_stream))
        .route("/api/v1/deadletters", get(deadletters))
        .route("/api/v1/conditions", get(conditions))
        .route("/api/v1/rules", get(rules_list))
        .route(
            "/api/v1/rules/validate",
            axum::routing::post(rules_validate),
        )
        .route(
            "/api/v1/rules/{id}",
            get(rule_get).put(rule_put).delete(rule_delete),
        )
        .merge(crate::alerts::routes())
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(time_limit))
        .with_state(state)
}

/// Largest request body: rule files and alert actions are small.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Longest a handler may take to produce its response (a stream's body may run on).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers 503 with a JSON error when a handler takes longer than [`REQUEST_TIMEOUT`]. No CORS
/// layer: browsers may call the API only from pages it serves itself.
async fn time_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::timeout(format!(
            "no response within {} s",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response(),
    }
}

async fn counters(State(s): State<AppState>) -> Json<SnapshotView> {
    Json(s.snapshots.borrow().view())
}

/// Snapshots are published every tick (100 ms); a screen needs no more than a few a second.
const STREAM_MIN_INTERVAL: Duration = Duration::from_millis(250);

async fn counters_stream(
    State(s): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = WatchStream::new(s.snapshots.clone())
        .throttle(STREAM_MIN_INTERVAL)
        .map(|snap| {
            let view = snap.view();
            Ok(Event::default()
                .event("counters")
                .id(view.as_of.to_string())
                .json_data(&view)
                .unwrap_or_else(|_| Event::default().comment("unserializable snapshot")))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Debug, Deserialize)]
struct DeadLetterQuery {
    reason: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct DeadLetterPage {
    /// Entries kept in the store now.
    kept: u64,
    /// Entries dropped (oldest first) since start because the store was full.
    dropped: u64,
    items: Vec<ingest::DeadLetter>,
}

pub(crate) const MAX_LIMIT: usize = 1000;

async fn deadletters(
    State(s): State<AppState>,
    Query(q): Query<DeadLetterQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let reason = match q.reason.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(Reason::parse(r).ok_or_else(|| {
            let known: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
            ApiError::bad_field(
                "reason",
                format!("unknown reason {r:?}; expected one of {}", known.join(", ")),
            )
        })?),
    };
    let limit = match q.limit.as_deref().filter(|l| !l.is_empty()) {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_field(
                    "limit",
                    format!("{l:?} is not a whole number from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let (kept, dropped) = s.deadletters.counts();
    Ok(Json(DeadLetterPage {
        kept,
        dropped,
        items: s.deadletters.list(reason, limit),
    }))
}

#[derive(Serialize)]
struct ConditionView {
    rule: String,
    group: String,
    severity: &'static str,
    description: String,
    labels: std::collections::BTreeMap<String, String>,
    annotations: std::collections::BTreeMap<String, String>,
    value: f64,
    /// Event time it started firing, ms.
    since: u64,
}

#[derive(Serialize)]
struct ConditionsPage {
    as_of: u64,
    conditions: Vec<ConditionView>,
}

async fn conditions(State(s): State<AppState>) -> Json<ConditionsPage> {
    let snap = s.conditions.borrow().clone();
    let rules_now = s.rules.current();
    let conditions = snap
        .active
        .values()
        .map(|a| {
            let rule = rules_now.iter().find(|r| r.id == a.rule);
            let mut labels = rule.map(|r| r.labels.clone()).unwrap_or_default();
            if let Some(r) = rule {
                for (k, v) in r.group_by.iter().zip(a.group.split('/')) {
                    labels.insert(k.clone(), v.to_owned());
                }
            }
            ConditionView {
                rule: a.rule.clone(),
                group: a.group.clone(),
                severity: rule.map_or("info", |r| r.severity.as_str()),
                description: rule.map(|r| r.description.clone()).unwrap_or_default(),
                labels,
                annotations: rule.map(|r| r.annotations.clone()).unwrap_or_default(),
                value: a.value,
                since: a.since,
            }
        })
        .collect();
    Json(ConditionsPage {
        as_of: snap.as_of,
        conditions,
    })
}

#[derive(Serialize)]
struct RuleView {
    id: String,
    description: String,
    severity: &'static str,
    stream: &'static str,
    enabled: bool,
    origin: String,
}

fn rule_view(r: &rules::Rule) -> RuleView {
    RuleView {
        id: r.id.clone(),
        description: r.description.clone(),
        severity: r.severity.as_str(),
        stream: r.stream.as_str(),
        enabled: r.enabled,
        origin: r.origin.clone(),
    }
}

async fn rules_list(State(s): State<AppState>) -> Json<Vec<RuleView>> {
    Json(s.rules.current().iter().map(rule_view).collect())
}

async fn rule_get(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<RuleView>, ApiError> {
    s.rules
        .current()
        .iter()
        .find(|r| r.id == id)
        .map(|r| Json(rule_view(r)))
        .ok_or_else(|| ApiError::not_found(format!("no rule {id:?}")))
}

#[derive(Serialize)]
struct Problem {
    line: usize,
    column: usize,
    message: String,
}

#[derive(Serialize)]
struct Validation {
    valid: bool,
    rules: Vec<String>,
    errors: Vec<Problem>,
}

fn validate_body(name: &str, body: &str) -> Result<Vec<rules::Rule>, Vec<Problem>> {
    rules::load_str(name, body).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| Problem {
                line: e.line,
                column: e.column,
                message: e.message,
            })
            .collect()
    })
}

/// `POST /api/v1/rules/validate`: checks a rule file (TOML) without running it.
async fn rules_validate(
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Json<Validation>, ApiError> {
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    Ok(match validate_body("body", &body) {
        Ok(rules) => Json(Validation {
            valid: true,
            rules: rules.iter().map(|r| r.id.clone()).collect(),
            errors: Vec::new(),
        }),
        Err(errors) => Json(Validation {
            valid: false,
            rules: Vec::new(),
            errors,
        }),
    })
}

/// `PUT /api/v1/rules/{id}`: adds or replaces one rule, given as a rule file holding exactly
/// that rule. It is in force from the dataflow's current frontier; an invalid rule changes
/// nothing.
async fn rule_put(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<(StatusCode, Json<RuleView>), Response> {
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()).into_response())?;
    caller
        .require(&s.auth, Need::Admin, None)
        .map_err(IntoResponse::into_response)?;
    let invalid = |errors: Vec<Problem>| {
        (
            StatusCode::BAD_REQUEST,
            Json(Validation {
                valid: false,
                rules: Vec::new(),
                errors,
            }),
        )
            .into_response()
    };
    let mut new = validate_body(&format!("PUT /api/v1/rules/{id}"), &body).map_err(invalid)?;
    if new.len() != 1 || new[0].id != id {
        return Err(ApiError::bad_field(
            "id",
            format!("the body must hold exactly one [[rule]] with id {id:?}"),
        )
        .into_response());
    }
    let rule = new.remove(0);
    let mut next: Vec<rules::Rule> = s
        .rules
        .current()
        .iter()
        .filter(|r| r.id != id)
        .cloned()
        .collect();
    let existed = next.len() < s.rules.current().len();
    let view = rule_view(&rule);
    next.push(rule);
    s.rules
        .replace(next)
        .map_err(|e| ApiError::conflict(e).into_response())?;
    Ok((
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(view),
    ))
}

/// `DELETE /api/v1/rules/{id}`.
async fn rule_delete(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&s.auth, Need::Admin, None)?;
    let current = s.rules.current();
    if !current.iter().any(|r| r.id == id) {
        return Err(ApiError::not_found(format!("no rule {id:?}")));
    }
    s.rules
        .replace(current.iter().filter(|r| r.id != id).cloned().collect())
        .map_err(ApiError::conflict)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prometheus(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&s),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(s): State<AppState>) -> Response {
    let subscribed = s.ingest.is_subscribed();
    let dataflow = s.dataflow.is_running();
    let body = serde_json::json!({
        "ready": subscribed && dataflow,
        "mqtt": s.ingest.state().as_str(),
        "dataflow": if dataflow { "running" } else { "starting" },
    });
    let status = if subscribed && dataflow {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
