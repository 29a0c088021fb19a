//! `POST /api/v1/rules/{id}/explain`: what the rule in force makes of one event, part by
//! part (`dataflow::explain`).

use crate::auth::{Caller, Need};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

/// What to explain a rule for: an event as a line of a recording has it, and, for a rule that
/// reads `prev`, the group's previous event.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainBody {
    /// `{"topic": "cw/v1/elevator/E1/status", "payload": {…}}`.
    #[schema(value_type = Object)]
    event: serde_json::Value,
    /// The group's previous event, in the same form.
    #[schema(value_type = Option<Object>)]
    prev: Option<serde_json::Value>,
}

/// `POST /api/v1/rules/{id}/explain`: what the rule in force makes of one event, each
/// sub-expression of its filter (and clear condition, `done`, `ended_by`, `value`) with the
/// value it comes to, under the reference data in force. Changes nothing.
#[utoipa::path(post, path = "/api/v1/rules/{id}/explain", tag = "rules",
    params(("id" = String, Path, description = "Rule id", example = "elevator.overspeed")),
    request_body(content = ExplainBody, example = json!({"event": {"topic": "cw/v1/elevator/E1/status",
        "payload": {"ts": 1795737600000u64, "floor": 3, "in_door_zone": false, "speed_mps": 2.31, "direction": "up", "door": "closed"}}})),
    security(("token" = ["any role"])),
    responses((status = 200, description = "`expressions`: each expression with its parts and their values; `reference`: the rows `ref` reads for the event's device", body = Object),
        (status = 400, description = "The event does not decode, or is not of the rule's stream", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn rule_explain(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<dataflow::explain::Explanation>, ApiError> {
    caller.require(&s.auth, Need::Token, None)?;
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    let b: ExplainBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_field(
            "body",
            format!("expected {{\"event\": …, \"prev\": …}}: {e}"),
        )
    })?;
    let current = s.rules.current();
    let rule = current
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no rule {id:?}")))?;
    let decoder = model::Decoder::default();
    let decode = |field: &'static str, v: &serde_json::Value| {
        model::recording::decode_line(&decoder, &v.to_string())
            .map_err(|e| ApiError::bad_field(field, e.to_string()))
    };
    let event = decode("event", &b.event)?;
    let prev = b.prev.as_ref().map(|p| decode("prev", p)).transpose()?;
    let rows = dataflow::explain::RefValues::new(s.reference.current());
    dataflow::explain::explain(rule, &rows, &event, prev.as_ref())
        .map(Json)
        .map_err(|e| ApiError::bad_field("event", e.to_string()))
}
