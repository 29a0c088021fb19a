#!/usr/bin/env bash
# Runs fuzz targets in turn for SECONDS each (default 600; all six targets unless named), one
# core at a time, starting from the kept corpus fuzz/corpus/<target>/ and writing what raises
# coverage to fuzz/target/corpus/<target>/ (not kept in git), minimised after the run. See
# docs/fuzzing.md.
#   bash scripts/fuzz.sh [SECONDS [TARGET…]]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode rules reference recording input_log checkpoint)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  log="$(mktemp)"
  mkdir -p "target/corpus/$target"
  if cargo fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    echo "$target: clean for $seconds s: $(grep -E '^#[0-9]+' "$log" | tail -1)"
    cargo fuzz cmin "$target" "target/corpus/$target" >/dev/null 2>&1 || echo "$target: cmin failed"
  else
    echo "$target: FAILED, see $log and fuzz/artifacts/$target/"
    tail -40 "$log"
    exit 1
  fi
done
