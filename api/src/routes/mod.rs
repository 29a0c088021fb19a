//! The router and the handlers of the live views and the probes; the rules' resources, a
//! rule's explanation and the tokens have modules of their own, the alerts', reference
//! data's, complaints' and holds' theirs at the crate's top.

mod explain;
mod rules;
mod tokens;
mod why_not;

pub(crate) use explain::*;
pub(crate) use rules::*;
pub(crate) use tokens::*;
pub(crate) use why_not::*;

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::metrics;
use crate::state::AppState;
use axum::extract::State;
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
        .route(
            "/api/v1/rules/{id}/enabled",
            axum::routing::put(rule_enable),
        )
        .route("/api/v1/rules/{id}/history", get(rule_history))
        .route(
            "/api/v1/rules/{id}/explain",
            get(rule_why_not).post(rule_explain),
        )
        .route("/api/v1/complaints", get(crate::complaints::list))
        .route("/api/v1/holds", get(crate::holds::list))
        .route("/api/v1/me", get(me))
        .route("/api/v1/tokens", get(tokens_list).post(token_create))
        .route("/api/v1/tokens/{name}", axum::routing::delete(token_revoke))
        .route("/api/v1/map", get(map))
        .route("/api/v1/tiles", get(tiles))
        .merge(crate::alerts::routes())
        .merge(crate::incidents::routes())
        .merge(crate::reference::routes())
        .merge(crate::web::routes())
        .merge(crate::openapi::routes())
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            follow_leader,
        ))
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

/// `GET /api/v1/counters`: the latest counter snapshot.
#[utoipa::path(get, path = "/api/v1/counters", tag = "counters",
    responses((status = 200, description = "The counters, exact for every event time before `as_of`", body = SnapshotView)))]
pub(crate) async fn counters(State(s): State<AppState>) -> Json<SnapshotView> {
    Json(s.snapshots.borrow().view())
}

/// Snapshots are published every tick (100 ms); a screen needs no more than a few a second.
const STREAM_MIN_INTERVAL: Duration = Duration::from_millis(250);

/// `GET /api/v1/counters/stream`: the counters as server-sent events (`event: counters`), at
/// most four a second.
#[utoipa::path(get, path = "/api/v1/counters/stream", tag = "counters",
    responses((status = 200, description = "`event: counters`, `data:` a SnapshotView, `id:` its as_of", content_type = "text/event-stream", body = String)))]
pub(crate) async fn counters_stream(
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadLetterQuery {
    /// Only this reason.
    #[param(
        pattern = "^(not_json|not_object|unknown_topic|bad_id|missing_field|wrong_type|out_of_range|ts_skew|too_large)?$"
    )]
    reason: Option<String>,
    /// At most this many [default: 100].
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeadLetterPage {
    /// Entries kept in the store now.
    kept: u64,
    /// Entries dropped (oldest first) since start because the store was full.
    dropped: u64,
    items: Vec<ingest::DeadLetter>,
}

pub(crate) const MAX_LIMIT: usize = 1000;

/// A page size: 100 when absent, else 1 to [`MAX_LIMIT`].
pub(crate) fn limit(l: Option<usize>) -> Result<usize, ApiError> {
    match l {
        None => Ok(100),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_field(
            "limit",
            format!("{n} is not a whole number from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// `GET /api/v1/deadletters?reason=&limit=`: rejected messages, newest first.
#[utoipa::path(get, path = "/api/v1/deadletters", tag = "ingest", params(DeadLetterQuery),
    responses((status = 200, body = DeadLetterPage), (status = 400, description = "Unknown reason or bad limit", body = ErrorBody)))]
pub(crate) async fn deadletters(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
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

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ConditionView {
    rule: String,
    group: String,
    severity: &'static str,
    description: String,
    labels: std::collections::BTreeMap<String, String>,
    annotations: std::collections::BTreeMap<String, String>,
    value: f64,
    /// Event time it started firing (on its group's own timeline), ms.
    since: u64,
    /// How much later than `since` it was known: found in a device's late backlog (0: on time).
    late_by_ms: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ConditionsPage {
    as_of: u64,
    conditions: Vec<ConditionView>,
}

/// `GET /api/v1/conditions`: the active conditions (a unit's token: its own only).
#[utoipa::path(get, path = "/api/v1/conditions", tag = "rules",
    responses((status = 200, description = "What the rules find true now", body = ConditionsPage)))]
pub(crate) async fn conditions(State(s): State<AppState>, caller: Caller) -> Json<ConditionsPage> {
    let snap = s.conditions.borrow().clone();
    let rules_now = s.rules.current();
    let reference = s.reference.current();
    // Elevator conditions name their maintenance unit, as their alerts do.
    let units: std::collections::HashMap<&str, &str> = if snap.active.is_empty() {
        Default::default()
    } else {
        reference
            .elevators
            .iter()
            .map(|e| (e.elevator_id.as_str(), e.maintenance_unit.as_str()))
            .collect()
    };
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
            let unit = labels
                .get("elevator_id")
                .and_then(|e| units.get(e.as_str()));
            if let Some(unit) = unit {
                labels.insert("maintenance_unit".into(), (*unit).to_owned());
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
                late_by_ms: a.late_by_ms,
            }
        })
        .filter(|c: &ConditionView| {
            caller.unit().is_none()
                || c.labels.get("maintenance_unit").map(String::as_str) == caller.unit()
        })
        .collect();
    Json(ConditionsPage {
        as_of: snap.as_of,
        conditions,
    })
}

