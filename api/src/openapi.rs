//! The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`. It is derived from
//! the handlers' own annotations and the types they return, so it cannot drift from the code
//! without a test noticing (see the tests below: every route is in it).

use crate::alerts as a;
use crate::routes as r;
use crate::state::AppState;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "citywatch",
        description = "Live counters, alerts and rules of a district market-supervision control room. \
                       Reads are open unless citywatch runs with `auth = \"all\"`; writes need a bearer \
                       token whose role allows them (viewer, operator, unit:<id>, admin).",
    ),
    paths(
        r::counters, r::counters_stream, r::deadletters, r::conditions, r::rules_list, r::rule_get,
        r::rules_validate, r::rule_put, r::rule_delete, r::rule_enable, r::rule_history, r::rule_explain, r::rule_why_not, r::me, r::tokens_list,
        r::token_create, r::token_revoke, r::map, r::tiles,
        r::prometheus, r::healthz, r::readyz,
        a::list, a::detail, crate::alert_explain::explain, a::act, a::silences, a::silence_create, a::silence_expire,
        a::notifications, a::summary, a::stream,
        crate::reference::tables, crate::reference::table, crate::reference::replace,
        crate::complaints::list, crate::holds::list,
        crate::incidents::list, crate::incidents::detail, crate::incidents::act, crate::incidents::stream,
        openapi_json,
    ),
    modifiers(&Bearer, &EveryCall),
    tags(
        (name = "counters", description = "Live counters and the control room's tiles"),
        (name = "alerts", description = "Alerts, their actions, notifications and the live stream"),
        (name = "incidents", description = "One fault seen in two sources: alerts and complaints joined by incident rules"),
        (name = "silences", description = "Holding notifications back"),
        (name = "rules", description = "The alert rules in force and the conditions they find"),
        (name = "ingest", description = "Rejected messages"),
        (name = "markets", description = "Goods on hold after failed residue tests"),
        (name = "complaints", description = "Complaints and reports with their time limits in working days"),
        (name = "reference", description = "Reference data: the registries, the map, changes at run time"),
        (name = "auth", description = "Who is calling; tokens"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `citywatch token create --name N --role R`",
                    ))
                    .build(),
            ),
        );
    }
}

/// Answers any API call may give, whatever the handler: `401` (an unknown token, or none
/// with `auth = "all"`) and `429` (the token's request budget spent).
struct EveryCall;

impl Modify for EveryCall {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if path == "/api/v1/openapi.json" || path == "/healthz" || path == "/readyz" {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let r = &mut op.responses.responses;
                r.entry("401".into()).or_insert_with(|| {
                    error("An unknown token, or none where one is needed").into()
                });
                r.entry("429".into())
                    .or_insert_with(|| error("The token's request budget is spent").into());
            }
        }
    }
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The document's route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route("…", method(…))` in the router's sources, as (METHOD, path).
    fn routed() -> Vec<(String, String)> {
        let mut out = Vec::new();
        for src in [
            include_str!("routes/mod.rs"),
            include_str!("alerts.rs"),
            include_str!("incidents.rs"),
            include_str!("reference.rs"),
            include_str!("openapi.rs"),
        ] {
            for part in src.split(".route(").skip(1) {
                let Some(path) = part.split('"').nth(1) else {
                    continue;
                };
                if !path.starts_with('/') || path.contains('…') {
                    continue;
                }
                let call: String = part.split(')').take(4).collect();
                for m in ["get", "post", "put", "delete"] {
                    if call.contains(&format!("{m}(")) {
                        out.push((m.to_uppercase(), path.to_owned()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_with_its_methods() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let routes = routed();
        assert!(routes.len() >= 25, "found only {routes:?}");
        for (method, path) in &routes {
            let op = &doc["paths"][path][method.to_lowercase()];
            assert!(
                op.is_object(),
                "{method} {path} is not in the OpenAPI document"
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            routes.len(),
            "documented operations with no route"
        );
    }

    #[test]
    fn writes_name_the_token_they_need() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(
            doc["components"]["securitySchemes"]["token"]["scheme"],
            "bearer"
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method != "get" {
                    assert!(
                        op["security"].is_array(),
                        "{method} {path} does not say which token it needs"
                    );
                    assert!(
                        op["responses"]["401"].is_object(),
                        "{method} {path}: no 401"
                    );
                }
            }
        }
    }
}
