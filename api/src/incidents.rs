//! The incident handlers (docs/explain.md §3): list, detail with members, operators' actions,
//! and the live stream of changes. Incidents are the offices' business: a maintenance unit's
//! token reads none of them.

use crate::alerts::{act_error, alerts_of, internal};
use crate::auth::{Caller, Need};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::state::AppState;
use alerts::{IncidentAction, IncidentRow, MemberRow};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use tokio_stream::StreamExt;

/// The incident routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/stream", get(stream))
        .route("/api/v1/incidents/{id}", get(detail))
        .route("/api/v1/incidents/{id}/{action}", post(act))
}

fn not_for_units(caller: &Caller) -> Result<(), ApiError> {
    match caller.unit() {
        Some(unit) => Err(ApiError::forbidden(format!(
            "unit:{unit} may not read incidents: they are the offices' business"
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentQuery {
    /// `open`, `assigned` or `closed`.
    state: Option<String>,
    /// Only those routed to this office.
    office: Option<String>,
    /// At most this many [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /api/v1/incidents?state=&office=&limit=`: incidents, most recently changed first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(IncidentQuery),
    responses((status = 200, body = Vec<alerts::IncidentRow>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<IncidentQuery>,
) -> Result<Json<Vec<IncidentRow>>, ApiError> {
    not_for_units(&caller)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_field("limit", "between 1 and 1000"));
    }
    const STATES: [&str; 3] = ["open", "assigned", "closed"];
    if let Some(state) = q.state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(ApiError::bad_field(
            "state",
            format!("{state:?}: one of {}", STATES.join(", ")),
        ));
    }
    let rows = alerts_of(&s)?
        .journal()
        .incidents(
            &alerts::IncidentFilter {
                state: q.state.as_deref(),
                office: q.office.as_deref(),
            },
            None,
            limit,
        )
        .map_err(internal)?;
    Ok(Json(rows))
}

/// An incident with its members.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct IncidentDetail {
    incident: IncidentRow,
    /// Its alerts and complaints, oldest first.
    members: Vec<MemberRow>,
}

/// `GET /api/v1/incidents/{id}`: the incident and its members.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = String, Path, description = "Incident id")),
    responses((status = 200, body = IncidentDetail), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn detail(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IncidentDetail>, ApiError> {
    not_for_units(&caller)?;
    let (incident, members) = alerts_of(&s)?
        .journal()
        .incident(&id)
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id:?}")))?;
    Ok(Json(IncidentDetail { incident, members }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"by": "王科长", "finding": "门机故障致困人；投诉已答复"}))]
pub(crate) struct IncidentBody {
    /// The person acting (recorded with the token's name).
    by: Option<String>,
    /// `assign`: who takes it.
    to: Option<String>,
    /// `comment`: the text.
    text: Option<String>,
    /// `close`: what was found.
    finding: Option<String>,
}

/// `POST /api/v1/incidents/{id}/{assign|comment|close}`.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/{action}", tag = "incidents",
    params(("id" = String, Path, description = "Incident id"),
        ("action" = String, Path, description = "`assign`, `comment` or `close`", example = "close")),
    request_body = IncidentBody, security(("token" = ["operator", "admin"])),
    responses((status = 200, description = "The incident after the action", body = alerts::IncidentRow),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Closed already", body = ErrorBody)))]
pub(crate) async fn act(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IncidentRow>, ApiError> {
    let token = caller.require(&s.auth, Need::Operator, None)?;
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    let b: IncidentBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_field("body", format!("expected a JSON object: {e}")))?;
    let by = match b.by.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) if p != token => format!("{p} ({token})"),
        _ => token,
    };
    let need = |v: Option<String>, field: &'static str| {
        v.filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ApiError::bad_field(field, format!("{action} needs \"{field}\"")))
    };
    let action = match action.as_str() {
        "assign" => IncidentAction::Assign {
            to: need(b.to, "to")?,
        },
        "comment" => IncidentAction::Comment {
            text: need(b.text, "text")?,
        },
        "close" => IncidentAction::Close {
            finding: need(b.finding, "finding")?,
        },
        other => {
            return Err(ApiError::bad_field(
                "action",
                format!("{other:?}: one of assign, comment, close"),
            ));
        }
    };
    alerts_of(&s)?
        .act_incident(&id, &action, &by)
        .map(Json)
        .map_err(act_error)
}

/// Every change of an incident as a server-sent event (`event: incident`, id = its change
/// sequence, data = the incident after it). A client that reconnects with `Last-Event-ID`
/// first gets every incident changed since, as it is now.
#[utoipa::path(get, path = "/api/v1/incidents/stream", tag = "incidents",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this change sequence")),
    responses((status = 200, description = "`event: incident`, `id:` the change sequence, `data:` an IncidentRow", content_type = "text/event-stream", body = alerts::IncidentRow),
        (status = 403, body = ErrorBody)))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    not_for_units(&caller)?;
    let a = alerts_of(&s)?.clone();
    let last: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // Subscribe before reading the journal, so nothing falls between the two.
    let live = tokio_stream::wrappers::BroadcastStream::new(a.subscribe_incidents());
    let missed = match last {
        Some(after) => a
            .journal()
            .incidents(&alerts::IncidentFilter::default(), Some(after), 10_000)
            .map_err(internal)?,
        None => Vec::new(),
    };
    let sent = missed.last().map_or(last.unwrap_or(0), |i| i.seq);
    let to_event = |i: IncidentRow| {
        Event::default()
            .event("incident")
            .id(i.seq.to_string())
            .json_data(&i)
            .unwrap_or_else(|_| Event::default().comment("unserializable"))
    };
    let missed = tokio_stream::iter(missed.into_iter().map(move |i| Ok(to_event(i))));
    let live = live.filter_map(move |r| match r {
        Ok(i) if i.seq > sent => Some(Ok(to_event(i))),
        Ok(_) => None,
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            Some(Ok(Event::default().event("error").data(format!(
                "{n} changes missed: reconnect with Last-Event-ID"
            ))))
        }
    });
    Ok(Sse::new(missed.chain(live)).keep_alive(KeepAlive::default()))
}
