//! The handlers.

use crate::auth::{Caller, Need};
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
        .route("/api/v1/complaints", get(crate::complaints::list))
        .route("/api/v1/holds", get(crate::holds::list))
        .route("/api/v1/me", get(me))
        .route("/api/v1/tokens", get(tokens_list).post(token_create))
        .route("/api/v1/tokens/{name}", axum::routing::delete(token_revoke))
        .route("/api/v1/map", get(map))
        .route("/api/v1/tiles", get(tiles))
        .merge(crate::alerts::routes())
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

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RuleView {
    id: String,
    description: String,
    severity: &'static str,
    stream: &'static str,
    enabled: bool,
    origin: String,
    /// What decides it, as written: the filter, a window's aggregate and condition, `for`,
    /// `keep_firing_for`, `absent_for`, a deadline's working days (the thresholds an
    /// operator reads).
    thresholds: Vec<Threshold>,
}

/// One part of a rule's definition, by its key in the rule file.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Threshold {
    key: &'static str,
    value: String,
}

fn rule_view(r: &rules::Rule) -> RuleView {
    RuleView {
        id: r.id.clone(),
        description: r.description.clone(),
        severity: r.severity.as_str(),
        stream: r.stream.as_str(),
        enabled: r.enabled,
        origin: r.origin.clone(),
        thresholds: thresholds(&r.source),
    }
}

fn thresholds(s: &rules::RuleSource) -> Vec<Threshold> {
    let window = s.window.as_ref().and_then(|w| {
        let (kind, len) = match (&w.sliding, &w.tumbling) {
            (Some(l), _) => ("sliding", l),
            (_, Some(l)) => ("tumbling", l),
            _ => return None,
        };
        Some(format!("{kind} {len}"))
    });
    let deadline = s
        .deadline
        .as_ref()
        .map(|d| format!("{} working days", d.working_days));
    [
        ("filter", s.filter.clone()),
        ("window", window),
        ("aggregate", s.aggregate.clone()),
        ("condition", s.condition.clone()),
        ("clear_condition", s.clear_condition.clone()),
        ("for", s.for_.clone()),
        ("keep_firing_for", s.keep_firing_for.clone()),
        ("absent_for", s.absent_for.clone()),
        ("deadline", deadline),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|value| Threshold { key, value }))
    .collect()
}

/// A rule as in force, whole: its definition (`source`, and as a rule file, `toml`), its
/// version and who changed it last.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RuleDetail {
    #[serde(flatten)]
    view: RuleView,
    /// The definition, as the rule file's keys.
    #[schema(value_type = Object)]
    source: rules::RuleSource,
    /// The same as a rule file, to edit and `PUT` back.
    toml: String,
    /// 1 as the files gave it; each change through the API adds one.
    version: u32,
    /// Who made this version, and when (none for the files' version).
    changed_by: Option<String>,
    changed_at_ms: Option<u64>,
    /// Earlier versions: `GET /api/v1/rules/{id}/history`.
    versions: usize,
}

/// `GET /api/v1/rules`: the rules in force.
#[utoipa::path(get, path = "/api/v1/rules", tag = "rules", responses((status = 200, body = [RuleView])))]
pub(crate) async fn rules_list(State(s): State<AppState>) -> Json<Vec<RuleView>> {
    Json(s.rules.current().iter().map(rule_view).collect())
}

