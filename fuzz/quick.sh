#!/usr/bin/env bash
# The quick fuzz run (docs/fuzzing.md, "Quick build"): stable toolchain, no
# cargo-fuzz. Builds the targets with fuzz/sancov-rustc (libFuzzer coverage
# for Vigil's crates only, every dependency reused from target/debug), then
# runs each target in turn for FUZZ_SECONDS (600 by default) with its
# dictionary, then minimises its corpus in place (-merge=1). No
# AddressSanitizer: fuzz/run.sh is the full build with it.
#
#   fuzz/quick.sh                       # all four targets, 10 minutes each
#   FUZZ_SECONDS=60 fuzz/quick.sh promql
#
# Crashes land in fuzz/artifacts/<target>/; logs in target/fuzz-quick/.
# Exits 1 if a target found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame exposition remote_write promql)
out=$root/target/fuzz-quick
mkdir -p "$out"

# The wrapper instruments these crates only; touching them makes cargo
# rebuild them (instrumented) although their sources did not change.
touch common/src/lib.rs aggregator/src/lib.rs
(cd fuzz && RUSTC_WRAPPER="$root/fuzz/sancov-rustc" cargo build --quiet --target-dir ../target --bins)
# Copies: the next ordinary debug build replaces target/debug's binaries.
for t in "${targets[@]}"; do cp "target/debug/$t" "$out/$t"; done
# ...and must rebuild Vigil's crates uninstrumented.
touch common/src/lib.rs aggregator/src/lib.rs

status=0
for t in "${targets[@]}"; do
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
    mkdir -p "fuzz/artifacts/$t"
    echo "== $t: ${seconds}s ($(date -u +%FT%TZ))"
    # -timeout: an input running 10 s is a hang (the PromQL target's query
    # timeout is 2 s); -rss_limit_mb: what one input may make us allocate.
    if ! "$out/$t" "fuzz/corpus/$t" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="fuzz/artifacts/$t/" >"$out/$t.log" 2>&1; then
        echo "$t: CRASH, see $out/$t.log and fuzz/artifacts/$t/"
        status=1
    fi
    grep -E 'DONE|stat::(number_of_executed_units|average_exec_per_sec)' "$out/$t.log" || true
    merged=$out/$t.merged
    rm -rf "$merged" && mkdir -p "$merged"
    "$out/$t" -merge=1 "$merged" "fuzz/corpus/$t" >"$out/$t.merge.log" 2>&1
    rm -rf "fuzz/corpus/$t" && mv "$merged" "fuzz/corpus/$t"
    echo "$t corpus: $(find "fuzz/corpus/$t" -type f | wc -l) files, $(du -sb "fuzz/corpus/$t" | cut -f1) bytes"
done
exit "$status"
