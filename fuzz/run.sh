#!/usr/bin/env bash
# Builds the fuzz targets and runs each in turn (one libFuzzer job each) for
# FUZZ_SECONDS seconds (600 by default), then minimises its corpus.
#
#   fuzz/run.sh                      # all four targets, 10 minutes each
#   FUZZ_SECONDS=60 fuzz/run.sh promql
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz passes
# (-Zsanitizer=address, sanitizer coverage). Crashes land in
# fuzz/artifacts/<target>/; see docs/fuzzing.md for what to do with one.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame exposition remote_write promql)

if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 1
fi
export RUSTC_BOOTSTRAP=1
# Release with debug assertions and overflow checks, AddressSanitizer (the
# default); 16 codegen units build the aggregator several times faster than
# cargo-fuzz's default of 1, for a little speed per execution.
flags=(-O -a --codegen-units 16 --target-dir target/fuzz)
cargo fuzz build "${flags[@]}"

for t in "${targets[@]}"; do
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
    echo "== $t: ${seconds}s"
    # -timeout: an input running 10 s is a hang (the PromQL target's query
    # timeout is 2 s); -rss_limit_mb: what one input may make us allocate.
    cargo fuzz run "${flags[@]}" "$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" 2>&1 | tee "target/fuzz/$t.log"
    cargo fuzz cmin "${flags[@]}" "$t"
done
