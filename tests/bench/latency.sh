#!/usr/bin/env bash
# Freshness and alert-latency benchmark (issue 7, benchmarks 2 and 3):
# `vigil-probe` (one probe agent, one batch per second over real QUIC)
# against a real aggregator while `vigil-loadgen` drives it at a fixed
# rate (half the ingest ceiling by default), on a fresh PostgreSQL database
# and on SQLite. Measured per sample / threshold crossing (docs/loadgen.md):
#   created -> acked; -> returned by GET /prometheus/api/v1/query (polled
#   every POLL); -> pushed on the dashboard's /ws/live (host panel set);
#   crossing created -> webhook received (rule for: 0s, route group_wait: 0s).
# While the probe runs, tests/bench/under_load.py times the query API and the
# dashboard's pages against the same loaded aggregator (benchmark 4).
# Prints a table; exits 1 if any measured sample or crossing was never seen,
# or a query or page failed.
#
# Usage:  tests/bench/latency.sh [RATE] [SECONDS]
#         RATE     background samples/s: a number, 0 (none), or auto
#                  (default: measure the ceiling first, open loop for
#                  CEILING_SECONDS, and use half of it)
#         SECONDS  how long the probe sends (default 60)
# Env:    PROFILE=release|debug   binaries to use (default release), built
#                                 first (cargo build, a no-op when current)
#         BUILD=0                 do not build first
#         DBS="postgres sqlite"   which databases
#         AGENTS=1000 SERIES=300  the background fleet (vigil-loadgen)
#         IN_FLIGHT=2             batches in flight per agent for the ceiling
#         CEILING_SECONDS=30      length of the ceiling run (RATE=auto)
#         LIVE_INTERVAL=250ms     [dashboard] live_interval (250ms..1m)
#         RULE_INTERVAL=250ms     the probe rule group's evaluation interval
#         POLL=20ms LANES=3       probe: query poll, alert lanes
#         SMOKE=1                 correctness only (CI): 5 s, no background
#                                 load; fails unless everything was seen
#         PG=postgres://postgres@127.0.0.1:5432   server for the fresh database
set -euo pipefail
export PGOPTIONS='-c client_min_messages=warning'

root=$(cd "$(dirname "$0")/../.." && pwd)
smoke=${SMOKE:-0}
if [ "$smoke" = 1 ]; then
  rate=${1:-0}
  seconds=${2:-5}
else
  rate=${1:-auto}
  seconds=${2:-60}
fi
profile=${PROFILE:-release}
dbs=${DBS:-postgres sqlite}
agents=${AGENTS:-1000}
series=${SERIES:-300}
in_flight=${IN_FLIGHT:-2}
ceiling_seconds=${CEILING_SECONDS:-30}
live_interval=${LIVE_INTERVAL:-250ms}
rule_interval=${RULE_INTERVAL:-250ms}
poll=${POLL:-20ms}
lanes=${LANES:-3}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
pg_db=vigil_bench_latency_$$
bin=$root/target/$profile
# shellcheck source=tests/bench/lib.sh
. "$root/tests/bench/lib.sh"
build_bins vigil-aggregator vigil-certs vigil-loadgen vigil-probe

work=$(mktemp -d)
agg=
bg=
cleanup() {
  if [ -n "$bg" ]; then kill "$bg" 2>/dev/null || true; wait "$bg" 2>/dev/null || true; fi
  bench_cleanup
}
trap cleanup EXIT


"$bin/vigil-certs" ca --dir "$work/pki" >/dev/null
"$bin/vigil-certs" server --dir "$work/pki" --name localhost --name 127.0.0.1 >/dev/null