/// `GET /api/v1/rules/{id}`: the whole rule as in force, its version and who changed it.
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "rules", params(("id" = String, Path, description = "Rule id", example = "elevator.trapped_alarm")),
    responses((status = 200, body = RuleDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn rule_get(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<RuleDetail>, ApiError> {
    let current = s.rules.current();
    let r = current
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no rule {id:?}")))?;
    let history = s.rules.history(&id);
    let last = history.last();
    Ok(Json(RuleDetail {
        view: rule_view(r),
        source: r.source.clone(),
        toml: rules::to_toml(&r.source).map_err(ApiError::internal)?,
        version: last.map_or(1, |v| v.version),
        changed_by: last.map(|v| v.by.clone()),
        changed_at_ms: last.map(|v| v.at_ms),
        versions: history.len(),
    }))
}

/// `GET /api/v1/rules/{id}/history`: every recorded version of a rule, oldest first, each
/// with who made it, when, and the rule as it became (also for a rule deleted since).
#[utoipa::path(get, path = "/api/v1/rules/{id}/history", tag = "rules", params(("id" = String, Path, description = "Rule id", example = "elevator.overspeed")),
    responses((status = 200, body = [crate::kept_rules::RuleVersion]), (status = 404, body = ErrorBody)))]
pub(crate) async fn rule_history(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Vec<crate::kept_rules::RuleVersion>>, ApiError> {
    let history = s.rules.history(&id);
    if history.is_empty() && !s.rules.current().iter().any(|r| r.id == id) {
        return Err(ApiError::not_found(format!("no rule {id:?}")));
    }
    Ok(Json(history))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    line: usize,
    column: usize,
    message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Validation {
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
#[utoipa::path(post, path = "/api/v1/rules/validate", tag = "rules",
    request_body(content = String, content_type = "text/plain", description = "A rule file (TOML)",
        example = "[[rule]]\nid = \"x\"\ndescription = \"…\"\nseverity = \"minor\"\nstream = \"elevator_status\"\nfilter = 'event.speed_mps > 3'\n"),
    security(("token" = ["any role"])),
    responses((status = 200, description = "Valid or not, with the errors by line and column", body = Validation),
        (status = 400, description = "No body, or not UTF-8", body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn rules_validate(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Json<Validation>, ApiError> {
    caller.require(&s.auth, Need::Token, None)?;
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    if body.trim().is_empty() {
        return Err(ApiError::bad_field(
            "body",
            "empty: send a rule file (TOML) with at least one [[rule]]",
        ));
    }
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

/// A change made against the version of the rule the client read: refused (409) if another
/// change came first, so that two operators editing one rule cannot lose one's edit.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Expected {
    /// The rule's version as last read (`GET /api/v1/rules/{id}`); 0: the rule must not
    /// exist yet. Without it, the change is made whatever the version.
    version: Option<u64>,
}

/// Refuses a change made against another version than the one in force (under the rules'
/// edit lock: nothing can come between the check and the change).
fn expect_version(
    s: &AppState,
    id: &str,
    current: &[rules::Rule],
    expected: &Expected,
) -> Result<(), ApiError> {
    let now = s.rules.version_of(id, current);
    match expected.version {
        Some(v) if v != now => Err(ApiError::conflict(format!(
            "rule {id:?} is at version {now}, not {v}: changed meanwhile; read it again"
        ))),
        _ => Ok(()),
    }
}

/// `PUT /api/v1/rules/{id}?version=`: adds or replaces one rule, given as a rule file holding
/// exactly that rule. It is in force from the dataflow's current frontier; an invalid rule
/// changes nothing.
#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "rules", params(("id" = String, Path, description = "Rule id"), Expected),
    request_body(content = String, content_type = "text/plain", description = "A rule file holding exactly this rule"),
    security(("token" = ["admin"])),
    responses((status = 200, description = "Replaced", body = RuleView), (status = 201, description = "Added", body = RuleView),
        (status = 400, description = "Invalid rule, or not exactly this one rule", body = Validation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 409, description = "Rules cannot change (--rules none), or the rule is not at the version given", body = ErrorBody)))]
pub(crate) async fn rule_put(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    expected: Result<axum::extract::Query<Expected>, axum::extract::rejection::QueryRejection>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<(StatusCode, Json<RuleView>), Response> {
    let by = caller
        .require(&s.auth, Need::Admin, None)
        .map_err(IntoResponse::into_response)?;
    // Every 400 here is a Validation, so a client reads one shape.
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
    let problem = |message: String| {
        invalid(vec![Problem {
            line: 0,
            column: 0,
            message,
        }])
    };
    let axum::extract::Query(expected) = expected.map_err(|r| problem(r.body_text()))?;
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::rejected(r.status(), r.body_text()).into_response()
        }
        _ => problem(r.body_text()),
    })?;
    let mut new = validate_body(&format!("PUT /api/v1/rules/{id}"), &body).map_err(invalid)?;
    if new.len() != 1 || new[0].id != id {
        return Err(problem(format!(
            "the body must hold exactly one [[rule]] with id {id:?}"
        )));
    }
    let rule = new.remove(0);
    let view = rule_view(&rule);
    let change = s
        .rules
        .edit(&id, &by, |current| {
            expect_version(&s, &id, current, &expected)?;
            // A changed rule keeps its place; a new one goes last.
            let mut next = current.to_vec();
            let change = match next.iter().position(|r| r.id == id) {
                Some(i) => {
                    next[i] = rule;
                    "changed"
                }
                None => {
                    next.push(rule);
                    "created"
                }
            };
            Ok::<_, ApiError>((next, change))
        })
        .map_err(IntoResponse::into_response)?
        .map_err(|e| ApiError::conflict(e).into_response())?;
    Ok((
        if change == "changed" {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(view),
    ))
}

/// `DELETE /api/v1/rules/{id}`.
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "rules", params(("id" = String, Path, description = "Rule id"), Expected),
    security(("token" = ["admin"])),
    responses((status = 204, description = "Removed"), (status = 400, description = "A version that is not a number", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Rules cannot change, or the rule is not at the version given", body = ErrorBody)))]
pub(crate) async fn rule_delete(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    ApiQuery(expected): ApiQuery<Expected>,
) -> Result<StatusCode, ApiError> {
    let by = caller.require(&s.auth, Need::Admin, None)?;
    s.rules
        .edit(&id, &by, |current| {
            if !current.iter().any(|r| r.id == id) {
                return Err(ApiError::not_found(format!("no rule {id:?}")));
            }
            expect_version(&s, &id, current, &expected)?;
            let next = current.iter().filter(|r| r.id != id).cloned().collect();
            Ok((next, "deleted"))
        })?
        .map_err(ApiError::conflict)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": false}))]
pub(crate) struct Enabled {
    enabled: bool,
}

/// `PUT /api/v1/rules/{id}/enabled` with `{"enabled": false}`: switches a rule off (its
/// conditions resolve) or on again, keeping its definition.
#[utoipa::path(put, path = "/api/v1/rules/{id}/enabled", tag = "rules", params(("id" = String, Path, description = "Rule id"), Expected),
    request_body = Enabled, security(("token" = ["admin"])),
    responses((status = 200, body = RuleView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Rules cannot change, or the rule is not at the version given", body = ErrorBody)))]
pub(crate) async fn rule_enable(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    ApiQuery(expected): ApiQuery<Expected>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RuleView>, ApiError> {
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    let by = caller.require(&s.auth, Need::Admin, None)?;
    let Enabled { enabled } = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_field(
            "enabled",
            format!("expected {{\"enabled\": true|false}}: {e}"),
        )
    })?;
    let mut view = None;
    s.rules
        .edit(&id, &by, |current| {
            let mut next = current.to_vec();
            let rule = next
                .iter_mut()
                .find(|r| r.id == id)
                .ok_or_else(|| ApiError::not_found(format!("no rule {id:?}")))?;
            expect_version(&s, &id, current, &expected)?;
            rule.enabled = enabled;
            view = Some(rule_view(rule));
            Ok((next, if enabled { "enabled" } else { "disabled" }))
        })?
        .map_err(ApiError::conflict)?;
    view.map(Json)
        .ok_or_else(|| ApiError::internal("the rule changed but has no view"))
}

/// Who is calling.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "值班员张三", "role": "operator", "auth": "writes"}))]
pub(crate) struct Me {
    /// The token's name; null without a token.
    name: Option<String>,
    /// `viewer`, `operator`, `admin` or `unit:<id>`; null without a token.
    role: Option<String>,
    /// `writes`, `all` or `off`.
    auth: crate::auth::AuthMode,
}

/// `GET /api/v1/tokens`: every token's name, role and creation time (admin).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth", security(("token" = ["admin"])),
    responses((status = 200, body = [crate::auth::TokenRow]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn tokens_list(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<crate::auth::TokenRow>>, ApiError> {
    caller.require(&s.auth, Need::Admin, None)?;
    s.auth.list().map(Json).map_err(ApiError::internal)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "安达维保调度", "role": "unit:MU-02"}))]
pub(crate) struct NewToken {
    /// Who will hold it; a token of the same name is replaced.
    name: String,
    /// `viewer`, `operator`, `admin` or `unit:<id>`.
    role: String,
}

/// A token, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedToken {
    name: String,
    role: String,
    /// `Authorization: Bearer <token>`; only its hash is kept, so it is never shown again.
    token: String,
}

/// `POST /api/v1/tokens` with `{name, role}`: creates (or replaces) a token (admin).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = NewToken, security(("token" = ["admin"])),
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn token_create(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    caller.require(&s.auth, Need::Admin, None)?;
    let new: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_field("body", format!("expected {{name, role}}: {e}")))?;
    let name = new.name.trim();
    crate::auth::check_name(name).map_err(|e| ApiError::bad_field("name", e))?;
    let role = crate::auth::Role::parse(&new.role).map_err(|e| ApiError::bad_field("role", e))?;
    let token = s.auth.create(name, &role).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: name.to_owned(),
            role: role.as_string(),
            token,
        }),
    ))
}

/// `DELETE /api/v1/tokens/{name}`: revokes a token at once (admin).
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "auth", params(("name" = String, Path, description = "The token's name")),
    security(("token" = ["admin"])),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn token_revoke(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&s.auth, Need::Admin, None)?;
    match s.auth.revoke(&name) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(format!("no token named {name:?}"))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `GET /api/v1/me`: who the token is (or that there is none), and the auth mode.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", responses((status = 200, body = Me), (status = 401, description = "A token nobody issued", body = ErrorBody)))]
pub(crate) async fn me(State(s): State<AppState>, caller: Caller) -> Json<Me> {
    let auth = s.auth.mode;
    Json(match caller {
        Caller::Anonymous => Me {
            name: None,
            role: None,
            auth,
        },
        Caller::Known { name, role } => Me {
            name: Some(name),
            role: Some(role.as_string()),
            auth,
        },
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
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
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
