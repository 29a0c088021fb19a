//! The HTTP API of citywatch (axum): live counters (JSON and SSE), dead letters, Prometheus
//! metrics and health.
//!
//! Last step of the data path for people and tools: it reads what `ingest` and `dataflow`
//! publish and never blocks them. `app(state)` builds the router so tests can drive it
//! without a socket; `serve` runs it with a graceful shutdown.
//!
//! # Layout
//! - [`state`]: what the handlers read ([`AppState`]).
//! - [`routes`]: the router and the handlers of the live views (counters, dead letters,
//!   conditions, map, tiles) and the probes; `routes/rules.rs` the rules (list, whole rule,
//!   history, validate, change under a version check), `routes/tokens.rs` tokens and `me`.
//! - [`alerts`]: the alert handlers (actions, silences, notifications, stream).
//! - [`complaints`]: complaints and reports with their time limits in working days.
//! - [`holds`]: goods off sale after a failed residue test, with the tests behind them.
//! - [`incidents`]: alerts and complaints joined by incident rules: list, detail, actions, stream.
//! - [`auth`]: bearer tokens and roles.
//! - [`tiles`]: the control room's counter tiles and their last hour.
//! - [`web`]: the control-room page, built into the binary.
//! - [`metrics`]: the Prometheus text exposition (through `prometheus-client`).
//! - [`kept_rules`]: rule changes made through the API, kept for the next start.
//! - [`openapi`]: the OpenAPI document, derived from the handlers.
//! - [`error`]: JSON errors `{ "error": { "code", "message", "field"? } }`.

mod alert_explain;
pub mod alerts;
pub mod auth;
pub mod complaints;
pub mod error;
pub mod holds;
pub mod incidents;
pub use control::kept_rules;
pub mod metrics;
pub mod openapi;
pub mod reference;
pub mod routes;
pub mod state;
pub mod tiles;
pub mod web;

pub(crate) use model::time::now_ms;
pub use routes::app;
pub use state::AppState;

/// Serves `app(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sampler = tokio::spawn(tiles::sample(state.clone()));
    let served = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    sampler.abort();
    served
}
