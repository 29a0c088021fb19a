//! `GET /api/v1/alerts/{id}/explain`: why an alert fired (docs/explain.md). For each episode,
//! what the dataflow kept when it started (journaled with the start): the matched events over
//! a `for` period, a window's items and aggregate, when a device was last heard; and the
//! rule, as it was in force then, evaluated part by part over the deciding event.

use crate::alerts::{alerts_of, visible};
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::state::AppState;
use alerts::CauseRow;
use axum::Json;
use axum::extract::{Path, State};
use dataflow::explain::{Explanation, RefValues};
use rules::machine::Item;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainQuery {
    /// One episode, by its start (epoch ms); the latest episodes without it.
    since: Option<u64>,
    /// At most this many episodes, newest first (default 10, at most 100).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// An alert's episodes explained, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertExplained {
    alert_id: String,
    #[schema(value_type = Vec<Object>)]
    episodes: Vec<Episode>,
}

/// One episode: what made it fire.
#[derive(Debug, Serialize)]
struct Episode {
    since_ms: u64,
    /// When the start was known (event time).
    at_ms: u64,
    value: f64,
    /// The rule as it was in force, as its file spells it.
    rule: rules::RuleSource,
    /// Since when its raw condition held (a `for` period's start).
    raw_since_ms: Option<u64>,
    for_ms: u64,
    /// The matched events kept, oldest first.
    events: Vec<Shown>,
    /// Window items when it fired, oldest first: (event time, what each added).
    items: Vec<(u64, serde_json::Value)>,
    /// Earlier events (or items) of the episode not kept.
    earlier: u32,
    /// An absence rule's last matching event (or registration); a deadline's due time.
    last_seen_ms: Option<u64>,
    /// The rule's expressions over the latest kept event, part by part, with the reference
    /// rows it reads (as in force now).
    deciding: Option<Explanation>,
    /// A window rule's condition over the aggregate it fired with.
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<rules::compiled::Traced>,
    /// How it ended, from the alert's history (none while it fires).
    ended: Option<Ended>,
}

/// How an episode ended.
#[derive(Debug, Serialize)]
struct Ended {
    /// When (event time; an operator's action: wall-clock time).
    at_ms: u64,
    /// `condition` (its rule stopped holding), `operator` (resolved, or a false positive), or
    /// `restart` (it did not derive again after a restart).
    by: String,
    /// Why, as its rule (or the operator) says.
    why: String,
}

/// A kept event as it arrived.
#[derive(Debug, Serialize)]
struct Shown {
    time_ms: u64,
    received_ms: u64,
    topic: String,
    payload: serde_json::Value,
}

/// `GET /api/v1/alerts/{id}/explain`.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/explain", tag = "alerts",
    params(("id" = String, Path, description = "Alert id"), ExplainQuery),
    responses((status = 200, description = "Each episode's cause: the matched events over its `for` period (or the window's items), and the rule in force then evaluated part by part over the deciding event", body = AlertExplained),
        (status = 400, body = ErrorBody),
        (status = 404, description = "No such alert (or another unit's)", body = ErrorBody)))]
pub(crate) async fn explain(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ExplainQuery>,
) -> Result<Json<AlertExplained>, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_field("limit", "between 1 and 100"));
    }
    let alerts = alerts_of(&s)?;
    let d = alerts
        .detail(&id)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id:?}")))?;
    visible(&caller, &d.alert.body, &id)?;
    let rows = alerts
        .causes(&id, q.since, limit)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let refs = (!rows.is_empty()).then(|| RefValues::new(s.reference.current()));
    let episodes = rows
        .into_iter()
        .map(|r| {
            let ended = ended(&d.transitions, r.cause.since, &r.rule);
            Episode {
                ended,
                ..episode(r, refs.as_ref())
            }
        })
        .collect();
    Ok(Json(AlertExplained {
        alert_id: id,
        episodes,
    }))
}

fn episode(row: CauseRow, refs: Option<&RefValues>) -> Episode {
    let c = row.cause;
    let rule = rules::compile(&row.rule, "journal").ok();
    let deciding = match (&rule, c.events.last(), refs) {
        (Some(r), Some(seen), Some(refs)) => seen
            .envelope()
            .ok()
            .and_then(|env| dataflow::explain::explain(r, refs, &env, None).ok()),
        _ => None,
    };
    let counted = c.items.len() + c.earlier as usize;
    let condition = rule
        .as_ref()
        .and_then(|r| window_condition(r, c.value, counted));
    Episode {
        since_ms: c.since,
        at_ms: row.at_ms,
        value: c.value,
        for_ms: rule.as_ref().map_or(0, |r| r.for_ms),
        rule: row.rule,
        raw_since_ms: c.raw_since,
        events: c.events.iter().map(shown).collect(),
        items: c.items.into_iter().map(|(t, i)| (t, item(i))).collect(),
        earlier: c.earlier,
        last_seen_ms: c.last_seen,
        deciding,
        condition,
        ended: None,
    }
}

/// How the episode that started at `since` ended: the first resolution after its firing in the
/// alert's history, before another episode fired.
fn ended(history: &[alerts::TransitionRow], since: u64, rule: &rules::RuleSource) -> Option<Ended> {
    use alerts::TransitionEvent::{Firing, Resolved};
    let fired = history
        .iter()
        .position(|t| t.event == Firing && t.body["since_ms"].as_u64() == Some(since))?;
    let after = &history[fired + 1..];
    let t = after
        .iter()
        .take_while(|t| t.event != Firing)
        .find(|t| t.event == Resolved)?;
    let ev = &t.body["event"];
    let (by, why) = if ev["manual"] == true {
        let what = if ev["false_positive"] == true {
            "a false positive"
        } else {
            "resolved"
        };
        let reason = ev["reason"]
            .as_str()
            .map_or(String::new(), |r| format!(": {r}"));
        let who = ev["by"].as_str().unwrap_or("an operator");
        ("operator", format!("{what} by {who}{reason}"))
    } else if let Some(reason) = ev["reason"].as_str() {
        ("restart", reason.to_owned())
    } else {
        ("condition", stopped_because(rule))
    };
    Some(Ended {
        at_ms: t.at_ms,
        by: by.to_owned(),
        why,
    })
}

