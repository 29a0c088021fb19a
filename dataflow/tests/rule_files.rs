//! Every test file of the default rule pack (`rules/default/tests/*.test.toml`) passes.

use std::path::Path;
use std::sync::Arc;

#[test]
fn the_default_pack_passes_its_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/default");
    let rules = Arc::new(rules::load_dir(&root).unwrap());
    let files = dataflow::offline::test_files(&root.join("tests"));
    assert!(files.len() >= 5, "{files:?}");
    let mut failures = Vec::new();
    for f in files {
        let outcome = dataflow::offline::run_file(&f, rules.clone()).unwrap();
        if !outcome.diff.is_empty() {
            failures.push(format!(
                "{}:\n  {}",
                outcome.name,
                outcome.diff.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
