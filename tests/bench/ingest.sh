#!/usr/bin/env bash
# Ingest benchmark (issue 7): vigil-loadgen's simulated fleet against a real
# aggregator on PostgreSQL (a fresh database) and on SQLite, beside each
# database's raw bulk-load rate for rows of the same shape (series id,
# timestamp, value): PostgreSQL `\copy` into an unindexed 3-column table,
# SQLite `.import` into a 3-column table (one transaction). Then an ack-latency
# run at a fixed rate of half the measured ceiling (as long as the ceiling run;
# latency timed after the first interval + 2 s). Prints a table; exits 1 if
# any run's stored != acked.
#
# Usage:  tests/bench/ingest.sh [AGENTS] [SERIES] [SECONDS] [IN_FLIGHT]
#         (defaults 1000 300 60 2)
# Env:    PROFILE=release|debug   binaries to use (default release), built
#                                 first (cargo build, a no-op when current)
#         BUILD=0                 do not build first
#         BIN_DIR=DIR             take the binaries from DIR (e.g. an older
#                                 build, for a before/after comparison)
#         DBS="postgres sqlite"   which databases
#         RAW_ROWS=N              rows for the raw bulk-load (default 2000000)
#         LATENCY=0               skip the half-ceiling latency run
#         SMOKE=1                 correctness only (CI): no raw load, no
#                                 latency run; fails unless stored == acked
#         PG=postgres://postgres@127.0.0.1:5432   server for the fresh database
#         AGG_EXTRA=TOML          appended to the aggregator's config, e.g.
#                                 $'[ingest]\nmax_group_samples = 50000'
set -euo pipefail
export PGOPTIONS='-c client_min_messages=warning'

root=$(cd "$(dirname "$0")/../.." && pwd)
agents=${1:-1000}
series=${2:-300}
seconds=${3:-60}
in_flight=${4:-2}
profile=${PROFILE:-release}
dbs=${DBS:-postgres sqlite}
raw_rows=${RAW_ROWS:-2000000}
smoke=${SMOKE:-0}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
pg_db=vigil_bench_ingest_$$
bin=${BIN_DIR:-$root/target/$profile}
# shellcheck source=tests/bench/lib.sh
. "$root/tests/bench/lib.sh"
build_bins vigil-aggregator vigil-certs vigil-loadgen

work=$(mktemp -d)
agg=
trap bench_cleanup EXIT

"$bin/vigil-certs" ca --dir "$work/pki" >/dev/null
"$bin/vigil-certs" server --dir "$work/pki" --name localhost --name 127.0.0.1 >/dev/null

# Starts the aggregator on database URL $1; sets $agg, $http and $quic.
start_aggregator() {
  write_agg_config "$1" "${AGG_EXTRA:-}"
  run_aggregator
}

# "SUM COUNT" of histogram $1 in the /metrics scrape saved in file $2.
hist() {
  awk -v m="$1" '$1 == m "_sum" {s = $2} $1 == m "_count" {c = $2} END {print s + 0, c + 0}' "$2"
}

# Runs the loadgen against $quic on database URL $1 with extra flags; the
# output goes to $2.
loadgen() {
  local url=$1 out=$2
  shift 2
  "$bin/vigil-loadgen" --aggregator "$quic" --ca-dir "$work/pki" --work-dir "$work/agents" \
    --agents "$agents" --series "$series" --database "$url" --register --verify \
    --progress 10s "$@" | tee "$out"
}

# Raw bulk-load rate (rows/s) of $raw_rows rows for database kind $1.
raw_rate() {
  local csv=$work/raw.csv start end
  if [ ! -f "$csv" ]; then
    python3 - "$csv" "$raw_rows" "$series" <<'PY'
import random, sys
path, rows, series = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ids = max(1, rows // 60)  # about a minute of samples per series
t0 = 1_790_000_000_000
with open(path, "w") as f:
    w = f.write
    for i in range(rows):
        w(f"{i % ids},{t0 + (i // ids) * 1000},{random.random() * 1000:.6f}\n")
PY
  fi
  case $1 in
    postgres)
      psql "$pg/$pg_db" -q -c 'DROP TABLE IF EXISTS raw_bench' \
        -c 'CREATE TABLE raw_bench (series_id bigint, ts bigint, value double precision)' >/dev/null
      start=$(date +%s.%N)
      psql "$pg/$pg_db" -q -c "\\copy raw_bench FROM '$csv' WITH (FORMAT csv)" >/dev/null
      end=$(date +%s.%N)
      psql "$pg/$pg_db" -q -c 'DROP TABLE raw_bench' >/dev/null
      ;;
    sqlite)
      rm -f "$work/raw.db"
      sqlite3 "$work/raw.db" 'PRAGMA journal_mode=WAL;' \
        'CREATE TABLE raw_bench (series_id INTEGER, ts INTEGER, value REAL);' >/dev/null
      start=$(date +%s.%N)
      sqlite3 "$work/raw.db" '.mode csv' ".import $csv raw_bench"
      end=$(date +%s.%N)
      rm -f "$work/raw.db"*
      ;;
  esac
  python3 -c "print(round($raw_rows / ($end - $start)))"
}