/// What ends an episode of `rule`, as its kind and its file say.
fn stopped_because(r: &rules::RuleSource) -> String {
    // An expression on one line, as a sentence quotes it.
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let quoted = |s: &Option<String>| s.as_deref().map(|s| format!("`{}`", one_line(s)));
    let ended_by =
        quoted(&r.ended_by).map_or(String::new(), |e| format!(", or an event matched {e}"));
    if let Some(d) = &r.deadline {
        let stream = d.done_stream.as_deref().unwrap_or(&r.stream);
        return format!("an event of {stream} matched `{}`", one_line(&d.done));
    }
    if r.absent_for.is_some() {
        return "the device was heard again (or left the registry)".to_owned();
    }
    if r.window.is_some() {
        return match quoted(&r.clear_condition) {
            Some(c) => format!("the window's aggregate met its clear condition {c}{ended_by}"),
            None => format!("the window's condition stopped holding{ended_by}"),
        };
    }
    match (r.mode.as_deref(), quoted(&r.clear_condition)) {
        (Some("state"), Some(c)) => {
            format!("an event of the group matched its clear condition {c}")
        }
        (Some("state"), None) => "the group's latest event no longer matched its filter".to_owned(),
        _ => {
            let kept = r.keep_firing_for.as_deref().unwrap_or("0s");
            format!("no matching event for {kept} (keep_firing_for) after the last{ended_by}")
        }
    }
}

/// A window rule's condition over the aggregate it fired with and the items counted (rules
/// that read earlier windows are left out: those windows are not kept with the cause).
fn window_condition(r: &rules::Rule, value: f64, count: usize) -> Option<rules::compiled::Traced> {
    let rules::spec::Kind::Window {
        condition, prior, ..
    } = &r.kind
    else {
        return None;
    };
    if *prior > 0 {
        return None;
    }
    let rules::compiled::Program::Compiled(node) =
        rules::compiled::Program::compile(&condition.source)
    else {
        return None;
    };
    let vars = rules::compiled::WindowVars {
        value,
        count,
        prior: &[],
    };
    Some(node.trace(&vars).1)
}

fn shown(s: &model::seen::Seen) -> Shown {
    Shown {
        time_ms: s.time_ms,
        received_ms: s.received_ms,
        topic: format!("{}{}", model::topic::DEFAULT_PREFIX, s.body.topic),
        payload: serde_json::from_str(&s.payload()).unwrap_or(serde_json::Value::Null),
    }
}

fn item(i: Item) -> serde_json::Value {
    match i {
        Item::Num(n) => serde_json::json!(n),
        Item::Text(t) => serde_json::Value::String(t),
        Item::Unit => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alerts::{AlertState, TransitionEvent, TransitionRow};
    use serde_json::json;

    fn source(text: &str) -> rules::RuleSource {
        rules::load_str("t.toml", text).unwrap().remove(0).source
    }

    fn row(seq: u64, event: TransitionEvent, at_ms: u64, body: serde_json::Value) -> TransitionRow {
        TransitionRow {
            seq,
            alert_id: "a".into(),
            version: seq,
            state: AlertState::Firing,
            event,
            at_ms,
            body,
        }
    }

    #[test]
    fn an_episode_ends_as_its_rule_or_its_operator_says() {
        let event = source(
            "[[rule]]\nid = \"e\"\nseverity = \"minor\"\nstream = \"elevator_status\"\n\
             keep_firing_for = \"5m\"\nended_by = '''event.door ==\n   \"open\"'''\n",
        );
        assert_eq!(
            stopped_because(&event),
            "no matching event for 5m (keep_firing_for) after the last, or an event matched \
             `event.door == \"open\"`"
        );
        let window = source(
            "[[rule]]\nid = \"w\"\nseverity = \"minor\"\nstream = \"elevator_status\"\n\
             window = { sliding = \"1m\" }\naggregate = \"count\"\ncondition = \"value >= 3\"\n",
        );
        assert_eq!(
            stopped_because(&window),
            "the window's condition stopped holding"
        );
        // Two episodes: the first closed by an operator, the second by its rule.
        let history = vec![
            row(1, TransitionEvent::Firing, 10, json!({"since_ms": 10})),
            row(2, TransitionEvent::Acknowledged, 11, json!({})),
            row(
                3,
                TransitionEvent::Resolved,
                12,
                json!({"event": {"manual": true,
                "false_positive": true, "by": "李工", "reason": "测试"}}),
            ),
            row(4, TransitionEvent::Firing, 20, json!({"since_ms": 20})),
            row(5, TransitionEvent::Resolved, 25, json!({"event": {}})),
        ];
        let first = ended(&history, 10, &window).unwrap();
        assert_eq!(
            (first.at_ms, first.by.as_str(), first.why.as_str()),
            (12, "operator", "a false positive by 李工: 测试")
        );
        let second = ended(&history, 20, &window).unwrap();
        assert_eq!((second.at_ms, second.by.as_str()), (25, "condition"));
        // Still firing: no end.
        assert!(ended(&history[..4], 20, &window).is_none());
    }
}
