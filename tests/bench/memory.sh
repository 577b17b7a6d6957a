#!/usr/bin/env bash
# Memory benchmark (issue 7): the aggregator's RSS with AGENTS x SERIES active
# series and a full head (SPAN of samples every INTERVAL), filled through the
# real ingest path (vigil-loadgen over QUIC into a real aggregator on a fresh
# PostgreSQL database), and bytes per sample in the head and on disk.
#
#   1. start the aggregator (head_duration = HEAD, maintenance every 10 s,
#      2 s in SMOKE) and
#      read its RSS: the baseline;
#   2. one batch per agent at the current time (open loop, one in flight,
#      stopping at once): every series exists, with one sample; RSS again, so
#      (RSS - baseline) / series is what a series costs without its samples
#      (head label set and slot, series index, series-id cache);
#   3. backfill: every agent sends its samples of the last SPAN at INTERVAL
#      spacing (POINTS per series per batch), as fast as acks allow, up to
#      the present (`vigil-loadgen --backfill`); stored == acked is checked;
#   4. wait for a maintenance round (the head is trimmed to HEAD and
#      publishes its own estimate, vigil_aggregator_head_bytes), then read
#      RSS (VmRSS, and the peak VmHWM), the head's series and samples from
#      /metrics, and the PostgreSQL sizes (raw sample partitions: table and
#      indexes, rows; rollups; the whole database).
# Prints the figures and exits 1 if stored != acked, if the head does not
# hold every series, or (SMOKE=1) if it does not hold every stored sample.
#
# Usage:  tests/bench/memory.sh [AGENTS] [SERIES] [INTERVAL] [SPAN]
#         (defaults 334 300 15s 2h: 100,200 series, 480 samples each)
# Env:    PROFILE=release|debug   binaries to use (default release), built
#                                 first (cargo build, a no-op when current)
#         BUILD=0                 do not build first
#         HEAD=2h                 the aggregator's storage.head_duration
#         POINTS=8                backfill points per series per batch (1 is
#                                 what a live agent sends; more only make the
#                                 fill faster, the head ends the same)
#         IN_FLIGHT=1             batches in flight per simulated agent
#         DRAIN=120s              how long unacked batches may still finish
#                                 once an agent has caught up (batches queue
#                                 for a commit slot: see docs/benchmarks.md)
#         TARGET_MIB=1024         RSS target reported against
#         AGG_LOG=FILE            keep the aggregator's log (with
#                                 MIMALLOC_SHOW_STATS=1 in the environment it
#                                 ends with the allocator's arena statistics)
#         HOLD=0                  also read VmRSS again after this many more
#                                 idle seconds (memory the allocator keeps
#                                 from ingest and gives back later)
#         SMOKE=1                 CI: 4 agents x 250 series, 5m at 15s unless
#                                 given; also fails unless the head holds
#                                 exactly the stored samples
#         PG=postgres://postgres@127.0.0.1:5432   server for the fresh database
set -euo pipefail
export PGOPTIONS='-c client_min_messages=warning'

root=$(cd "$(dirname "$0")/../.." && pwd)
smoke=${SMOKE:-0}
if [ "$smoke" = 1 ]; then
  agents=${1:-4} series=${2:-250} interval=${3:-15s} span=${4:-5m}
else
  agents=${1:-334} series=${2:-300} interval=${3:-15s} span=${4:-2h}
fi
profile=${PROFILE:-release}
head_duration=${HEAD:-2h}
points=${POINTS:-8}
in_flight=${IN_FLIGHT:-1}
drain=${DRAIN:-120s}
target_mib=${TARGET_MIB:-1024}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
pg_db=vigil_bench_memory_$$
# How often the head is trimmed (and its estimate published); the figures
# are read after one such round. 2 s in SMOKE, to keep CI short.
maintenance_s=10
[ "$smoke" = 1 ] && maintenance_s=2
bin=$root/target/$profile
# shellcheck source=tests/bench/lib.sh
. "$root/tests/bench/lib.sh"
build_bins vigil-aggregator vigil-certs vigil-loadgen

work=$(mktemp -d)
agg=
cleanup() {
  stop_aggregator
  if [ -n "${AGG_LOG:-}" ] && [ -f "$work/agg.log" ]; then cp "$work/agg.log" "$AGG_LOG"; fi
  bench_cleanup
}
trap cleanup EXIT

