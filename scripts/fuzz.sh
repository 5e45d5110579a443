#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 30),
# starting from the checked-in seed corpus; new inputs go to a temp dir, so
# the checked-in corpus never changes under a run. A crash fails the script
# and leaves its input in fuzz/artifacts/TARGET/ — turn each into a
# regression test. Uses the nightly toolchain if installed (else stable with
# RUSTC_BOOTSTRAP=1) and cargo-fuzz, which it installs if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --quiet --locked cargo-fuzz
fi
# The fuzz crate is its own workspace; keep its build beside the main one.
export CARGO_TARGET_DIR=$PWD/target/fuzz
# cargo-fuzz needs nightly flags (-Zsanitizer): use the nightly toolchain
# when there is one, else let the stable one accept them.
if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
# Build every target first, so a compile error shows as one (the run's
# output below is filtered to libFuzzer's stats and findings).
"${fuzz[@]}" build --fuzz-dir fuzz
for target in $("${fuzz[@]}" list --fuzz-dir fuzz); do
    work=$(mktemp -d)
    echo "fuzz: $target for ${seconds}s"
    set +e
    "${fuzz[@]}" run --fuzz-dir fuzz "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
        | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==[0-9]+==|SUMMARY|.*panicked|.*Test unit written)'
    status=${PIPESTATUS[0]}
    set -e
    rm -rf "$work"
    if [[ $status -ne 0 ]]; then
        echo "fuzz: $target FAILED (exit $status); see fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
