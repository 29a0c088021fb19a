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
