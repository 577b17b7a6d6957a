#!/usr/bin/env bash
# Long-lookback reads past the head: the overview's "system" checks.
#
#   tests/bench/lookback.sh [AGENTS] [REPEAT]     # default 200 hosts, 5 reads each
#   PROFILE=debug SMOKE=1 tests/bench/lookback.sh # CI: 10 hosts, 10 minutes back
#
# Fills a fresh PostgreSQL database (DB=sqlite: a SQLite file) through the
# real ingest path with the last hour of AGENTS hosts x 5 series at 1 s
# (`vigil-loadgen --backfill`), in front of an aggregator whose head holds
# only 4 minutes (`HEAD`), so an hour's window is read from the database, as
# in cluster mode or right after a restart. Then times, REPEAT times each,
# `GET /api/v1/summary` and the instant queries below through
# `/prometheus/api/v1/query`, and checks that every pair of queries that
# must agree does (the same host count, the same hosts).
set -euo pipefail
export PGOPTIONS='-c client_min_messages=warning'

root=$(cd "$(dirname "$0")/../.." && pwd)
smoke=${SMOKE:-0}
if [ "$smoke" = 1 ]; then
  agents=${1:-10}
  repeat=${2:-2}
  back=${BACK:-10m}
else
  agents=${1:-200}
  repeat=${2:-5}
  back=${BACK:-1h}
fi
profile=${PROFILE:-release}
db=${DB:-postgres}
head=${HEAD:-4m}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
pg_db=$([ "$db" = postgres ] && echo "vigil_lookback_$$" || true)
bin=${BIN_DIR:-$root/target/$profile}
. "$root/tests/bench/lib.sh"
build_bins vigil-aggregator vigil-certs vigil-loadgen
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "lookback.sh needs $tool (tests/setup.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
agg=
trap bench_cleanup EXIT

case $db in
  postgres)
    fresh_pg_db
    url=$pg/$pg_db
    ;;
  sqlite) url=sqlite:$work/vigil.db ;;
  *) echo "DB must be postgres or sqlite" >&2; exit 64 ;;
esac

"$bin/vigil-certs" ca --dir "$work/pki" >/dev/null
"$bin/vigil-certs" server --dir "$work/pki" --name localhost --name 127.0.0.1 >/dev/null
write_agg_config "$url" "[storage]
head_duration = \"$head\""
token=$("$bin/vigil-aggregator" create-token --config "$work/pki/aggregator.toml" --name bench --scope read)
run_aggregator

echo "== lookback: $agents hosts x 5 series at 1s, $back back, head $head, on $db"
start=$(date +%s)
"$bin/vigil-loadgen" --aggregator "$quic" --ca-dir "$work/pki" --work-dir "$work/agents" \
  --agents "$agents" --series 5 --database "$url" --register --verify --prefix lb \
  --interval 1s --backfill "$back" --backfill-points 60 --duration 0s --drain 60s \
  >"$work/loadgen.out" 2>&1 || { echo "loadgen failed:" >&2; tail -20 "$work/loadgen.out" >&2; exit 1; }
echo "filled in $(( $(date +%s) - start )) s: $(grep -m1 '^RESULT' "$work/loadgen.out")"
# The head must have let the window go, or nothing is measured.
sleep 12

python3 - "$http" "$token" "$repeat" "$back" <<'PY'
import json, sys, time, urllib.parse, urllib.request
http, token, repeat, back = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def get(path):
    req = urllib.request.Request(f"http://{http}{path}", headers={"Authorization": f"Bearer {token}"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        body = json.load(r)
    return time.perf_counter() - t, body
def query(q):
    return get("/prometheus/api/v1/query?" + urllib.parse.urlencode({"query": q}))
def hosts(body):
    return sorted(s["metric"].get("host", "") for s in body["data"]["result"])
pairs = [
    ("count, max_over_time (before)", f"count(max_over_time(system_cpu_usage_ratio[{back}]))",
     "count, last_over_time (overview now)", f"count(last_over_time(system_cpu_usage_ratio[{back}]))"),
    ("by host, max_over_time (before)", f"max by (host) (max_over_time(system_cpu_usage_ratio[{back}]))",
     "by host, last_over_time (overview now)", f"max by (host) (last_over_time(system_cpu_usage_ratio[{back}]))"),
]
rows, failed = [], False
for name_a, qa, name_b, qb in pairs:
    results = {}
    for name, q in ((name_a, qa), (name_b, qb)):
        times = []
        for _ in range(repeat):
            dt, body = query(q)
            times.append(dt)
        results[name] = body
        times.sort()
        rows.append((name, times[len(times) // 2], times[-1]))
    a, b = results[name_a], results[name_b]
    if name_a.startswith("count"):
        ca = [s["value"][1] for s in a["data"]["result"]]
        cb = [s["value"][1] for s in b["data"]["result"]]
        if ca != cb or not ca:
            print(f"MISMATCH {name_a}: {ca} vs {cb}"); failed = True
    elif hosts(a) != hosts(b) or not hosts(a):
        print(f"MISMATCH {name_a}: {len(hosts(a))} vs {len(hosts(b))} hosts"); failed = True
times = []
for _ in range(repeat):
    dt, body = get("/api/v1/summary")
    times.append(dt)
    system = [c for c in body["components"] if c["name"] == "system"]
    if not system or system[0]["status"] == "unknown":
        print(f"summary: system is {system}"); failed = True
times.sort()
rows.append(("GET /api/v1/summary", times[len(times) // 2], times[-1]))
print(f"| read ({repeat} times) | p50 | max |")
print("|---|---:|---:|")
for name, p50, mx in rows:
    print(f"| {name} | {p50 * 1000:.1f} ms | {mx * 1000:.1f} ms |")
sys.exit(1 if failed else 0)
PY
