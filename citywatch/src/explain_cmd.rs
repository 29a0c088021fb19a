//! `citywatch rules explain` and `rules backtest --explain`: a rule's expressions for one
//! event, part by part, with the reference rows they read (`dataflow::explain`).

use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Prints what the expressions of rule `id` come to for one event (a recording line), with
/// `prev` as the group's previous event.
pub fn explain(
    rules_dir: &Path,
    id: &str,
    event: &str,
    prev: Option<&str>,
    reference: Option<&Path>,
) -> anyhow::Result<bool> {
    let rules = rules::load_dir(rules_dir).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("{}", errors.join("\n"))
    })?;
    let rule = rules
        .iter()
        .find(|r| r.id == id)
        .with_context(|| format!("no rule {id} in {}", rules_dir.display()))?;
    let reference = Arc::new(match reference {
        Some(dir) => dataflow::Reference::load(dir)?,
        None => dataflow::Reference::default(),
    });
    let decoder = model::Decoder::default();
    let decode = |what: &str, line: &str| {
        model::recording::decode_line(&decoder, line).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
    };
    let env = decode("event", event)?;
    let prev = prev.map(|p| decode("prev", p)).transpose()?;
    let explained = dataflow::explain::explain(
        rule,
        &dataflow::explain::RefValues::new(reference),
        &env,
        prev.as_ref(),
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} ({})", rule.id, rule.origin)?;
    writeln!(out, "reference rows: {}", explained.reference)?;
    for e in explained.expressions {
        match (e.traced, e.interpreted) {
            (Some(traced), _) => write!(out, "{}:\n{traced}", e.role)?,
            (None, why) => writeln!(
                out,
                "{}: {}\n  not compiled ({}): judged by cel-interpreter, which shows no parts",
                e.role,
                e.source,
                why.unwrap_or_default()
            )?,
        }
    }
    Ok(true)
}

/// The event an alert fired on: the last of its group, at or before it fired, whose filter
/// held; with the group's event before it (for `prev`), and the expressions explained.
pub(crate) struct Deciding {
    env: model::Envelope,
    explained: dataflow::explain::Explanation,
}

/// For each alert of a backtest, its deciding event, found in one more pass over the
/// recording. The group's previous event is the one before it in the recording.
pub(crate) fn deciding_events(
    rules: &[rules::Rule],
    reference: &Arc<dataflow::Reference>,
    input: &Path,
    first: u64,
    alerts: &[dataflow::offline::Interval],
) -> anyhow::Result<Vec<Option<Deciding>>> {
    use std::collections::HashMap;
    let mut found: Vec<Option<Deciding>> = alerts.iter().map(|_| None).collect();
    // The alerts of each (rule, group), by index.
    let mut wanted: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (k, a) in alerts.iter().enumerate() {
        wanted.entry((&a.rule, &a.group)).or_default().push(k);
    }
    // The reference indexed once for the pass; only rules that raised an alert are looked at.
    let rows = dataflow::explain::RefValues::new(reference.clone());
    let alerted: Vec<bool> = rules
        .iter()
        .map(|r| alerts.iter().any(|a| a.rule == r.id))
        .collect();
    let mut previous: HashMap<(usize, String), model::Envelope> = HashMap::new();
    for (env, t) in crate::rules_cmd::events(input)? {
        for (r, rule) in rules.iter().enumerate() {
            if !alerted[r] || rule.stream != env.event.stream() {
                continue;
            }
            let group = dataflow::explain::group_of(rule, &env);
            let Some(ks) = wanted.get(&(rule.id.as_str(), group.as_str())) else {
                continue;
            };
            let prev = previous.get(&(r, group.clone()));
            let explained = dataflow::explain::explain(rule, &rows, &env, prev)?;
            if dataflow::explain::holds(&explained) {
                for &k in ks {
                    let due = first + alerts[k].fires;
                    let later = found[k].as_ref().is_none_or(|d| d.env.time_ms <= t);
                    if t <= due && later {
                        found[k] = Some(Deciding {
                            env: env.clone(),
                            explained: explained.clone(),
                        });
                    }
                }
            }
            previous.insert((r, group), env.clone());
        }
    }
    Ok(found)
}

pub(crate) fn write_deciding(
    out: &mut impl Write,
    first: u64,
    d: Option<Deciding>,
) -> std::io::Result<()> {
    let Some(d) = d else {
        return writeln!(
            out,
            "  no event of its group held its filter before it fired (a timer or an absence fired it)"
        );
    };
    let at = d.env.time_ms.saturating_sub(first);
    let (topic, _) = d.env.event.encode("cw/v1/");
    writeln!(out, "  on {topic} at {at}ms:")?;
    writeln!(out, "  reference rows: {}", d.explained.reference)?;
    for e in d.explained.expressions {
        match e.traced {
            Some(t) => {
                writeln!(out, "  {}:", e.role)?;
                for line in t.to_string().lines() {
                    writeln!(out, "    {line}")?;
                }
            }
            None => writeln!(out, "  {}: {} (not compiled: no parts)", e.role, e.source)?,
        }
    }
    Ok(())
}

/// What the rules' operator kept when an alert fired (as a live alert journals it): the
/// matched events of its period, a window's items, when a silent device was last heard.
pub(crate) fn write_cause(
    out: &mut impl Write,
    first: u64,
    cause: Option<&dataflow::conditions::Cause>,
) -> std::io::Result<()> {
    let Some(c) = cause else {
        return Ok(());
    };
    let at = |t: u64| format!("{}ms", t.saturating_sub(first));
    let times = |ts: Vec<u64>| ts.into_iter().map(at).collect::<Vec<_>>().join(", ");
    let earlier = match c.earlier {
        0 => String::new(),
        n => format!(" ({n} earlier not kept)"),
    };
    if let Some(since) = c.raw_since {
        writeln!(out, "  held since {}", at(since))?;
    }
    if !c.events.is_empty() {
        let ts = c.events.iter().map(|e| e.time_ms).collect();
        writeln!(out, "  events kept{earlier}: {}", times(ts))?;
    }
    if !c.items.is_empty() {
        let ts = c.items.iter().map(|(t, _)| *t).collect();
        writeln!(out, "  window items{earlier}: {}", times(ts))?;
    }
    if let Some(seen) = c.last_seen {
        writeln!(out, "  last heard (or due) at {}", at(seen))?;
    }
    Ok(())
}
