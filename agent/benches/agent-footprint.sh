#!/usr/bin/env bash
# Agent footprint benchmark (issue 3): runs vigil-agent at a 1 s interval with
# the system, PostgreSQL and Redis collectors and a scrape of a ~500-series
# endpoint (vigil-demo-api), pushing to a real aggregator, and reports the
# agent's peak RSS (VmHWM) and CPU use. Optionally measures node_exporter
# scraped every second, on the same machine, for comparison.
#
# Usage:  agent/benches/agent-footprint.sh [SECONDS]        (default 300)
# Env:    PROFILE=release|debug   which build to measure (default release;
#                                 release is built first, debug must exist)
#         BUILD=0                 do not build release first
#         COMPARE=1               also measure prometheus-node-exporter
#         DATABASE_URL / REDIS_URL  what the agent monitors (defaults: local)
#         AGENT_BIN=PATH          measure this vigil-agent binary instead
#                                 (e.g. a copy of an earlier build)
#         AGENT_WRAP="CMD ARGS"   start the agent under CMD (profiling), e.g.
#                                 "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p"
#                                 or "strace -c -f -o /tmp/strace.txt"; the
#                                 CPU figures then include the wrapper's cost
#         PERF_STAT=FILE          write `perf stat` (task clock, context
#                                 switches = wake-ups) of the measured window
# CI runs it as a smoke test (`PROFILE=debug ... 5`): it fails unless the
# agent's samples reach the aggregator.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
duration=${1:-300}
profile=${PROFILE:-release}
pg_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
bin=$root/target/$profile
if [ "$profile" = release ] && [ "${BUILD:-1}" = 1 ]; then
  cargo build --quiet --release --manifest-path "$root/Cargo.toml" \
    -p vigil-agent -p vigil-aggregator -p vigil-tests --bins
fi
agent_bin=${AGENT_BIN:-$bin/vigil-agent}
for b in "$agent_bin" "$bin/vigil-aggregator" "$bin/vigil-demo-api"; do
  [ -x "$b" ] || { echo "missing $b: build it first" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
agent=
cleanup() {
  # The agent first, while the aggregator can still take its last batch; under
  # AGENT_WRAP the agent is the wrapper's child (strace, unlike valgrind,
  # would only detach on SIGTERM).
  if [ -n "$agent" ]; then
    pkill -TERM -P "$agent" 2>/dev/null || true
    kill "$agent" 2>/dev/null || true
    wait "$agent" 2>/dev/null || true
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# The aggregator, on SQLite, without its own local agent.
"$bin/vigil-aggregator" quickstart --data-dir "$work/data" --no-agent \
  --listen-http 127.0.0.1:0 --listen-quic 127.0.0.1:0 >"$work/agg.out" 2>"$work/agg.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "Agent ingest" "$work/agg.out" 2>/dev/null && break; sleep 0.1; done
http=$(sed -n 's/.*Dashboard \/ API : \(http:[^ ]*\)\/$/\1/p' "$work/agg.out")
[ -n "$http" ] || { echo "aggregator did not start:" >&2; cat "$work/agg.err" >&2; exit 1; }
token=$(cat "$work/data/admin.token")

# A ~500-series /metrics endpoint.
api_port=$(free_port)
"$bin/vigil-demo-api" --listen "127.0.0.1:$api_port" --synthetic-series 440 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$api_port/health" >/dev/null && break; sleep 0.1; done
scraped=$(curl -sf "http://127.0.0.1:$api_port/metrics" | grep -vc '^#' || true)

# The agent: quickstart's identity and certificates, the benchmark's collectors.
sed -e 's/^roles = .*/roles = ["db", "cache", "api"]/' -e 's/^interval = .*/interval = "1s"/' \
  "$work/data/agent.toml" >"$work/data/bench-agent.toml"
cat >>"$work/data/bench-agent.toml" <<TOML

[collect.postgres]
url = "$pg_url"

[collect.redis]
url = "$redis_url"

[[collect.scrape]]
name = "api"
url = "http://127.0.0.1:$api_port/metrics"
role = "api"
TOML
# shellcheck disable=SC2086 # AGENT_WRAP is a command line, split on purpose
${AGENT_WRAP:-} "$agent_bin" run --config "$work/data/bench-agent.toml" >"$work/agent.log" 2>&1 &
agent=$!

# Warm up (first connections, first collections), then measure.
sleep 3
kill -0 "$agent" || { echo "agent died:" >&2; cat "$work/agent.log" >&2; exit 1; }
# Under AGENT_WRAP=strace the agent is the wrapper's child.
measured=$(pgrep -n -P "$agent" || echo "$agent")
hz=$(getconf CLK_TCK)
t0=$(cpu_ticks "$measured")
u0=$(user_ticks "$measured")
if [ -n "${PERF_STAT:-}" ]; then
  perf stat -o "$PERF_STAT" -e task-clock,context-switches,cpu-migrations,page-faults \
    -p "$measured" -- sleep "$duration"
else
  sleep "$duration"
fi
t1=$(cpu_ticks "$measured")
u1=$(user_ticks "$measured")
hwm=$(hwm_kib "$measured")
stored=$(curl -sf -H "Authorization: Bearer $token" "$http/api/v1/hosts" |
  python3 -c 'import json,sys; h=json.load(sys.stdin)["hosts"]; print(sum(x["samples_stored"] for x in h))')

echo "vigil-agent ($profile), ${duration}s at 1s: system + postgres + redis + scrape of ${scraped} samples"
awk -v k="$hwm" 'BEGIN {printf "  peak RSS (VmHWM): %.1f MiB\n", k / 1024}'
awk -v a="$t0" -v b="$t1" -v ua="$u0" -v ub="$u1" -v hz="$hz" -v d="$duration" \
  'BEGIN {printf "  CPU: %.2f s = %.3f%% of one core (user %.2f s, system %.2f s)\n",
    (b - a) / hz, 100 * (b - a) / hz / d, (ub - ua) / hz, (b - a - ub + ua) / hz}'
echo "  samples stored by the aggregator: $stored"
[ "${stored:-0}" -gt 0 ] || { echo "FAIL: no samples reached the aggregator" >&2; cat "$work/agent.log" >&2; exit 1; }

if [ "${COMPARE:-0}" = 1 ]; then
  command -v prometheus-node-exporter >/dev/null || { echo "prometheus-node-exporter not installed" >&2; exit 1; }
  ne_port=$(free_port)
  prometheus-node-exporter --web.listen-address="127.0.0.1:$ne_port" >/dev/null 2>&1 &
  ne=$!
  pids+=($ne)
  sleep 2
  n0=$(cpu_ticks "$ne")
  end=$((SECONDS + duration))
  while [ $SECONDS -lt $end ]; do curl -sf "http://127.0.0.1:$ne_port/metrics" >/dev/null; sleep 1; done
  n1=$(cpu_ticks "$ne")
  nhwm=$(hwm_kib "$ne")
  series=$(curl -sf "http://127.0.0.1:$ne_port/metrics" | grep -vc '^#')
  echo "node_exporter, ${duration}s scraped every 1s (${series} samples per scrape)"
  awk -v k="$nhwm" 'BEGIN {printf "  peak RSS (VmHWM): %.1f MiB\n", k / 1024}'
  awk -v a="$n0" -v b="$n1" -v hz="$hz" -v d="$duration" \
    'BEGIN {printf "  CPU: %.2f s = %.3f%% of one core\n", (b - a) / hz, 100 * (b - a) / hz / d}'
fi
