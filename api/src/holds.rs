//! `GET /api/v1/holds`: the goods off sale now (a stall's goods whose residue test failed and
//! whose re-tests confirmed it, `market.residue_fail`, until a later test passes) and those
//! suspected (a positive test awaiting its re-tests, `market.residue_suspect`), each with the
//! stall's recent tests of those goods.

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use alerts::journal::HOLD_RULE;
/// The rule that fires at a positive test awaiting its re-tests.
pub const SUSPECT_RULE: &str = "market.residue_suspect";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldQuery {
    /// A market id.
    market: Option<String>,
}

/// A stall's goods on hold (or suspected), and the tests behind it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HoldView {
    market_id: String,
    stall_id: String,
    goods_code: String,
    /// `hold` (off sale until a later test passes) or `suspect` (re-tests pending).
    status: &'static str,
    rule: String,
    /// When it began (the test that decided it), epoch ms.
    since_ms: u64,
    /// How much later than `since_ms` it was known (a late backlog; 0 on time).
    late_by_ms: u64,
    /// The stall's latest tests of these goods, oldest first (up to 16).
    tests: Vec<TestView>,
}

/// One residue test.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TestView {
    ts: u64,
    inhibition_pct: f64,
    /// `pass` or `fail`.
    result: String,
}

/// `GET /api/v1/holds?market=`: the holds and suspicions in force, newest first.
#[utoipa::path(get, path = "/api/v1/holds", tag = "markets", params(HoldQuery),
    responses((status = 200, body = [HoldView]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HoldQuery>,
) -> Result<Json<Vec<HoldView>>, ApiError> {
    if let Some(unit) = caller.unit() {
        return Err(ApiError::forbidden(format!(
            "unit:{unit} may not read market holds: they are the offices' business"
        )));
    }
    let conditions = s.conditions.borrow().clone();
    let mut holds: Vec<HoldView> = conditions
        .active
        .values()
        .filter_map(|a| {
            let status = match a.rule.as_str() {
                HOLD_RULE => "hold",
                SUSPECT_RULE => "suspect",
                _ => return None,
            };
            let mut parts = a.group.splitn(3, '/');
            let (market, stall, goods) = (parts.next()?, parts.next()?, parts.next()?);
            if q.market.as_deref().is_some_and(|m| m != market) {
                return None;
            }
            let tests = s
                .residue_tests
                .as_ref()
                .map(|r| r.of(&a.group))
                .unwrap_or_default();
            Some(HoldView {
                market_id: market.to_owned(),
                stall_id: stall.to_owned(),
                goods_code: goods.to_owned(),
                status,
                rule: a.rule.clone(),
                since_ms: a.since,
                late_by_ms: a.late_by_ms,
                tests: tests
                    .into_iter()
                    .map(|t| TestView {
                        ts: t.ts,
                        inhibition_pct: t.inhibition_pct,
                        result: t.result,
                    })
                    .collect(),
            })
        })
        .collect();
    holds.sort_by_key(|h| std::cmp::Reverse(h.since_ms));
    Ok(Json(holds))
}
