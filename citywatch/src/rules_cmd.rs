//! `citywatch rules check DIR` and `citywatch rules test PATH…`.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Validates a rule directory; prints every problem as `file:line:column: why`.
pub fn check(dir: &Path) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match rules::load_dir(dir) {
        Ok(rules) => {
            writeln!(out, "{}: {} rules, all valid", dir.display(), rules.len())?;
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
        let files = dataflow::rule_tests::test_files(path);
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
            match dataflow::rule_tests::run_file(&file, rules) {
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
/// the two sets differ.
pub fn backtest(
    rules_dir: &Path,
    input: &Path,
    against: Option<&Path>,
    reference: Option<&Path>,
) -> anyhow::Result<bool> {
    let reference = Arc::new(match reference {
        Some(dir) => dataflow::Reference::load(dir)?,
        None => dataflow::Reference::default(),
    });
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let decoder = model::Decoder::default();
    let mut events = Vec::new();
    let mut rejected = 0u64;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match model::recording::decode_line(&decoder, line) {
            Ok(env) => {
                let t = env.time_ms;
                events.push((env, t));
            }
            Err(_) => rejected += 1,
        }
    }
    let (Some(first), Some(last)) = (
        events.iter().map(|e| e.1).min(),
        events.iter().map(|e| e.1).max(),
    ) else {
        anyhow::bail!("{}: no valid message", input.display());
    };
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
    let until = last + 1;
    let run = |rules| {
        dataflow::rule_tests::backtest(rules, reference.clone(), events.clone(), first, until)
    };
    let mine = run(load(rules_dir)?);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} messages ({rejected} rejected), {} s of event time",
        events.len(),
        (last - first) / 1000
    )?;
    match against {
        None => {
            for i in &mine {
                writeln!(out, "{}", dataflow::rule_tests::show(i))?;
            }
            writeln!(out, "{} alerts", mine.len())?;
        }
        Some(other) => {
            let theirs = run(load(other)?);
            let only_mine: Vec<_> = mine.iter().filter(|i| !theirs.contains(i)).collect();
            let only_theirs: Vec<_> = theirs.iter().filter(|i| !mine.contains(i)).collect();
            for i in &only_mine {
                writeln!(out, "+ {}", dataflow::rule_tests::show(i))?;
            }
            for i in &only_theirs {
                writeln!(out, "- {}", dataflow::rule_tests::show(i))?;
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

/// How often the rule files are checked for changes.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads the rule directory when its files change. A valid set replaces the running one
/// (including changes made through the API since); an invalid one is reported and changes
/// nothing.
pub async fn watch(dir: PathBuf, manager: Arc<api::state::RuleManager>) {
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
