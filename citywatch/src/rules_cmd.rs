//! `citywatch rules check DIR` and `citywatch rules test PATH…`.

use crate::replay::recording_lines;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Validates a rule directory; prints every problem as `file:line:column: why`.
pub fn check(dir: &Path) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match rules::load_dir(dir).and_then(|r| rules::load_incidents_dir(dir, &r).map(|i| (r, i))) {
        Ok((rules, incidents)) => {
            writeln!(
                out,
                "{}: {} rules and {} incident rules, all valid",
                dir.display(),
                rules.len(),
                incidents.len()
            )?;
            Ok(true)
        }
        Err(errors) => {
            for e in errors {
                writeln!(out, "{e}")?;
            }
            Ok(false)
        }
    }
}

/// Runs rule test files. `rules`: the rule directory; by default, the parent of the
/// `tests` directory each file is in.
pub fn test(paths: &[PathBuf], rules_dir: Option<&Path>) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for path in paths {
        let files = dataflow::offline::test_files(path);
        if files.is_empty() {
            writeln!(out, "{}: no *.test.toml files", path.display())?;
            failed += 1;
        }
        for file in files {
            let dir = match rules_dir {
                Some(d) => d.to_owned(),
                None => file
                    .ancestors()
                    .find(|a| a.file_name().is_some_and(|n| n == "tests"))
                    .and_then(Path::parent)
                    .map(Path::to_owned)
                    .with_context(|| {
                        format!(
                            "{}: not under a tests/ directory; name the rules with --rules",
                            file.display()
                        )
                    })?,
            };
            let rules = match rules::load_dir(&dir) {
                Ok(r) => Arc::new(r),
                Err(errors) => {
                    for e in errors {
                        writeln!(out, "{e}")?;
                    }
                    failed += 1;
                    continue;
                }
            };
            match dataflow::offline::run_file(&file, rules) {
                Err(e) => {
                    writeln!(out, "ERROR {e}")?;
                    failed += 1;
                }
                Ok(o) if o.diff.is_empty() => {
                    writeln!(out, "ok    {}", o.name)?;
                    passed += 1;
                }
                Ok(o) => {
                    writeln!(out, "FAIL  {}", o.name)?;
                    for d in o.diff {
                        writeln!(out, "      {d}")?;
                    }
                    failed += 1;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(failed == 0)
}

/// Runs rule sets over a recording and prints the alerts they raise, or with `against`, how
/// the two sets differ. The recording is read twice and never held whole: a first pass finds
/// its span of event time and how far out of order it is, then each run streams it.
pub fn backtest(
    rules_dir: &Path,
    input: &Path,
    against: Option<&Path>,
    reference: Option<&Path>,
    explain: bool,
) -> anyhow::Result<bool> {
    let reference = Arc::new(match reference {
        Some(dir) => dataflow::Reference::load(dir)?,
        None => dataflow::Reference::default(),
    });
    let scan = Scan::of(input)?;
    let load = |dir: &Path| -> anyhow::Result<Arc<Vec<rules::Rule>>> {
        rules::load_dir(dir).map(Arc::new).map_err(|errors| {
            anyhow::anyhow!(
                "{}",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    };
    let run = |rules| -> anyhow::Result<Vec<dataflow::offline::Interval>> {
        Ok(dataflow::offline::backtest(
            rules,
            reference.clone(),
            events(input)?,
            scan.first,
            scan.last + 1,
            scan.disorder,
        ))
    };
    let rules = load(rules_dir)?;
    // Explained, one run gives the alerts and what made each fire.
    let explained = match (explain, against) {
        (true, None) => dataflow::offline::backtest_explained(
            rules.clone(),
            reference.clone(),
            events(input)?,
            (scan.first, scan.last + 1, scan.disorder),
        ),
        _ => Vec::new(),
    };
    let mine = match explain && against.is_none() {
        true => explained.iter().map(|(i, _)| i.clone()).collect(),
        false => run(rules.clone())?,
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} messages ({} rejected), {} s of event time",
        scan.messages,
        scan.rejected,
        (scan.last - scan.first) / 1000
    )?;
    match against {
        None if explain => {
            let deciding =
                crate::explain_cmd::deciding_events(&rules, &reference, input, scan.first, &mine)?;
            for ((i, cause), d) in explained.iter().zip(deciding) {
                writeln!(out, "{}", dataflow::offline::show(i))?;
                crate::explain_cmd::write_deciding(&mut out, scan.first, d)?;
                crate::explain_cmd::write_cause(&mut out, scan.first, cause.as_ref())?;
            }
            writeln!(out, "{} alerts", mine.len())?;
        }
        None => {
            for i in &mine {
                writeln!(out, "{}", dataflow::offline::show(i))?;
            }
            writeln!(out, "{} alerts", mine.len())?;
        }
        Some(other) => {
            let theirs = run(load(other)?)?;
            let only_mine: Vec<_> = mine.iter().filter(|i| !theirs.contains(i)).collect();
            let only_theirs: Vec<_> = theirs.iter().filter(|i| !mine.contains(i)).collect();
            for i in &only_mine {
                writeln!(out, "+ {}", dataflow::offline::show(i))?;
            }
            for i in &only_theirs {
                writeln!(out, "- {}", dataflow::offline::show(i))?;
            }
            writeln!(
                out,
                "{} only with {}, {} only with {}",
                only_mine.len(),
                rules_dir.display(),
                only_theirs.len(),
                other.display()
            )?;
        }
    }
    Ok(true)
}

/// What a first pass over a recording finds.
struct Scan {
    /// The earliest and the latest event time.
    first: u64,
    last: u64,
    /// Valid messages, and lines refused.
    messages: u64,
    rejected: u64,
    /// How far an event came behind the newest one before it, at most (ms).
    disorder: u64,
}

impl Scan {
    fn of(input: &Path) -> anyhow::Result<Scan> {
        let mut scan = Scan {
            first: u64::MAX,
            last: 0,
            messages: 0,
            rejected: 0,
            disorder: 0,
        };
        let decoder = model::Decoder::default();
        for line in recording_lines(input)? {
            match model::recording::decode_line(&decoder, &line?) {
                Ok(env) => {
                    let t = env.time_ms;
                    scan.messages += 1;
                    scan.first = scan.first.min(t);
                    scan.disorder = scan.disorder.max(scan.last.saturating_sub(t));
                    scan.last = scan.last.max(t);
                }
                Err(_) => scan.rejected += 1,
            }
        }
        if scan.messages == 0 {
            anyhow::bail!("{}: no valid message", input.display());
        }
        Ok(scan)
    }
}

/// The recording's valid messages, each with its event time, read as they come. (A line
/// that cannot be read ends it: the first pass has read the same file whole.)
pub(crate) fn events(
    input: &Path,
) -> anyhow::Result<impl Iterator<Item = (model::Envelope, u64)> + Send + use<>> {
    let decoder = model::Decoder::default();
    Ok(recording_lines(input)?
        .map_while(Result::ok)
        .filter_map(move |line| {
            let env = model::recording::decode_line(&decoder, &line).ok()?;
            let t = env.time_ms;
            Some((env, t))
        }))
}

/// How often the rule files are checked for changes.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads the rule directory when its files change. A valid set replaces the running one
/// (including changes made through the API since); an invalid one is reported and changes
/// nothing.
pub async fn watch(dir: PathBuf, manager: Arc<control::RuleManager>) {
    let mut seen = fingerprint(&dir);
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let now = fingerprint(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        match rules::load_dir(&dir) {
            Ok(rules) => {
                let n = rules.len();
                match manager.reload(rules) {
                    Ok(()) => {
                        tracing::info!(dir = %dir.display(), rules = n, "rule files changed: reloaded")
                    }
                    Err(e) => tracing::error!(error = e, "cannot apply reloaded rules"),
                }
            }
            Err(errors) => {
                for e in &errors {
                    tracing::warn!(error = %e, "rule files changed but are invalid: the running rules stay");
                }
            }
        }
    }
}

/// Every rule file under `dir` with its size and modification time.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u64, Option<std::time::SystemTime>)>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "toml")
                && !path.to_string_lossy().ends_with(".test.toml")
            {
                let meta = e.metadata().ok();
                out.push((
                    path,
                    meta.as_ref().map_or(0, |m| m.len()),
                    meta.and_then(|m| m.modified().ok()),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}
