//! The alert handlers: list, detail, actions, silences, notifications, the SSE stream and the
//! per-unit response times.

use crate::auth::{Caller, Need};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::state::AppState;
use alerts::{ActError, Action, AlertFilter, FieldState, NewSilence};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::StreamExt;

/// The alert routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts", get(list))
        .route("/api/v1/alerts/stream", get(stream))
        .route("/api/v1/alerts/summary", get(summary))
        .route("/api/v1/alerts/{id}", get(detail))
        .route(
            "/api/v1/alerts/{id}/explain",
            get(crate::alert_explain::explain),
        )
        .route("/api/v1/alerts/{id}/{action}", post(act))
        .route("/api/v1/silences", get(silences).post(silence_create))
        .route("/api/v1/silences/{id}", delete(silence_expire))
        .route("/api/v1/notifications", get(notifications))
}

pub(crate) fn alerts_of(s: &AppState) -> Result<&Arc<alerts::Alerts>, ApiError> {
    s.alerts
        .as_ref()
        .ok_or_else(|| ApiError::not_found("alerts are off: start citywatch with --rules"))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

pub(crate) fn act_error(e: ActError) -> ApiError {
    match e {
        ActError::NotFound(_) | ActError::NoSilence(_) => ApiError::not_found(e.to_string()),
        ActError::Conflict(m) => ApiError::conflict(m),
        ActError::Store(e) => internal(e),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `firing` or `resolved`.
    #[param(pattern = "^(firing|resolved)?$")]
    state: Option<String>,
    /// A rule id, e.g. `elevator.trapped_alarm`.
    rule: Option<String>,
    /// `critical`, `major`, `minor` or `info`.
    #[param(pattern = "^(critical|major|minor|info)?$")]
    severity: Option<String>,
    /// Event time, epoch ms: alerts whose condition started at or after it.
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    since: Option<u64>,
    /// `elevator`, `market`, `kitchen` or `complaint`.
    domain: Option<String>,
    district: Option<String>,
    /// A maintenance unit id (a unit's token is always held to its own).
    unit: Option<String>,
    /// At most this many, newest first [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /api/v1/alerts?state=&rule=&severity=&since=&domain=&district=&unit=&limit=`.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(ListQuery),
    responses((status = 200, description = "Alerts, newest first", body = [alerts::AlertRow]), (status = 400, body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(mut q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<alerts::AlertRow>>, ApiError> {
    // An empty parameter (`?state=`, as forms send) means no filter.
    for f in [
        &mut q.state,
        &mut q.rule,
        &mut q.severity,
        &mut q.domain,
        &mut q.district,
        &mut q.unit,
    ] {
        if f.as_deref().is_some_and(str::is_empty) {
            *f = None;
        }
    }
    // A maintenance unit sees its own alerts only.
    if let Some(unit) = caller.unit() {
        q.unit = Some(unit.to_owned());
    }
    if let Some(state) = q
        .state
        .as_deref()
        .filter(|s| !["firing", "resolved"].contains(s))
    {
        return Err(ApiError::bad_field(
            "state",
            format!("{state:?} is not firing or resolved"),
        ));
    }
    let filter = AlertFilter {
        state: q.state.as_deref(),
        rule: q.rule.as_deref(),
        severity: q.severity.as_deref(),
        since_ms: q.since,
        domain: q.domain.as_deref(),
        district: q.district.as_deref(),
        unit: q.unit.as_deref(),
    };
    let limit = crate::routes::limit(q.limit)?;
    let rows = alerts_of(&s)?
        .journal()
        .alerts(&filter, limit)
        .map_err(internal)?;
    Ok(Json(rows))
}

/// The maintenance unit of an alert, from its (or its transition's) body.
fn unit_of(body: &serde_json::Value) -> Option<&str> {
    body["labels"]["maintenance_unit"].as_str()
}

/// A unit's token may read only its own unit's alerts: 404 for the others, as if absent, so
/// that a unit learns nothing of another's incidents.
pub(crate) fn visible(caller: &Caller, body: &serde_json::Value, id: &str) -> Result<(), ApiError> {
    match caller.unit() {
        Some(unit) if unit_of(body) != Some(unit) => Err(ApiError::not_found(format!(
            "no alert {id:?} for unit {unit}"
        ))),
        _ => Ok(()),
    }
}

/// `GET /api/v1/alerts/{id}`: the alert, its transitions, notifications and escalation steps.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path, description = "Alert id")),
    responses((status = 200, body = alerts::AlertDetail), (status = 404, description = "No such alert (or another unit's)", body = ErrorBody)))]
pub(crate) async fn detail(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<alerts::AlertDetail>, ApiError> {
    let d = alerts_of(&s)?
        .detail(&id)
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id:?}")))?;
    visible(&caller, &d.alert.body, &id)?;
    Ok(Json(d))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"by": "李工", "comment": "已电话联系，维保人员15分钟内到场"}))]
pub(crate) struct ActBody {
    /// The person acting (recorded with the token's name).
    by: Option<String>,
    /// `ack`: an optional comment.
    comment: Option<String>,
    /// `assign`: who takes it.
    to: Option<String>,
    /// `comment`: the text.
    text: Option<String>,
    /// `resolve`, `false_positive`: why.
    reason: Option<String>,
    /// `state`: `responded`, `on_site`, `done` or `false_alarm` (forward only).
    state: Option<String>,
}

/// `POST /api/v1/alerts/{id}/{ack|assign|comment|resolve|false_positive|state}`.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/{action}", tag = "alerts",
    params(("id" = String, Path, description = "Alert id"),
        ("action" = String, Path, description = "`ack`, `assign`, `comment`, `resolve`, `false_positive` or `state`", example = "ack")),
    request_body = ActBody, security(("token" = ["operator", "admin", "unit:<id> (its own alerts)"])),
    responses((status = 200, description = "The alert after the action", body = alerts::AlertRow),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Does not fit the alert's state (a field state backwards, …)", body = ErrorBody)))]
pub(crate) async fn act(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<alerts::AlertRow>, ApiError> {
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    let b: ActBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_field("body", format!("expected a JSON object: {e}")))?;
    let person = b.by.as_deref().map(str::trim).filter(|b| !b.is_empty());
    let alert = alerts_of(&s)?
        .journal()
        .alert(&id)
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id:?}")))?;
    let unit = unit_of(&alert.body).map(str::to_owned);
    let token = caller.may_act_on(&s.auth, unit.as_deref(), person)?;
    let by = match (person, &caller) {
        (Some(p), Caller::Known { .. }) if p != token => format!("{p} ({token})"),
        _ => token,
    };
    let need = |v: Option<String>, field: &'static str| {
        v.filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ApiError::bad_field(field, format!("{action} needs \"{field}\"")))
    };
    let action = match action.as_str() {
        "ack" => Action::Ack { comment: b.comment },
        "assign" => Action::Assign {
            to: need(b.to, "to")?,
        },
        "comment" => Action::Comment {
            text: need(b.text, "text")?,
        },
        "resolve" => Action::Resolve { reason: b.reason },
        "false_positive" => Action::FalsePositive { reason: b.reason },
        "state" => {
            let state = need(b.state, "state")?;
            Action::Field(FieldState::parse(&state).ok_or_else(|| {
                ApiError::bad_field(
                    "state",
                    format!("{state:?} is not one of responded, on_site, done, false_alarm"),
                )
            })?)
        }
        other => {
            return Err(ApiError::not_found(format!(
                "no action {other:?}: ack, assign, comment, resolve, false_positive or state"
            )));
        }
    };
    let a = alerts_of(&s)?.clone();
    tokio::task::spawn_blocking(move || a.act(&id, &action, &by))
        .await
        .map_err(internal)?
        .map(Json)
        .map_err(act_error)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SilenceQuery {
    /// Include expired silences.
    all: Option<bool>,
}

