//! `GET /api/v1/complaints`: the complaints and reports remembered by ingest, each with its
//! statutory time limits in working days (DOMAIN: a complaint is accepted or rejected within 7
//! working days of receipt and mediated within 45 of acceptance; a report decided within 15),
//! the working days left, the office that handles it and its status history, so a deadline
//! is seen before it is missed. The page's "due soon" list reads it.

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::state::AppState;
use alerts::facts::complaints::ComplaintFacts;
use axum::Json;
use axum::extract::State;
use model::time::{WorkCalendar, local_day};
use serde::{Deserialize, Serialize};

/// Working days to decide a complaint (accept or reject), from receipt.
pub const COMPLAINT_DECISION_DAYS: u32 = 7;
/// Working days to end a mediation, from acceptance.
pub const MEDIATION_DAYS: u32 = 45;
/// Working days to decide on a report, from receipt.
pub const REPORT_DECISION_DAYS: u32 = 15;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ComplaintQuery {
    /// The handling office's id.
    office: Option<String>,
    /// `open` (not closed nor rejected), `received` (no decision yet), `accepted`,
    /// `rejected`, `mediating` or `closed`.
    #[param(pattern = "^(open|received|accepted|rejected|mediating|closed)?$")]
    state: Option<String>,
    /// Epoch ms: only those whose current time limit runs out before it.
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    due_before: Option<u64>,
    /// A merchant id, or a part of a merchant's name.
    merchant: Option<String>,
    /// At most this many [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Skip this many (paging) [default: 0].
    #[param(minimum = 0, maximum = 1_000_000)]
    offset: Option<usize>,
}

/// A page of complaints, soonest due first (those without a running limit last, newest
/// first).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ComplaintPage {
    /// How many match, over all pages.
    total: usize,
    offset: usize,
    items: Vec<ComplaintView>,
}

/// One complaint or report and where its handling stands.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ComplaintView {
    complaint_id: String,
    /// `complaint` (投诉) or `report` (举报).
    kind: String,
    merchant_id: Option<String>,
    merchant_name: String,
    category: String,
    received_ms: u64,
    /// `received`, `accepted`, `rejected`, `mediating` or `closed`.
    state: String,
    open: bool,
    /// The office of the latest status update that names one, else of the jurisdiction where
    /// it happened.
    office: Option<String>,
    /// When the decision (acceptance or rejection; a report's filing decision) is due.
    decision_due_ms: u64,
    /// When a complaint's mediation is due (45 working days from acceptance), once accepted.
    mediation_due_ms: Option<u64>,
    /// The limit running now (none once decided and not in mediation).
    due_ms: Option<u64>,
    /// Working days left to `due_ms`, today not counted; negative once past it.
    working_days_left: Option<i64>,
    overdue: bool,
    statuses: Vec<StatusView>,
    /// The incidents it is a member of, newest first.
    incidents: Vec<String>,
}

/// One status update.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StatusView {
    ts: u64,
    status: String,
    office: Option<String>,
}