# Writes the configuration for database URL $1 (the probe's rule file and
# notify config, its webhook port, the live interval, no API rate limits:
# the probe polls faster than the default per-token limit), creates the
# probe's admin token and starts the aggregator; sets $agg, $http, $quic,
# $hook.
start_aggregator() {
  local url=$1
  hook=127.0.0.1:$(free_port)
  "$bin/vigil-probe" write-config --dir "$work/pki" --webhook-listen "$hook" \
    --rule-interval "$rule_interval"
  write_agg_config "$url" "[alerting]
rule_files = [\"probe.rules.yml\"]
evaluation_interval = \"1s\"
[notify]
config_file = \"probe.notify.yml\"
[dashboard]
live_interval = \"$live_interval\""
  "$bin/vigil-aggregator" create-token --config "$work/pki/aggregator.toml" --name probe \
    --scope admin >"$work/token"
  echo bench-password-1234 | "$bin/vigil-aggregator" create-user \
    --config "$work/pki/aggregator.toml" --name bench --role viewer >/dev/null
  run_aggregator
}

# vigil-loadgen against $quic on database URL $1 with extra flags.
loadgen() {
  local url=$1
  shift
  "$bin/vigil-loadgen" --aggregator "$quic" --ca-dir "$work/pki" --work-dir "$work/agents" \
    --agents "$agents" --series "$series" --database "$url" --register --progress 10s "$@"
}

status=0
rows=()
timed=()
for db in $dbs; do
  case $db in
    postgres)
      fresh_pg_db
      url=$pg/$pg_db
      ;;
    sqlite)
      rm -f "$work/vigil.db"*
      url=sqlite:$work/vigil.db
      ;;
    *) echo "unknown database $db" >&2; exit 64 ;;
  esac
  start_aggregator "$url"

  target=$rate
  if [ "$target" = auto ]; then
    echo "== $db: ceiling, $agents agents x $series series, open loop, ${ceiling_seconds}s"
    loadgen "$url" --max --in-flight "$in_flight" --duration "${ceiling_seconds}s" --verify \
      | tee "$work/ceiling.out" || status=1
    ceiling=$(field samples_per_s "$work/ceiling.out")
    target=$(( ${ceiling:-0} / 2 ))
  fi
  bg_rate=-
  bg_p99=-
  if [ "$target" -gt 0 ]; then
    # One batch per agent per interval gives the target rate.
    interval_ms=$(python3 -c "print(max(1, round(1000 * $agents * $series / $target)))")
    echo "== $db: background load $target samples/s: one batch per agent every ${interval_ms}ms"
    # Long enough to cover the probe's warm-up, run and grace.
    loadgen "$url" --interval "${interval_ms}ms" --in-flight "$in_flight" \
      --duration "$(( seconds + 40 + interval_ms / 1000 ))s" --drain 5s >"$work/bg.out" 2>&1 &
    bg=$!
    # Wait for the fleet to be registered and its first interval to pass.
    for _ in $(seq 1 600); do
      grep -q '^running ' "$work/bg.out" && break
      kill -0 "$bg" 2>/dev/null || break
      sleep 0.2
    done
    sleep "$(python3 -c "print(max(2.0, $interval_ms / 1000 + 1))")"
  fi

  echo "== $db: probe for ${seconds}s (live_interval $live_interval, rule interval $rule_interval)"
  # Queries over the background fleet's series, or the probe's without one.
  queries=()
  [ "$target" -gt 0 ] || queries=(vigil_probe_sequence vigil_probe_sequence)
  echo bench-password-1234 | python3 "$root/tests/bench/under_load.py" "$http" "$work/token" \
    bench "$seconds" "${queries[@]}" >"$work/under_load.out" 2>&1 &
  under=$!
  "$bin/vigil-probe" run --aggregator "$quic" --http "$http" --token-file "$work/token" \
    --ca-dir "$work/pki" --work-dir "$work/probe" --database "$url" --register \
    --webhook-listen "$hook" --duration "${seconds}s" --poll "$poll" --lanes "$lanes" \
    | tee "$work/probe.out" || status=1

  wait "$under" || { status=1; cat "$work/under_load.out"; }
  while read -r line; do
    kind=$(sed -n 's/^RESULT kind=\([^ ]*\).*/\1/p' <<<"$line")
    [ -n "$kind" ] || continue
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    timed+=("$db|$kind|$(get n)|$(get p50_ms)|$(get p99_ms)|$(get max_ms)|$(get errors)")
  done <"$work/under_load.out"
  if [ -n "$bg" ]; then
    kill -INT "$bg" 2>/dev/null || true
    wait "$bg" 2>/dev/null || true
    bg=
    # The background run was cut short: its rate is what the progress
    # lines said while the probe ran.
    bg_rate=$(sed -n 's/^progress: \([0-9]*\) samples.*/\1/p' "$work/bg.out" | tail -n +2 \
      | python3 -c 'import sys; v=[int(x) for x in sys.stdin if x.strip()]; print(round(sum(v)/len(v)) if v else "-")')
  fi
  stop_aggregator
  [ "$(field complete "$work/probe.out")" = true ] || status=1
  p=$work/probe.out
  for path in query live alert ack; do
    rows+=("$db|$target|$bg_rate|$path|$(field ${path}_seen "$p")|$(field ${path}_p50_ms "$p")|$(field ${path}_p99_ms "$p")|$(field ${path}_max_ms "$p")")
  done
  rows+=("$db|$target|$bg_rate|samples/crossings|$(field samples "$p")/$(field crossings "$p")|-|-|$(field complete "$p")")
done

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)   cpus: $(nproc)   live_interval $live_interval   rule interval $rule_interval   poll $poll"
printf '%-9s %12s %12s %-18s %7s %9s %9s %9s\n' db bg_target/s bg_actual/s path seen p50_ms p99_ms max_ms
for r in "${rows[@]}"; do
  IFS='|' read -r db target actual path seen p50 p99 max <<<"$r"
  printf '%-9s %12s %12s %-18s %7s %9s %9s %9s\n' "$db" "$target" "$actual" "$path" "$seen" "$p50" "$p99" "$max"
done
echo
echo "queries and pages under the same load (tests/bench/under_load.py):"
printf '%-9s %-28s %6s %9s %9s %9s %7s\n' db request n p50_ms p99_ms max_ms errors
for r in "${timed[@]}"; do
  IFS='|' read -r db kind n p50 p99 max errors <<<"$r"
  printf '%-9s %-28s %6s %9s %9s %9s %7s\n' "$db" "$kind" "$n" "$p50" "$p99" "$max" "$errors"
done
exit "$status"