status=0
rows=()
for db in $dbs; do
  case $db in
    postgres)
      fresh_pg_db
      url=$pg/$pg_db
      ;;
    sqlite)
      url=sqlite:$work/vigil.db
      ;;
    *) echo "unknown database $db" >&2; exit 64 ;;
  esac
  start_aggregator "$url"
  echo "== $db: ceiling, $agents agents x $series series, open loop, $in_flight in flight, ${seconds}s"
  loadgen "$url" "$work/max.out" --max --in-flight "$in_flight" --duration "${seconds}s" \
    || status=1
  acked=$(field samples_per_s "$work/max.out")
  ok=$(field stored_ok "$work/max.out")
  [ "$ok" = true ] || status=1
  row="$db|${acked:-0}|$(field p50_ms "$work/max.out")|$(field p99_ms "$work/max.out")|$ok"
  if [ "$smoke" = 1 ]; then
    rows+=("$row|-|-|-")
    stop_aggregator
    continue
  fi
  half=-
  if [ "${LATENCY:-1}" = 1 ] && [ "${acked:-0}" -gt 0 ]; then
    # Half the ceiling, as one batch per agent per interval.
    interval_ms=$(python3 -c "print(max(1, round(1000 * $agents * $series / ($acked / 2))))")
    echo "== $db: latency at half the ceiling: one batch per agent every ${interval_ms}ms"
    # Latency is steady-state: batches sent in the first interval + 2 s,
    # while the 1,000 connections are set up, are counted but not timed.
    curl -sf "http://$http/metrics" >"$work/metrics0"
    read -r d_sum0 d_n0 < <(hist vigil_aggregator_commit_duration_seconds "$work/metrics0")
    read -r g_sum0 g_n0 < <(hist vigil_aggregator_commit_group_batches "$work/metrics0")
    loadgen "$url" "$work/half.out" --interval "${interval_ms}ms" --in-flight "$in_flight" \
      --warmup "$(( interval_ms + 2000 ))ms" \
      --duration "$(( seconds > 20 ? seconds : 20 ))s" || status=1
    curl -sf "http://$http/metrics" >"$work/metrics1"
    read -r d_sum1 d_n1 < <(hist vigil_aggregator_commit_duration_seconds "$work/metrics1")
    read -r g_sum1 g_n1 < <(hist vigil_aggregator_commit_group_batches "$work/metrics1")
    # Where an ack's time goes: the aggregator's own view of the commit
    # (queue for a committer + the group's transaction), per batch.
    python3 -c "
n = $d_n1 - $d_n0; g = $g_n1 - $g_n0
print('aggregator, half run: commit (queue + transaction) mean %.2f ms over %d batches; %.1f batches per group'
      % (1000 * ($d_sum1 - $d_sum0) / max(n, 1), n, ($g_sum1 - $g_sum0) / max(g, 1)))"
    bucket_quantiles vigil_aggregator_commit_duration_seconds "$work/metrics0" "$work/metrics1"
    bucket_quantiles vigil_aggregator_batch_duration_seconds "$work/metrics0" "$work/metrics1"
    [ "$(field stored_ok "$work/half.out")" = true ] || status=1
    half="$(field samples_per_s "$work/half.out")|$(field p99_ms "$work/half.out")"
  fi
  stop_aggregator
  echo "== $db: raw bulk load of $raw_rows rows"
  raw=$(raw_rate "$db")
  rows+=("$row|$raw|$half")
done
rm -f "$work/raw.csv"

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)   cpus: $(nproc)"
printf '%-9s %12s %14s %7s %9s %9s %8s %14s %10s\n' db raw_rows/s acked_samples/s ratio p50_ms p99_ms stored half_rate/s half_p99_ms
for r in "${rows[@]}"; do
  IFS='|' read -r db acked p50 p99 ok raw hrate hp99 <<<"$r"
  ratio=-
  [ "$raw" != - ] && ratio=$(python3 -c "print(f'{$acked / $raw:.2f}')")
  printf '%-9s %12s %14s %7s %9s %9s %8s %14s %10s\n' "$db" "$raw" "$acked" "$ratio" "$p50" "$p99" \
    "$([ "$ok" = true ] && echo '==sent' || echo MISMATCH)" "${hrate:--}" "${hp99:--}"
done
exit "$status"
