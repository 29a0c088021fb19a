//! Reading rule files (TOML, `[[rule]]` tables) into validated rules.
//!
//! Every problem is reported as `file:line:column: message`, and a file with any problem
//! yields no rules at all: an invalid rule never replaces a running one.

use crate::expr::Evaluator;
use crate::spec::*;
use crate::validate::validate;
use serde::Deserialize;
use std::path::Path;

/// A problem in a rule file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The rule it is about, when known.
    pub rule: Option<String>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleSource>>,
    /// Read by [`load_incidents_str`].
    #[serde(default, rename = "incident")]
    _incidents: Vec<toml::Value>,
}

/// The incident rules of a file, the alert rules left to [`load_str`].
#[derive(Deserialize)]
struct IncidentFile {
    #[serde(default)]
    incident: Vec<toml::Spanned<crate::incident::IncidentSource>>,
    #[serde(default, rename = "rule")]
    _rules: Vec<toml::Value>,
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses and validates one file's text. `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    crate::limits::check_file(text, &crate::limits::get()).map_err(|e| {
        let (line, column) = position(text, e.at - 1);
        vec![RuleError {
            file: file.to_owned(),
            line,
            column,
            rule: None,
            message: e.to_string(),
        }]
    })?;
    let parsed: RuleFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| position(text, s.start));
        vec![RuleError {
            file: file.to_owned(),
            line,
            column,
            rule: None,
            message: e.message().to_owned(),
        }]
    })?;
    let evaluator = Evaluator::default();
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for spanned in parsed.rule {
        // The span covers the `[[rule]]` header; the table runs to the next header.
        let header = spanned.span();
        let end = text[header.end..]
            .find("\n[")
            .map_or(text.len(), |i| header.end + i);
        let span = header.start..end;
        let src = spanned.into_inner();
        let at = |key: &str, column_in_value: usize| -> (usize, usize) {
            // The key's value inside this rule's table, else the table itself.
            let body = &text[span.clone()];
            let found = body.lines().scan(0, |off, l| {
                let here = *off;
                *off += l.len() + 1;
                Some((here, l))
            });
            for (off, l) in found {
                let trimmed = l.trim_start();
                if trimmed.starts_with(key) && trimmed[key.len()..].trim_start().starts_with('=') {
                    let eq = l.find('=').unwrap_or(0);
                    let value_start = eq + 1 + (l[eq + 1..].len() - l[eq + 1..].trim_start().len());
                    let quote = usize::from(l[value_start..].starts_with(['"', '\'']));
                    let (line, col) = position(text, span.start + off + value_start + quote);
                    return (line, col + column_in_value.saturating_sub(1));
                }
            }
            position(text, span.start)
        };
        let mut err = |key: &str, column: usize, message: String| {
            let (line, column) = at(key, column);
            errors.push(RuleError {
                file: file.to_owned(),
                line,
                column,
                rule: Some(src.id.clone()),
                message,
            });
        };
        let (line, _) = position(text, span.start);
        if let Some(mut rule) = validate(&src, &evaluator, &mut err) {
            rule.origin = format!("{file}:{line}");
            rules.push(rule);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &rules {
        if !seen.insert(r.id.clone()) {
            errors.push(RuleError {
                file: file.to_owned(),
                line: 1,
                column: 1,
                rule: Some(r.id.clone()),
                message: format!("duplicate rule id {:?}", r.id),
            });
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Parses and checks the incident rules (`[[incident]]`) of one file's text.
pub fn load_incidents_str(
    file: &str,
    text: &str,
) -> Result<Vec<crate::incident::IncidentRule>, Vec<RuleError>> {
    let error = |offset: usize, rule: Option<String>, message: String| {
        let (line, column) = position(text, offset);
        RuleError {
            file: file.to_owned(),
            line,
            column,
            rule,
            message,
        }
    };
    crate::limits::check_file(text, &crate::limits::get())
        .map_err(|e| vec![error(e.at - 1, None, e.to_string())])?;
    let parsed: IncidentFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        vec![error(at, None, e.message().to_owned())]
    })?;
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    for spanned in parsed.incident {
        let start = spanned.span().start;
        let src = spanned.into_inner();
        match crate::incident::check(&src) {
            Ok(mut inc) => {
                inc.origin = format!("{file}:{}", position(text, start).0);
                found.push(inc);
            }
            Err(problems) => errors.extend(
                problems
                    .into_iter()
                    .map(|(key, m)| error(start, Some(src.id.clone()), format!("{key}: {m}"))),
            ),
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// The incident rules of every rule file under `dir`, checked against the alert rules
/// `rules` loaded from it (ids unique across files).
pub fn load_incidents_dir(
    dir: &Path,
    rules: &[Rule],
) -> Result<Vec<crate::incident::IncidentRule>, Vec<RuleError>> {
    let mut files = Vec::new();
    collect(dir, &mut files).map_err(|e| vec![io_error(dir, &e)])?;
    files.sort();
    let texts = files.iter().map(|f| {
        let name = f.display().to_string();
        std::fs::read_to_string(f)
            .map(|t| (name.clone(), t))
            .map_err(|e| io_error(f, &e))
    });
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for text in texts {
        match text.map(|(name, t)| load_incidents_str(&name, &t)) {
            Ok(Ok(mut inc)) => found.append(&mut inc),
            Ok(Err(mut es)) => errors.append(&mut es),
            Err(e) => errors.push(e),
        }
    }
    errors.extend(incidents_checked(&found, rules));
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// Duplicate ids, and members that name no rule or no key.
pub(crate) fn incidents_checked(
    found: &[crate::incident::IncidentRule],
    rules: &[Rule],
) -> Vec<RuleError> {
    let mut errors = crate::incident::check_members(found, rules);
    let mut seen = std::collections::HashSet::new();
    for inc in found.iter().filter(|i| !seen.insert(i.id.clone())) {
        errors.push(RuleError {
            file: inc.origin.clone(),
            line: 1,
            column: 1,
            rule: Some(inc.id.clone()),
            message: format!("duplicate incident id {:?}", inc.id),
        });
    }
    errors
}

fn io_error(path: &Path, e: &std::io::Error) -> RuleError {
    RuleError {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        rule: None,
        message: e.to_string(),
    }
}

/// Loads every `*.toml` file under `dir` (recursively, in name order), skipping test files
/// (`*.test.toml`). Rule ids must be unique across files.
pub fn load_dir(dir: &Path) -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut files = Vec::new();
    collect(dir, &mut files).map_err(|e| {
        vec![RuleError {
            file: dir.display().to_string(),
            line: 1,
            column: 1,
            rule: None,
            message: e.to_string(),
        }]
    })?;
    files.sort();
    let mut rules: Vec<Rule> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Err(e) => errors.push(RuleError {
                file: name,
                line: 1,
                column: 1,
                rule: None,
                message: e.to_string(),
            }),
            Ok(text) => match load_str(&name, &text) {
                Ok(mut rs) => rules.append(&mut rs),
                Err(mut es) => errors.append(&mut es),
            },
        }
    }
    let mut seen = std::collections::HashMap::new();
    for r in &rules {
        if let Some(first) = seen.insert(r.id.clone(), r.origin.clone()) {
            let (file, line) = r.origin.rsplit_once(':').unwrap_or((&r.origin, "1"));
            errors.push(RuleError {
                file: file.to_owned(),
                line: line.parse().unwrap_or(1),
                column: 1,
                rule: Some(r.id.clone()),
                message: format!("rule id {:?} is also defined at {first}", r.id),
            });
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "toml")
            && !p.to_string_lossy().ends_with(".test.toml")
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Compiles a rule that was already written out (sent between workers, or kept as the
/// running set). Its problems, if any, as messages.
pub fn compile(src: &RuleSource, origin: &str) -> Result<Rule, Vec<String>> {
    let evaluator = Evaluator::default();
    let mut problems = Vec::new();
    let mut err =
        |key: &str, _col: usize, message: String| problems.push(format!("{key}: {message}"));
    match validate(src, &evaluator, &mut err) {
        Some(mut rule) if problems.is_empty() => {
            rule.origin = origin.to_owned();
            Ok(rule)
        }
        _ => Err(problems),
    }
}

/// Event rules hold this long after their last matching event unless `keep_firing_for` says.
pub const DEFAULT_EVENT_HOLD_MS: u64 = 5 * 60_000;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[rule]]
id = "kitchen.hygiene"
severity = "minor"
stream = "kitchen_detection"
filter = 'event.kind in ["no_mask", "no_hat"] && event.confidence >= 0.6'
group_by = ["kitchen_id"]
window = { sliding = "10m" }
aggregate = "count"
condition = "value >= 3"
"#;

    #[test]
    fn a_good_rule_loads() {
        let rules = load_str("k.toml", GOOD).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].origin, "k.toml:2");
        assert!(matches!(
            rules[0].kind,
            Kind::Window {
                window: Window::Sliding(600_000),
                aggregate: Aggregate::Count,
                ..
            }
        ));
    }

    fn one_error(text: &str) -> RuleError {
        let mut e = load_str("r.toml", text).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    }

    #[test]
    fn a_value_is_a_number_of_an_event_or_state_rule() {
        let rule = |extra: &str, value: &str| {
            format!(
                "[[rule]]\nid = \"x\"\nseverity = \"minor\"\nstream = \"elevator_status\"\nfilter = 'event.speed_mps > 3.0'\n{extra}value = '{value}'\n"
            )
        };
        let ok = load_str("v.toml", &rule("mode = \"state\"\n", "event.speed_mps")).unwrap();
        assert_eq!(ok[0].value.as_ref().unwrap().source, "event.speed_mps");
        let text = load_str("v.toml", &rule("", "event.door")).unwrap_err()[0]
            .message
            .clone();
        assert!(text.contains("expected a number"), "{text}");
        let window =
            "window = { sliding = \"1m\" }\naggregate = \"count\"\ncondition = \"value > 1\"\n";
        let text = load_str("v.toml", &rule(window, "event.speed_mps")).unwrap_err()[0]
            .message
            .clone();
        assert!(
            text.contains("value applies to event and state rules"),
            "{text}"
        );
    }

    #[test]
    fn ended_by_belongs_to_event_and_window_rules_without_prev() {
        let rule = |extra: &str| {
            format!(
                "[[rule]]\nid = \"x\"\nseverity = \"minor\"\nstream = \"market_residue\"\n{extra}ended_by = 'event.result == \"pass\"'\n"
            )
        };
        let window = "filter = 'event.result == \"fail\"'\nwindow = { sliding = \"2h\" }\naggregate = \"count\"\ncondition = \"value >= 3\"\n";
        let ok = load_str("e.toml", &rule(window)).unwrap();
        assert_eq!(
            ok[0].ended_by.as_ref().unwrap().source,
            "event.result == \"pass\""
        );
        // Each refusal points at the ended_by line.
        let problem = |extra: &str| {
            let text = rule(extra);
            let errors = load_str("e.toml", &text).unwrap_err();
            let line = text
                .lines()
                .position(|l| l.starts_with("ended_by"))
                .unwrap()
                + 1;
            assert_eq!(errors[0].line, line, "{errors:?}");
            errors[0].message.clone()
        };
        let state = problem("filter = 'event.result == \"fail\"'\nmode = \"state\"\n");
        assert!(
            state.contains("a state rule has clear_condition"),
            "{state}"
        );
        let prev = problem("filter = 'event.inhibition_pct > prev.inhibition_pct'\n");
        assert!(prev.contains("reads prev"), "{prev}");
    }

    #[test]
    fn errors_point_at_file_line_and_column() {
        let e = one_error(&GOOD.replace("kitchen_detection", "kitchen_detections"));
        assert_eq!((e.line, e.column), (5, 11));
        assert!(
            e.message
                .starts_with("unknown stream \"kitchen_detections\""),
            "{}",
            e.message
        );

        let e = one_error(&GOOD.replace("event.confidence", "event.confidance"));
        assert_eq!(e.line, 6);
        assert!(
            e.message
                .contains("unknown field \"confidance\" in event.confidance"),
            "{}",
            e.message
        );
        assert_eq!(
            e.column,
            11 + "event.kind in [\"no_mask\", \"no_hat\"] && event.".len()
        );

        let e = one_error(&GOOD.replace("10m", "10 minutes"));
        assert_eq!(e.line, 8);
        assert!(e.message.starts_with("bad duration"), "{}", e.message);

        let e = one_error(&GOOD.replace("value >= 3", "value"));
        assert!(e.message.contains("expected a boolean"), "{}", e.message);

        let e = one_error(&GOOD.replace("group_by", "groupby"));
        assert!(
            e.message.contains("unknown field `groupby`"),
            "{}",
            e.message
        );
        assert_eq!(e.line, 7);

        let e = one_error(&GOOD.replace("value >= 3", "value >= >= 3"));
        assert!(e.message.starts_with("syntax error"), "{}", e.message);
        assert_eq!(e.line, 10);
    }

    #[test]
    fn duplicates_and_event_rule_defaults() {
        let twice = format!("{GOOD}{GOOD}");
        assert!(one_error(&twice).message.contains("duplicate rule id"));
        let ev = load_str("e.toml", "[[rule]]\nid = \"x\"\nseverity = \"critical\"\nstream = \"kitchen_detection\"\nfilter = 'event.kind == \"rodent\"'\n").unwrap();
        assert_eq!(ev[0].keep_firing_for_ms, DEFAULT_EVENT_HOLD_MS);
    }

    #[test]
    fn prior_windows_need_a_tumbling_window_and_are_lists_in_the_condition() {
        let rule = "[[rule]]\nid = \"p\"\nseverity = \"minor\"\nstream = \"market_sale\"\n\
                    group_by = [\"market_id\", \"goods_code\"]\nwindow = { tumbling = \"1d\" }\n\
                    prior_windows = 3\naggregate = \"avg(unit_price)\"\n\
                    condition = 'prior_count[2] >= 10 && value > 1.1 * prior[2]'\n";
        let r = load_str("p.toml", rule).unwrap().remove(0);
        assert!(matches!(r.kind, Kind::Window { prior: 3, .. }));
        let e = one_error(&rule.replace("tumbling", "sliding"));
        assert!(
            e.message.contains("needs a tumbling window"),
            "{}",
            e.message
        );
        let e = one_error(&rule.replace("prior[2]", "prior.last"));
        assert_eq!(e.line, 9, "{}", e.message);
    }

    #[test]
    fn a_filter_reading_prev_carries_the_fields_it_reads() {
        let rule = "[[rule]]\nid = \"d\"\nseverity = \"minor\"\nstream = \"elevator_status\"\n\
                    filter = 'prev.door == \"closing\" && event.door == \"opening\" && event.floor == prev.floor'\n\
                    group_by = [\"elevator_id\"]\nwindow = { sliding = \"60s\" }\ncondition = \"value >= 3\"\n";
        let r = load_str("d.toml", rule).unwrap().remove(0);
        assert_eq!(r.prev_fields, ["door", "floor"]);
        let e = one_error(&rule.replace("event.floor == prev.floor", "ref.elevator.floors > 2"));
        assert!(e.message.contains("cannot read ref"), "{}", e.message);
        let plain = load_str(
            "p.toml",
            &rule
                .replace("prev.door", "event.door")
                .replace("prev.floor", "1"),
        )
        .unwrap();
        assert!(
            plain[0].prev_fields.is_empty(),
            "no prev: judged where the event arrives"
        );
    }

    #[test]
    fn hours_belong_to_absence_rules_and_must_parse() {
        let absence = "[[rule]]\nid = \"s\"\nseverity = \"minor\"\nstream = \"market_sale\"\nabsent_for = \"2h\"\nhours = \"06:00-20:00\"\n";
        let r = load_str("s.toml", absence).unwrap().remove(0);
        assert!(matches!(
            r.kind,
            Kind::Absence {
                hours: Some((21_600_000, 72_000_000)),
                ..
            }
        ));
        let e = one_error(&absence.replace("06:00-20:00", "20:00-06:00"));
        assert!(e.message.contains("HH:MM-HH:MM"), "{}", e.message);
        let e = one_error(&absence.replace("absent_for = \"2h\"\n", ""));
        assert!(e.message.contains("absence rules"), "{}", e.message);
        let e = one_error(&format!("{absence}seen_on = [\"market_sales\"]\n"));
        assert!(
            e.message.contains("unknown stream \"market_sales\""),
            "{}",
            e.message
        );
        let seen = load_str(
            "s.toml",
            &format!("{absence}seen_on = [\"market_check\"]\n"),
        )
        .unwrap();
        assert!(
            matches!(&seen[0].kind, Kind::Absence { seen_on, .. } if seen_on == &[model::Stream::MarketCheck])
        );
    }

    #[test]
    fn deadlines_are_checked_against_both_streams() {
        let rule = |deadline: &str, group: &str| {
            format!(
                "[[rule]]\nid = \"d\"\nseverity = \"major\"\nstream = \"complaint_new\"\n\
                 group_by = [{group}]\ndeadline = {deadline}\n"
            )
        };
        let good = rule(
            r#"{ working_days = 7, done_stream = "complaint_status", done = 'event.status == "accepted"' }"#,
            r#""complaint_id""#,
        );
        let d = load_str("d.toml", &good).unwrap().remove(0);
        assert!(matches!(
            d.kind,
            Kind::Deadline {
                working_days: 7,
                done_stream: model::Stream::ComplaintStatus,
                ..
            }
        ));
        assert_eq!(d.keep_firing_for_ms, 0, "it resolves as soon as it is done");
        let cases = [
            (
                good.replace("event.status", "event.state"),
                "unknown field \"state\"",
            ),
            (
                good.replace("working_days = 7", "working_days = 0"),
                "at least 1",
            ),
            (
                good.replace("complaint_status", "complaint_state"),
                "unknown done_stream",
            ),
            (
                good.replace(r#""complaint_id""#, ""),
                "name what identifies it",
            ),
            // merchant_id is on new complaints only: the done stream could never match it.
            (
                good.replace(r#""complaint_id""#, r#""merchant_id""#),
                "unknown field \"merchant_id\" for done_stream complaint_status",
            ),
        ];
        for (text, expected) in cases {
            let e = one_error(&text);
            assert!(e.message.contains(expected), "{expected}: {}", e.message);
        }
    }
}