/// `GET /api/v1/silences?all=`: active and future silences (all with `all=true`).
#[utoipa::path(get, path = "/api/v1/silences", tag = "silences", params(SilenceQuery), responses((status = 200, body = [alerts::SilenceRow]), (status = 400, body = ErrorBody)))]
pub(crate) async fn silences(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<SilenceQuery>,
) -> Result<Json<Vec<alerts::SilenceRow>>, ApiError> {
    let a = alerts_of(&s)?;
    let now = crate::now_ms();
    Ok(Json(
        a.journal()
            .silences(now, q.all.unwrap_or(false))
            .map_err(internal)?,
    ))
}

/// `POST /api/v1/silences` with `{matchers: ["domain=elevator", …], starts_ms?, ends_ms,
/// author, reason}`.
#[utoipa::path(post, path = "/api/v1/silences", tag = "silences", request_body = alerts::NewSilence,
    security(("token" = ["operator", "admin"])),
    responses((status = 201, body = alerts::SilenceRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn silence_create(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<alerts::SilenceRow>), ApiError> {
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    let mut new: NewSilence = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_field("body", format!("not a silence: {e}")))?;
    let token = caller.require(&s.auth, Need::Operator, Some(&new.author))?;
    if let Caller::Known { .. } = caller
        && new.author != token
    {
        new.author = format!("{} ({token})", new.author);
    }
    let row = alerts_of(&s)?.silence(new).map_err(|e| match e {
        ActError::Conflict(m) => ApiError::bad_field("body", m),
        other => act_error(other),
    })?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// `DELETE /api/v1/silences/{id}`: expires it now.
#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "silences", params(("id" = String, Path, description = "Silence id")),
    security(("token" = ["operator", "admin"])),
    responses((status = 204, description = "Expired"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn silence_expire(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&s.auth, Need::Operator, None)?;
    alerts_of(&s)?.expire_silence(&id).map_err(act_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NotificationQuery {
    /// Only this alert's (required with a unit's token).
    alert: Option<String>,
    /// At most this many, newest first [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /api/v1/notifications?alert=&limit=`. A unit's token must name one of its alerts.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "alerts", params(NotificationQuery),
    responses((status = 200, body = [alerts::NotificationRow]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn notifications(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> Result<Json<Vec<alerts::NotificationRow>>, ApiError> {
    let limit = crate::routes::limit(q.limit)?;
    let a = alerts_of(&s)?;
    if let Some(unit) = caller.unit() {
        let id = q.alert.as_deref().ok_or_else(|| {
            ApiError::bad_field("alert", format!("unit {unit} must name one of its alerts"))
        })?;
        let alert = a.journal().alert(id).map_err(internal)?;
        let body = alert.map(|a| a.body).unwrap_or_default();
        visible(&caller, &body, id)?;
    }
    Ok(Json(
        a.journal()
            .notifications(q.alert.as_deref(), limit)
            .map_err(internal)?,
    ))
}

/// `GET /api/v1/alerts/summary`: firing by severity and domain, trapped passengers now, and
/// per maintenance unit today (since local midnight, Asia/Shanghai): alerts, acknowledged,
/// mean time to acknowledge and to resolve. A unit's token gets its own figures only.
#[utoipa::path(get, path = "/api/v1/alerts/summary", tag = "alerts",
    responses((status = 200, description = "`{firing: [{severity, domain, count}], trapped_now, units_today: [UnitTimes], since_ms}`", body = Object)))]
pub(crate) async fn summary(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let a = alerts_of(&s)?;
    let j = a.journal();
    // A unit's token: its own alerts only, as everywhere.
    let unit = caller.unit();
    let firing = j.firing_by_of(unit).map_err(internal)?;
    let trapped = j
        .firing_with_of("fault", "trapped", unit)
        .map_err(internal)?;
    let today = model::time::day_start(model::time::local_day(crate::now_ms()));
    let mut units = j.unit_times(today).map_err(internal)?;
    if let Some(unit) = unit {
        units.retain(|u| u.unit == unit);
    }
    Ok(Json(serde_json::json!({
        "firing": firing.iter().map(|(severity, domain, n)| serde_json::json!({
            "severity": severity, "domain": domain, "count": n })).collect::<Vec<_>>(),
        "trapped_now": trapped,
        "units_today": units,
        "since_ms": today,
    })))
}

/// Every alert transition and action as a server-sent event (id = journal sequence). A client
/// that reconnects with `Last-Event-ID` gets everything it missed, then the live ones; a new
/// client gets the live ones (the current state is `GET /api/v1/alerts`). A client too slow
/// for the live buffer gets an `error` event saying how many it missed, and can resume with its
/// last id.
#[utoipa::path(get, path = "/api/v1/alerts/stream", tag = "alerts",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this journal sequence")),
    responses((status = 200, description = "`event: alert`, `id:` the journal sequence, `data:` a TransitionRow; `event: incident` (no id, not for units), `data:` an IncidentRow; `event: error` when events were missed", content_type = "text/event-stream", body = alerts::TransitionRow)))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // A unit's stream carries its own alerts only.
    let unit = caller.unit().map(str::to_owned);
    let mine =
        move |t: &alerts::TransitionRow| unit.is_none() || unit_of(&t.body) == unit.as_deref();
    let a = alerts_of(&s)?.clone();
    let last: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // Subscribe before reading the journal, so nothing falls between the two.
    let live = tokio_stream::wrappers::BroadcastStream::new(a.subscribe());
    let mut missed = Vec::new();
    if let Some(mut after) = last {
        loop {
            let page = a
                .journal()
                .transitions_after(after, PAGE)
                .map_err(internal)?;
            let full = page.len() == PAGE;
            after = page.last().map_or(after, |t| t.seq);
            missed.extend(page);
            if !full {
                break;
            }
        }
    }
    let sent = missed.last().map_or(last.unwrap_or(0), |t| t.seq);
    let to_event = |t: alerts::TransitionRow| {
        Event::default()
            .event("alert")
            .id(t.seq.to_string())
            .json_data(&t)
            .unwrap_or_else(|_| Event::default().comment("unserializable"))
    };
    let missed: Vec<_> = missed.into_iter().filter(&mine).collect();
    let missed = tokio_stream::iter(missed.into_iter().map(move |t| Ok(to_event(t))));
    let live = live.filter_map(move |r| match r {
        // The journal commits in order but broadcasts after the lock: skip what was already
        // sent from the journal, never reorder.
        Ok(t) if t.seq > sent && mine(&t) => Some(Ok(to_event(t))),
        Ok(_) => None,
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            Some(Ok(Event::default().event("error").data(format!(
                "{n} events missed: reconnect with Last-Event-ID"
            ))))
        }
    });
    // Incident changes ride along for the offices (no `id:`: they do not move the resume
    // point; `GET /api/v1/incidents` or its own stream give them back after a break).
    let offices = caller.unit().is_none();
    let incidents = tokio_stream::wrappers::BroadcastStream::new(a.subscribe_incidents())
        .filter_map(move |r| match r {
            Ok(i) if offices => Some(Ok(Event::default()
                .event("incident")
                .json_data(&i)
                .unwrap_or_else(|_| Event::default().comment("unserializable")))),
            _ => None,
        });
    Ok(Sse::new(missed.chain(live).merge(incidents)).keep_alive(KeepAlive::default()))
}

/// Transitions read from the journal at a time when a client catches up.
const PAGE: usize = 10_000;