status_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$agg/status"; }
# Reads the aggregator's /metrics once; `metric NAME [LABEL-FILTER]` then
# picks a sample from that reading.
scrape() { curl -sf -o "$work/metrics.txt" "http://$http/metrics"; }
metric() {
  awk -v n="vigil_aggregator_$1" -v f="${2:-}" \
    '($1 == n || index($1, n "{") == 1) && (f == "" || index($1, f)) && !done {print $2; done = 1}' \
    "$work/metrics.txt"
}
psql_q() { psql "$pg/$pg_db" -Atq -c "$1"; }

"$bin/vigil-certs" ca --dir "$work/pki" >/dev/null
"$bin/vigil-certs" server --dir "$work/pki" --name localhost --name 127.0.0.1 >/dev/null
fresh_pg_db
url=$pg/$pg_db

write_agg_config "$url" "[storage]
head_duration = \"$head_duration\"
maintenance_interval = \"${maintenance_s}s\""
run_aggregator

loadgen() {
  "$bin/vigil-loadgen" --aggregator "$quic" --ca-dir "$work/pki" --work-dir "$work/agents" \
    --agents "$agents" --series "$series" --database "$url" --verify --progress 15s "$@"
}

status=0
sleep 2
rss0=$(status_kib VmRSS)
echo "== baseline: aggregator RSS $((rss0 / 1024)) MiB"

echo "== series: one batch per agent ($agents x $series series)"
loadgen --register --max --in-flight 1 --duration 1ms >"$work/series.out" || status=1
[ "$(field stored_ok "$work/series.out")" = true ] || { status=1; cat "$work/series.out"; }
sleep 3
rss1=$(status_kib VmRSS)
scrape
series1=$(metric head_series)
samples1=$(metric head_samples)
echo "   head: $series1 series, $samples1 samples; RSS $((rss1 / 1024)) MiB"

echo "== backfill: $span at $interval, $points points per series per batch, $in_flight in flight"
t0=$(date +%s)
loadgen --backfill "$span" --interval "$interval" --backfill-points "$points" \
  --in-flight "$in_flight" --duration 0s --drain "$drain" | tee "$work/fill.out" || status=1
fill_s=$(($(date +%s) - t0))
[ "$(field stored_ok "$work/fill.out")" = true ] || status=1

# The next maintenance round trims the head to HEAD and publishes its
# estimate.
echo "== waiting for a maintenance round (${maintenance_s}s)"
sleep $((maintenance_s + 3))
rss2=$(status_kib VmRSS)
hwm=$(status_kib VmHWM)
scrape
series2=$(metric head_series)
samples2=$(metric head_samples)
est_samples=$(metric head_bytes 'part="samples"')
est_labels=$(metric head_bytes 'part="labels"')
est_index=$(metric head_bytes 'part="index"')

hold=${HOLD:-0}
rss_hold=$rss2
if [ "$hold" -gt 0 ]; then
  echo "== holding ${hold}s idle"
  sleep "$hold"
  rss_hold=$(status_kib VmRSS)
fi

echo "== PostgreSQL sizes"
read -r raw_rows raw_table raw_index <<<"$(psql_q "
  SELECT (SELECT count(*) FROM samples),
         coalesce(sum(pg_table_size(relid)), 0), coalesce(sum(pg_indexes_size(relid)), 0)
  FROM pg_partition_tree('samples') WHERE isleaf" | tr '|' ' ')"
read -r roll_rows roll_bytes <<<"$(psql_q "
  SELECT (SELECT count(*) FROM samples_1m) + (SELECT count(*) FROM samples_1h),
         coalesce(sum(pg_total_relation_size(relid)), 0)
  FROM (SELECT relid FROM pg_partition_tree('samples_1m') WHERE isleaf
        UNION ALL SELECT relid FROM pg_partition_tree('samples_1h') WHERE isleaf) p" | tr '|' ' ')"
series_bytes=$(psql_q "SELECT pg_total_relation_size('series')")
db_bytes=$(psql_q "SELECT pg_database_size(current_database())")

expected=$((agents * series))
[ "${series2:-0}" = "$expected" ] || { echo "FAIL: head holds ${series2:-?} series, expected $expected" >&2; status=1; }
if [ "$smoke" = 1 ] && [ "${samples2:-0}" != "$raw_rows" ]; then
  echo "FAIL: head holds ${samples2:-?} samples, the database $raw_rows (SMOKE: the head covers them all)" >&2
  status=1
