//! Every input the fuzzers keep (`fuzz/corpus/<target>/`, the seeds and what coverage-guided
//! runs found interesting) and every input that once crashed one (`fuzz/regressions/<target>/`)
//! is run again through the same code as the fuzz targets, on a test thread's ordinary stack.

#[path = "../../fuzz/inputs.rs"]
mod inputs;

use std::path::Path;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn every_kept_fuzz_input_runs_clean() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (name, run) in inputs::TARGETS {
        let mut n = 0;
        for kind in ["corpus", "regressions"] {
            for file in files(&fuzz.join(kind).join(name)) {
                run(&std::fs::read(&file).unwrap());
                n += 1;
            }
        }
        assert!(n > 0, "no kept input for the fuzz target {name}");
    }
}
