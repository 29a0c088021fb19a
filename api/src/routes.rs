//! The handlers.

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
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
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

const MAX_LIMIT: usize = 1000;

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
    let conditions = snap
        .active
        .values()
        .map(|a| {
            let rule = s.rules.iter().find(|r| r.id == a.rule);
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

async fn rules_list(State(s): State<AppState>) -> Json<Vec<RuleView>> {
    Json(
        s.rules
            .iter()
            .map(|r| RuleView {
                id: r.id.clone(),
                description: r.description.clone(),
                severity: r.severity.as_str(),
                stream: r.stream.as_str(),
                enabled: r.enabled,
                origin: r.origin.clone(),
            })
            .collect(),
    )
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