/// `GET /api/v1/complaints?office=&state=&due_before=&merchant=&limit=&offset=`.
#[utoipa::path(get, path = "/api/v1/complaints", tag = "complaints", params(ComplaintQuery),
    responses((status = 200, body = ComplaintPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ComplaintQuery>,
) -> Result<Json<ComplaintPage>, ApiError> {
    if let Some(unit) = caller.unit() {
        return Err(ApiError::forbidden(format!(
            "unit:{unit} may not read complaints: they are the offices' business"
        )));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_field("limit", "between 1 and 1000"));
    }
    const STATES: [&str; 6] = [
        "open",
        "received",
        "accepted",
        "rejected",
        "mediating",
        "closed",
    ];
    if let Some(state) = q.state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(ApiError::bad_field(
            "state",
            format!("{state:?}: one of {}", STATES.join(", ")),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    let reference = s.reference.current();
    let (calendar, places) = (reference.calendar(), reference.jurisdictions());
    let now = crate::now_ms();
    let mut items: Vec<ComplaintView> = s
        .complaints
        .as_ref()
        .map(|c| c.matching(|_, f| merchant_matches(f, q.merchant.as_deref())))
        .unwrap_or_default()
        .into_iter()
        .map(|(id, f)| {
            let office = f
                .place
                .and_then(|(lat, lon)| places.office_at(lat, lon).map(|o| o.to_string()));
            view(id, f, office, &calendar, now)
        })
        .filter(|v| keep(v, &q))
        .collect();
    items.sort_by(|a, b| {
        let due = |v: &ComplaintView| v.due_ms.unwrap_or(u64::MAX);
        due(a).cmp(&due(b)).then(b.received_ms.cmp(&a.received_ms))
    });
    let total = items.len();
    let mut items: Vec<ComplaintView> = items.into_iter().skip(offset).take(limit).collect();
    if let Some(a) = s.alerts.as_ref() {
        let j = a.journal();
        for v in &mut items {
            v.incidents = j
                .incidents_of("complaint", &v.complaint_id)
                .map_err(crate::alerts::internal)?;
        }
    }
    Ok(Json(ComplaintPage {
        total,
        offset,
        items,
    }))
}

fn merchant_matches(f: &ComplaintFacts, merchant: Option<&str>) -> bool {
    merchant.is_none_or(|m| f.merchant_id.as_deref() == Some(m) || f.merchant_name.contains(m))
}

fn keep(v: &ComplaintView, q: &ComplaintQuery) -> bool {
    let state = q.state.as_deref().is_none_or(|s| match s {
        "open" => v.open,
        s => v.state == s,
    });
    let office = q
        .office
        .as_deref()
        .is_none_or(|o| v.office.as_deref() == Some(o));
    let due = q
        .due_before
        .is_none_or(|d| v.due_ms.is_some_and(|due| due < d));
    state && office && due
}

/// Where a complaint's handling stands at `now`.
fn view(
    complaint_id: String,
    f: ComplaintFacts,
    jurisdiction: Option<String>,
    calendar: &WorkCalendar,
    now: u64,
) -> ComplaintView {
    let state = f
        .statuses
        .last()
        .map_or_else(|| "received".to_owned(), |s| s.status.clone());
    let report = f.kind == "report";
    let days = if report {
        REPORT_DECISION_DAYS
    } else {
        COMPLAINT_DECISION_DAYS
    };
    let decision_due_ms = calendar.working_days_after(f.received_ms, days);
    let accepted = f.statuses.iter().find(|s| s.status == "accepted");
    let mediation_due_ms = accepted
        .filter(|_| !report)
        .map(|a| calendar.working_days_after(a.ts, MEDIATION_DAYS));
    let due_ms = match state.as_str() {
        "received" => Some(decision_due_ms),
        "accepted" | "mediating" if !report => mediation_due_ms,
        _ => None,
    };
    let office = f
        .statuses
        .iter()
        .rev()
        .find_map(|s| s.office.clone())
        .or(jurisdiction);
    ComplaintView {
        complaint_id,
        kind: f.kind,
        merchant_id: f.merchant_id,
        merchant_name: f.merchant_name,
        category: f.category,
        received_ms: f.received_ms,
        open: !matches!(state.as_str(), "closed" | "rejected"),
        state,
        office,
        decision_due_ms,
        mediation_due_ms,
        due_ms,
        working_days_left: due_ms.map(|d| working_days_left(calendar, now, d)),
        overdue: due_ms.is_some_and(|d| now >= d),
        statuses: f
            .statuses
            .into_iter()
            .map(|s| StatusView {
                ts: s.ts,
                status: s.status,
                office: s.office,
            })
            .collect(),
        incidents: Vec::new(),
    }
}

/// Working days from today (not counted) to the last day of a limit that runs out at `due`
/// (the start of the day after it); negative, the working days since, once past it.
fn working_days_left(calendar: &WorkCalendar, now: u64, due: u64) -> i64 {
    let (today, last) = (local_day(now), local_day(due.saturating_sub(1)));
    let count = |from: u64, to: u64| (from + 1..=to).filter(|d| calendar.is_working(*d)).count();
    if now < due {
        count(today, last) as i64
    } else {
        -(count(last, today) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alerts::facts::complaints::StatusChange;
    use model::time::{day_start, parse_rfc3339_ms};

    fn at(s: &str) -> u64 {
        parse_rfc3339_ms(&format!("{s}T10:00:00+08:00")).unwrap()
    }

    /// The calendar of the shipped `holidays.csv` (the State Council's 2025 and 2026 days).
    fn shipped_calendar() -> WorkCalendar {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/reference/holidays.csv"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let days = |kind: &str| -> Vec<u64> {
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(',');
                    let (date, k) = (f.next()?, f.next()?);
                    (k == kind).then(|| model::time::parse_day(date)).flatten()
                })
                .collect()
        };
        WorkCalendar::new(days("holiday"), days("workday"))
    }

    fn complaint(kind: &str, received: &str, statuses: &[(&str, &str)]) -> ComplaintFacts {
        ComplaintFacts {
            kind: kind.into(),
            merchant_name: "某超市".into(),
            received_ms: at(received),
            statuses: statuses
                .iter()
                .map(|(day, status)| StatusChange {
                    ts: at(day),
                    status: (*status).into(),
                    office: Some("O-YZ".into()),
                })
                .collect(),
            ..ComplaintFacts::default()
        }
    }

    #[test]
    fn a_deadline_across_the_2026_national_day_week_skips_the_holiday_and_counts_the_make_up_days()
    {
        let cal = shipped_calendar();
        // Received Thursday 24 September 2026. Mid-Autumn Festival 25–27 September, National
        // Day 1–7 October, Saturday 10 October a make-up working day: the 7 working days are
        // 28, 29, 30 September, 8, 9, 10 and 12 October.
        let v = view(
            "C1".into(),
            complaint("complaint", "2026-09-24", &[]),
            None,
            &cal,
            at("2026-09-30"),
        );
        assert_eq!(v.decision_due_ms, day_start(local_day(at("2026-10-13"))));
        assert_eq!(v.due_ms, Some(v.decision_due_ms));
        // On 30 September, 4 working days are left (8, 9, 10 and 12 October).
        assert_eq!(v.working_days_left, Some(4));
        assert!(!v.overdue && v.open && v.state == "received");
        assert_eq!(v.office, None);
    }

    #[test]
    fn accepted_complaints_run_their_mediation_limit_and_decided_reports_none() {
        let cal = WorkCalendar::new([], []);
        let accepted = view(
            "C2".into(),
            complaint("complaint", "2026-11-02", &[("2026-11-04", "accepted")]),
            Some("O-JB".into()),
            &cal,
            at("2026-11-05"),
        );
        assert_eq!(
            accepted.mediation_due_ms,
            Some(cal.working_days_after(at("2026-11-04"), 45))
        );
        assert_eq!(accepted.due_ms, accepted.mediation_due_ms);
        assert_eq!(
            accepted.office.as_deref(),
            Some("O-YZ"),
            "the handling office"
        );
        let report = view(
            "R1".into(),
            complaint("report", "2026-11-02", &[("2026-11-04", "accepted")]),
            None,
            &cal,
            at("2026-11-05"),
        );
        assert_eq!(
            report.decision_due_ms,
            cal.working_days_after(at("2026-11-02"), 15)
        );
        assert_eq!((report.due_ms, report.mediation_due_ms), (None, None));
        let late = view(
            "C3".into(),
            complaint("complaint", "2026-11-02", &[]),
            None,
            &cal,
            at("2026-11-16"),
        );
        // Due at the end of Wednesday 11 November; Thursday 12 to Monday 16: 3 working days.
        assert!(late.overdue);
        assert_eq!(late.working_days_left, Some(-3));
    }
}