fi

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)   cpus: $(nproc)   backfill took ${fill_s}s"
python3 - "$rss0" "$rss1" "$rss2" "$hwm" "$series1" "$samples1" "$series2" "$samples2" \
  "${est_samples:-0}" "${est_labels:-0}" "${est_index:-0}" "$raw_rows" "$raw_table" "$raw_index" \
  "$roll_rows" "$roll_bytes" "$series_bytes" "$db_bytes" "$target_mib" "$interval" "$span" \
  "$head_duration" "$(field samples_per_s "$work/fill.out")" "$hold" "$rss_hold" <<'PY'
import sys
a = sys.argv[1:]
rss0, rss1, rss2, hwm = (int(x) * 1024 for x in a[0:4])
series1, samples1, series2, samples2 = (int(float(x)) for x in a[4:8])
est_s, est_l, est_i = (int(float(x)) for x in a[8:11])
raw_rows, raw_table, raw_index, roll_rows, roll_bytes, series_bytes, db_bytes = (int(x) for x in a[11:18])
target, interval, span, head, rate = int(a[18]), a[19], a[20], a[21], a[22]
hold, rss_hold = int(a[23]), int(a[24]) * 1024
MiB = 1024 * 1024
def mib(b): return f"{b / MiB:,.1f} MiB"
rows = [
    ("series (head)", f"{series2:,}"),
    (f"head samples ({head} head, {span} sent at {interval})", f"{samples2:,} ({samples2 / max(series2, 1):.0f} per series)"),
    ("backfill rate (acked samples/s)", rate or "-"),
    ("aggregator RSS: baseline (empty)", mib(rss0)),
    ("aggregator RSS: every series, 1 sample", mib(rss1)),
    ("aggregator RSS: full head (VmRSS)", mib(rss2)),
    ("aggregator peak RSS (VmHWM)", mib(hwm)),
] + ([(f"aggregator RSS after {hold} s more idle", mib(rss_hold))] if hold > 0 else []) + [
    (f"target <= {target} MiB (VmRSS / VmHWM)",
     ("met" if rss2 <= target * MiB else f"NOT met: {(rss2 - target * MiB) / MiB:+,.0f} MiB") + " / " +
     ("met" if hwm <= target * MiB else f"NOT met: {(hwm - target * MiB) / MiB:+,.0f} MiB")),
    ("per series, without samples: (RSS1 - RSS0) / series", f"{(rss1 - rss0) / max(series1, 1):,.0f} B"),
    ("head bytes/sample: (RSS - RSS1) / samples added", f"{(rss2 - rss1) / max(samples2 - samples1, 1):.1f} B"),
    ("head bytes/sample, all in: (RSS - RSS0) / head samples", f"{(rss2 - rss0) / max(samples2, 1):.1f} B"),
    ("head's estimate: sample buffers", f"{mib(est_s)} = {est_s / max(samples2, 1):.1f} B/sample"),
    ("head's estimate: label sets", f"{mib(est_l)} = {est_l / max(series2, 1):.0f} B/series"),
    ("head's estimate: hash tables + slots", f"{mib(est_i)} = {est_i / max(series2, 1):.0f} B/series"),
    ("RSS not in the head's estimate", mib(rss2 - est_s - est_l - est_i)),
    ("PostgreSQL raw samples: rows", f"{raw_rows:,}"),
    ("PostgreSQL raw samples: table + indexes", f"{mib(raw_table)} + {mib(raw_index)}"),
    ("PostgreSQL bytes/sample (table + indexes)", f"{(raw_table + raw_index) / max(raw_rows, 1):.1f} B ({raw_table / max(raw_rows, 1):.1f} + {raw_index / max(raw_rows, 1):.1f})"),
    ("PostgreSQL rollups (1m + 1h): rows, size", f"{roll_rows:,}, {mib(roll_bytes)}"),
    ("PostgreSQL series table", mib(series_bytes)),
    ("PostgreSQL whole database", f"{mib(db_bytes)} = {db_bytes / max(raw_rows, 1):.1f} B per raw sample"),
]
w = max(len(k) for k, _ in rows)
for k, v in rows:
    print(f"{k:<{w}}  {v}")
PY
exit "$status"
