//! The control-room page: plain HTML, CSS and JavaScript modules built into the binary with
//! `include_str!`, so a deployment is one file and the page needs no CDN, no internet and no
//! build step (see docs/api.md for why).
//!
//! Every asset is sent with a strict Content-Security-Policy: scripts, styles and connections
//! only from this origin, so an alert text can never run as code even if it held markup.

use crate::state::AppState;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// Path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../web/index.html")),
    ("/app.js", JS, include_str!("../web/app.js")),
    ("/api.js", JS, include_str!("../web/api.js")),
    ("/dom.js", JS, include_str!("../web/dom.js")),
    ("/explain.js", JS, include_str!("../web/explain.js")),
    ("/incidents.js", JS, include_str!("../web/incidents.js")),
    ("/i18n.js", JS, include_str!("../web/i18n.js")),
    ("/map.js", JS, include_str!("../web/map.js")),
    ("/style.css", CSS, include_str!("../web/style.css")),
    ("/favicon.svg", SVG, include_str!("../web/favicon.svg")),
];

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes.
pub fn routes() -> Router<AppState> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, content_type),
                            (header::CONTENT_SECURITY_POLICY, CSP),
                            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                            (header::REFERRER_POLICY, "no-referrer"),
                            // Small files: revalidate on every load so an upgrade shows at once.
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        body,
                    )
                        .into_response()
                }),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_assets_that_are_served() {
        let html = ASSETS[0].2;
        for (path, _, body) in ASSETS {
            assert!(!body.is_empty(), "{path} is empty");
        }
        // Every module the page or a module imports is one of the assets.
        for (path, _, body) in ASSETS {
            for import in body
                .split("from \"./")
                .skip(1)
                .chain(html.split("src=\"/").skip(1))
            {
                let name = import.split('"').next().unwrap_or_default();
                let name = format!("/{}", name.trim_start_matches('/'));
                assert!(
                    ASSETS.iter().any(|(p, _, _)| *p == name),
                    "{path} loads {name}, which is not served"
                );
            }
        }
    }
}
