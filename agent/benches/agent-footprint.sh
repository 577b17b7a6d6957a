#!/usr/bin/env bash
# Agent footprint benchmark (issues 3 and 7): runs vigil-agent at a 1 s
# interval with the system, PostgreSQL and Redis collectors and a scrape of a
# ~500-series endpoint (vigil-demo-api), pushing to a real aggregator, and
# reports the agent's peak RSS (VmHWM) and CPU use. With COMPARE=1,
# node_exporter runs beside it in the same run: its own process (explicit
# flags, a free port; a packaged service, if any, is left alone and not
# measured) scraped at the same interval for the same measured window, and
# both are reported side by side in one table.
#
# Usage:  agent/benches/agent-footprint.sh [SECONDS]        (default 300)
# Env:    PROFILE=release|debug   which build to measure (default release;
#                                 release is built first, debug must exist)
#         BUILD=0                 do not build release first
#         INTERVAL=1              collection and scrape interval, seconds
#         COMPARE=1               also measure node_exporter in the same run;
#                                 installs Debian's prometheus-node-exporter
#                                 when missing (as root; else it fails and
#                                 says what to install)
#         NODE_EXPORTER=PATH      the node_exporter binary to measure
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
interval=${INTERVAL:-1}
compare=${COMPARE:-0}
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
case $interval in
  '' | *[!0-9]* | 0) echo "INTERVAL must be a whole number of seconds (got '$interval')" >&2; exit 64 ;;
esac

# node_exporter for COMPARE=1: given, on the PATH, or installed now.
ne_bin=
if [ "$compare" = 1 ]; then
  ne_bin=${NODE_EXPORTER:-$(command -v prometheus-node-exporter || command -v node_exporter || true)}
  if [ -z "$ne_bin" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "COMPARE=1: node_exporter is not installed and this is not root;" \
        "run 'apt-get install -y prometheus-node-exporter' as root, or set NODE_EXPORTER=PATH" >&2
      exit 1
    fi
    echo "COMPARE=1: installing prometheus-node-exporter (apt-get)" >&2
    apt_log=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus-node-exporter >"$apt_log" 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get update >>"$apt_log" 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus-node-exporter >>"$apt_log" 2>&1 || {
        echo "COMPARE=1: 'apt-get install -y prometheus-node-exporter' failed:" >&2
        tail -20 "$apt_log" >&2
        rm -f "$apt_log"
        exit 1
      }
    fi
    rm -f "$apt_log"
    ne_bin=$(command -v prometheus-node-exporter || true)
  fi
  [ -x "$ne_bin" ] || { echo "COMPARE=1: no node_exporter binary at '$ne_bin'" >&2; exit 1; }
fi

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
stored_samples() {
  curl -sf -H "Authorization: Bearer $token" "$http/api/v1/hosts" |
    python3 -c 'import json,sys; h=json.load(sys.stdin)["hosts"]; print(sum(x["samples_stored"] for x in h))'
}
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
sed -e 's/^roles = .*/roles = ["db", "cache", "api"]/' -e "s/^interval = .*/interval = \"${interval}s\"/" \
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

# node_exporter beside it: our own process on a free port with explicit
# flags (the package's service, if one runs, is neither used nor measured),
# scraped every interval on a fixed schedule by a small client that counts
# its scrapes and the samples of the last one.
if [ "$compare" = 1 ]; then
  ne_port=$(free_port)
  "$ne_bin" --web.listen-address="127.0.0.1:$ne_port" --log.level=warn >"$work/ne.log" 2>&1 &
  ne=$!
  pids+=($ne)
  for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$ne_port/metrics" && break; sleep 0.1; done
  echo "0 0 0" >"$work/ne.scrapes"
  kill -0 "$ne" 2>/dev/null || { echo "node_exporter did not start:" >&2; cat "$work/ne.log" >&2; exit 1; }
  ne_version=$("$ne_bin" --version 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1)
  python3 - "http://127.0.0.1:$ne_port/metrics" "$interval" "$work/ne.scrapes" <<'PY' &
import os, sys, time, urllib.request
url, every, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
scrapes = errors = samples = 0
due = time.monotonic()
while True:
    try:
        body = urllib.request.urlopen(url, timeout=every * 5).read().decode()
        samples = sum(1 for l in body.splitlines() if l and not l.startswith("#"))
        scrapes += 1
    except Exception:
        errors += 1
    with open(out + ".tmp", "w") as f:
        f.write(f"{scrapes} {errors} {samples}\n")
    os.replace(out + ".tmp", out)
    due += every
    time.sleep(max(0.0, due - time.monotonic()))
PY
  pids+=($!)
fi

# Warm up (first connections, first collections), then measure.
sleep 3
kill -0 "$agent" || { echo "agent died:" >&2; cat "$work/agent.log" >&2; exit 1; }
# Under AGENT_WRAP=strace the agent is the wrapper's child.
measured=$(pgrep -n -P "$agent" || echo "$agent")
hz=$(getconf CLK_TCK)
t0=$(cpu_ticks "$measured")
u0=$(user_ticks "$measured")
stored0=$(stored_samples)
if [ "$compare" = 1 ]; then
  n0=$(cpu_ticks "$ne")
  nu0=$(user_ticks "$ne")
  read -r ns0 _ _ <"$work/ne.scrapes"
fi
if [ -n "${PERF_STAT:-}" ]; then
  perf stat -o "$PERF_STAT" -e task-clock,context-switches,cpu-migrations,page-faults \
    -p "$measured" -- sleep "$duration"
else
  sleep "$duration"
fi
t1=$(cpu_ticks "$measured")
u1=$(user_ticks "$measured")
hwm=$(hwm_kib "$measured")
if [ "$compare" = 1 ]; then
  n1=$(cpu_ticks "$ne")
  nu1=$(user_ticks "$ne")
  nhwm=$(hwm_kib "$ne")
  read -r ns1 nerr nsamples <"$work/ne.scrapes"
fi
stored=$(stored_samples)

echo "vigil-agent ($profile), ${duration}s at ${interval}s: system + postgres + redis + scrape of ${scraped} samples"
awk -v k="$hwm" 'BEGIN {printf "  peak RSS (VmHWM): %.1f MiB\n", k / 1024}'
awk -v a="$t0" -v b="$t1" -v ua="$u0" -v ub="$u1" -v hz="$hz" -v d="$duration" \
  'BEGIN {printf "  CPU: %.2f s = %.3f%% of one core (user %.2f s, system %.2f s)\n",
    (b - a) / hz, 100 * (b - a) / hz / d, (ub - ua) / hz, (b - a - ub + ua) / hz}'
