//! Tokens and who is calling.

use crate::auth::{Caller, Need};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

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
