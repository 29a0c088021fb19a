//! The rules' resource: the rules in force, one rule whole with its version and history,
//! validating a rule file, and changing a rule (a compare-and-set on its version).

use crate::auth::{Caller, Need};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

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