echo "  samples stored by the aggregator: $stored"
[ "${stored:-0}" -gt 0 ] || { echo "FAIL: no samples reached the aggregator" >&2; cat "$work/agent.log" >&2; exit 1; }

if [ "$compare" = 1 ]; then
  echo
  echo "Same run, same ${duration}s window, ${interval}s interval; load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
  # Samples the aggregator stored from the agent in the window, per interval.
  agent_samples=$(awk -v a="$stored0" -v b="$stored" -v d="$duration" -v i="$interval" \
    'BEGIN {printf "%.0f", (b - a) / d * i}')
  row() { # name hwm_kib ticks0 ticks1 user0 user1 note
    awk -v p="$1" -v k="$2" -v a="$3" -v b="$4" -v ua="$5" -v ub="$6" -v n="$7" -v hz="$hz" -v d="$duration" \
      'BEGIN {printf "%-24s %10.1f MiB %12.3f%% %8.2f + %5.2f s   %s\n", p, k / 1024,
        100 * (b - a) / hz / d, (ub - ua) / hz, (b - a - ub + ua) / hz, n}'
  }
  printf '%-24s %14s %13s %16s   %s\n' process "peak RSS" "CPU (1 core)" "user + system" "samples per interval"
  row "vigil-agent ($profile)" "$hwm" "$t0" "$t1" "$u0" "$u1" "$agent_samples collected and pushed"
  row "node_exporter ${ne_version:-?}" "$nhwm" "$n0" "$n1" "$nu0" "$nu1" \
    "$nsamples per scrape, $((ns1 - ns0)) scrapes"
  [ "${nerr:-0}" = 0 ] || echo "  ($nerr failed scrapes of node_exporter)"
fi
