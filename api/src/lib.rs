//! The HTTP API of citywatch (axum): live counters (JSON and SSE), dead letters, Prometheus
//! metrics and health.
//!
//! Last step of the data path for people and tools: it reads what `ingest` and `dataflow`
//! publish and never blocks them. `app(state)` builds the router so tests can drive it
//! without a socket; `serve` runs it with a graceful shutdown.
//!
//! # Layout
//! - [`state`]: what the handlers read ([`AppState`]).
//! - [`routes`]: the handlers (counters, dead letters, conditions, rules, health).
//! - [`alerts`]: the alert handlers (actions, silences, notifications, stream).
//! - [`auth`]: bearer tokens and roles for writes.
//! - [`metrics`]: the Prometheus text exposition.
//! - [`error`]: JSON errors `{ "error": { "code", "message", "field"? } }`.

pub mod alerts;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod state;

pub use routes::app;
pub use state::AppState;

/// Serves `app(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