/// `GET /api/v1/map`: what the district map draws: jurisdiction polygons (GeoJSON, with the
/// office's name) and the devices with a position (elevators, kitchens, markets). Device
/// states come from the alerts, which the page already has. A maintenance unit's token gets
/// its own elevators only.
#[utoipa::path(get, path = "/api/v1/map", tag = "reference",
    responses((status = 200, description = "`{jurisdictions: GeoJSON FeatureCollection (properties office_id, name), elevators: [{id, name, lat, lon, district, unit}], kitchens: [{id, name, lat, lon, district, venue_type}], markets: [{id, name, lat, lon, district}]}`", body = Object)))]
pub(crate) async fn map(State(s): State<AppState>, caller: Caller) -> Json<serde_json::Value> {
    let r = &s.reference.current();
    let unit = caller.unit();
    let office = |id: &str| {
        r.offices
            .iter()
            .find(|o| o.office_id.as_str() == id)
            .map(|o| o.name.clone())
    };
    let mut jurisdictions = r
        .jurisdictions
        .clone()
        .unwrap_or_else(|| serde_json::json!({ "type": "FeatureCollection", "features": [] }));
    if let Some(features) = jurisdictions["features"].as_array_mut() {
        for f in features {
            let name = f["properties"]["office_id"].as_str().and_then(office);
            if let Some(name) = name {
                f["properties"]["name"] = serde_json::json!(name);
            }
        }
    }
    let elevators: Vec<_> = r
        .elevators
        .iter()
        .filter(|e| unit.is_none_or(|u| e.maintenance_unit.as_str() == u))
        .map(|e| {
            serde_json::json!({ "id": e.elevator_id, "name": e.building, "lat": e.lat, "lon": e.lon,
                "district": e.district, "unit": e.maintenance_unit })
        })
        .collect();
    let kitchens: Vec<_> = r
        .kitchens
        .iter()
        .filter(|_| unit.is_none())
        .filter_map(|k| Some((k, k.lat?, k.lon?)))
        .map(|(k, lat, lon)| {
            serde_json::json!({ "id": k.kitchen_id, "name": k.venue, "lat": lat, "lon": lon,
                "district": k.district, "venue_type": k.venue_type })
        })
        .collect();
    let markets: Vec<_> = r
        .markets
        .iter()
        .filter(|_| unit.is_none())
        .filter_map(|m| Some((m, m.lat?, m.lon?)))
        .map(|(m, lat, lon)| {
            serde_json::json!({ "id": m.market_id, "name": m.name, "lat": lat, "lon": lon,
                "district": m.district })
        })
        .collect();
    Json(serde_json::json!({
        "jurisdictions": jurisdictions,
        "elevators": elevators,
        "kitchens": kitchens,
        "markets": markets,
    }))
}

/// The tiles now and their last hour.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TilesPage {
    now: crate::tiles::Tiles,
    history: crate::tiles::HistoryView,
}

/// `GET /api/v1/tiles`: the control room's counter tiles now and the last hour of each.
#[utoipa::path(get, path = "/api/v1/tiles", tag = "counters", responses((status = 200, body = TilesPage)))]
pub(crate) async fn tiles(State(s): State<AppState>) -> Result<Json<TilesPage>, ApiError> {
    let s2 = s.clone();
    let now = tokio::task::spawn_blocking(move || crate::tiles::Tiles::read(&s2, crate::now_ms()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)?;
    Ok(Json(TilesPage {
        now,
        history: s.history.view(),
    }))
}

/// `GET /metrics`: the Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub(crate) async fn prometheus(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&s),
    )
        .into_response()
}

/// `GET /healthz`: the process answers (and, in a cluster, which process it is).
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    let mut body = serde_json::json!({ "status": "ok" });
    if let Some(c) = cluster_json(&s) {
        body["cluster"] = c;
    }
    Json(body)
}

/// `{processes, index, formed}` in a cluster: formed once every process is connected and the
/// workers run.
fn cluster_json(s: &AppState) -> Option<serde_json::Value> {
    s.cluster.as_ref().map(|c| {
        serde_json::json!({
            "processes": c.processes,
            "index": c.index,
            "formed": s.dataflow.is_running(),
        })
    })
}

/// In a cluster, process 0 serves the API: the others send every call but their own probes
/// and metrics there.
async fn follow_leader(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(c) = s.cluster.as_ref().filter(|c| c.index != 0) else {
        return next.run(req).await;
    };
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(req).await;
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    match &c.leader_url {
        Some(url) => axum::response::Redirect::temporary(&format!("{url}{target}")).into_response(),
        None => ApiError::elsewhere(format!(
            "process {} of the cluster does not serve the API: ask process 0 (give its URL in the \
             hosts file to be redirected there)",
            c.index
        ))
        .into_response(),
    }
}

/// `GET /readyz`: subscribed to the broker and the dataflow running.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Object, example = json!({"ready": true, "mqtt": "subscribed", "dataflow": "running"})),
        (status = 503, description = "Not ready yet", body = Object)))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    let subscribed = s.ingest.is_subscribed();
    let dataflow = s.dataflow.is_running();
    let mut body = serde_json::json!({
        "ready": subscribed && dataflow,
        "mqtt": s.ingest.state().as_str(),
        "dataflow": if dataflow { "running" } else { "starting" },
    });
    if let Some((why, at_ms)) = s.ingest.last_error() {
        body["mqtt_error"] = serde_json::json!({ "message": why, "at_ms": at_ms });
    }
    if let Some(c) = cluster_json(&s) {
        body["cluster"] = c;
    }
    let status = if subscribed && dataflow {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
