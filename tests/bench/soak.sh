#!/usr/bin/env bash
# Soak test (issue 8): a real aggregator for MINUTES under a steady load,
# with the dashboard open and alerts firing, watching for slow leaks and
# silent loss. Pieces, all over the real protocols:
#   - vigil-loadgen: AGENTS simulated agents sending RATE samples/s in total;
#   - vigil-probe: one more agent whose samples are followed to the query
#     API and the dashboard's live WebSocket (/ws/live), and whose threshold
#     crossings fire and resolve an alert delivered to its webhook, all run
#     long (docs/loadgen.md);
#   - a signed-in dashboard user whose pages (/, /hosts, /alerts, a host)
#     are fetched every PAGE_EVERY seconds;
#   - a rule that keeps one alert firing per loadgen host (routed nowhere).
# Reports: the aggregator's RSS after warm-up and at the end (growth, and
# the largest seen), samples lost (loadgen's newly stored acks vs what its
# hosts have in the database), errors (aggregator log lines at WARN/ERROR,
# loadgen errors and refusals, page fetches that were not 200, the probe's
# unseen samples or crossings). Exits 1 on any lost sample, any failed page,
# an incomplete probe, a loadgen error or a dead aggregator; RSS growth is
# reported, and fails the run only above MAX_RSS_GROWTH_MB if set.
#
# Usage:  tests/bench/soak.sh [MINUTES] [RATE]
#         MINUTES  length of the run (default 30)
#         RATE     samples/s from the fleet (default 20000)
# Env:    PROFILE=release|debug   binaries to use (default release), built
#                                 first (cargo build, a no-op when current)
#         BUILD=0                 do not build first
#         DB=postgres|sqlite      the store (default postgres: a fresh database)
#         AGENTS=200              loadgen agents (series per agent follow RATE)
#         HEAD=4m                 the aggregator's storage.head_duration: shorter
#                                 than the warm-up, so the head is full (trimmed
#                                 as fast as it grows) before RSS is first
#                                 compared, and growth after it is a leak, not
#                                 the head filling up (2 h by default)
#         PAGE_EVERY=2            seconds between dashboard page fetches
#         RSS_EVERY=10            seconds between RSS samples
#         MAX_RSS_GROWTH_MB=N     fail if RSS grew more than N MiB after warm-up
#         SMOKE=1                 CI form: 30 s, 10 agents, 500 samples/s
#         PG=postgres://postgres@127.0.0.1:5432   server for the fresh database
set -euo pipefail
export PGOPTIONS='-c client_min_messages=warning'

root=$(cd "$(dirname "$0")/../.." && pwd)
smoke=${SMOKE:-0}
if [ "$smoke" = 1 ]; then
  seconds=30
  rate=${2:-500}
  agents=${AGENTS:-10}
  rss_every=${RSS_EVERY:-2}
else
  seconds=$(( ${1:-30} * 60 ))
  rate=${2:-20000}
  agents=${AGENTS:-200}
  rss_every=${RSS_EVERY:-10}
fi
profile=${PROFILE:-release}
db=${DB:-postgres}
page_every=${PAGE_EVERY:-2}
head=${HEAD:-4m}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
pg_db=$([ "$db" = postgres ] && echo "vigil_soak_$$" || true)
bin=$root/target/$profile
# shellcheck source=tests/bench/lib.sh
. "$root/tests/bench/lib.sh"
build_bins vigil-aggregator vigil-certs vigil-loadgen vigil-probe
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "soak.sh needs $tool (tests/setup.sh)" >&2; exit 1; }
done

# One batch per agent per interval: series per agent from the rate.
series=$(( rate / agents ))
[ "$series" -ge 150 ] || series=150
interval_ms=$(python3 -c "print(max(100, round(1000 * $agents * $series / $rate)))")

work=$(mktemp -d)
agg=
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  bench_cleanup
}
trap cleanup EXIT


case $db in
  postgres)
    fresh_pg_db
    url=$pg/$pg_db
    count_sql="SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id
               WHERE r.labels::jsonb ->> 'host' LIKE '%.loadgen'"
    count() { psql "$url" -Atq -c "$count_sql"; }
    ;;
  sqlite)
    command -v sqlite3 >/dev/null || { echo "DB=sqlite needs sqlite3 (tests/setup.sh)" >&2; exit 1; }
    url=sqlite:$work/vigil.db
    count_sql="SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id
               WHERE json_extract(r.labels, '\$.host') LIKE '%.loadgen';"
    count() { sqlite3 "$work/vigil.db" "$count_sql"; }
    ;;
  *) echo "DB must be postgres or sqlite" >&2; exit 64 ;;
esac

"$bin/vigil-certs" ca --dir "$work/pki" >/dev/null
"$bin/vigil-certs" server --dir "$work/pki" --name localhost --name 127.0.0.1 >/dev/null
hook=127.0.0.1:$(free_port)
"$bin/vigil-probe" write-config --dir "$work/pki" --webhook-listen "$hook" --rule-interval 1s
cat >"$work/pki/soak.rules.yml" <<'YAML'
groups:
  - name: soak
    interval: 5s
    rules:
      - alert: SoakHostReporting
        expr: max by (host) (system_load1) >= 0
        labels: {severity: info}
        annotations: {summary: "{{ $labels.host }} reports"}
YAML
write_agg_config "$url" "[storage]
head_duration = \"$head\"
[alerting]
rule_files = [\"probe.rules.yml\", \"soak.rules.yml\"]
evaluation_interval = \"1s\"
[notify]
config_file = \"probe.notify.yml\""
"$bin/vigil-aggregator" create-token --config "$work/pki/aggregator.toml" --name soak \
  --scope admin >"$work/token"
password=soak-$(python3 -c 'import secrets; print(secrets.token_hex(12))')
echo "$password" | "$bin/vigil-aggregator" create-user --config "$work/pki/aggregator.toml" \
  --name soak --role viewer >/dev/null
run_aggregator

# Sign the dashboard user in (login CSRF cookie, then the form).
jar=$work/cookies
curl -sf -c "$jar" -b "$jar" "http://$http/login" -o /dev/null
csrf=$(awk '$6 == "vigil_login_csrf" {print $7}' "$jar")
code=$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{http_code}' \
  --data-urlencode username=soak --data-urlencode "password=$password" \
  --data-urlencode "csrf_token=$csrf" "http://$http/login")
[ "$code" = 303 ] || { echo "dashboard sign-in failed: HTTP $code" >&2; exit 1; }

echo "== soak: ${seconds}s on $db, $agents agents x $series series every ${interval_ms}ms (~$rate samples/s)"
"$bin/vigil-loadgen" --aggregator "$quic" --ca-dir "$work/pki" --work-dir "$work/agents" \
  --agents "$agents" --series "$series" --database "$url" --register --prefix soak \
  --interval "${interval_ms}ms" --duration "${seconds}s" --drain 20s \
  --progress 60s >"$work/loadgen.out" 2>&1 &
loadgen=$!
pids+=("$loadgen")
"$bin/vigil-probe" run --aggregator "$quic" --http "$http" --token-file "$work/token" \
  --ca-dir "$work/pki" --work-dir "$work/probe" --database "$url" --register \
  --webhook-listen "$hook" --duration "${seconds}s" >"$work/probe.out" 2>&1 &
probe=$!
pids+=("$probe")
# When the probe exits its webhook receiver closes: later deliveries to it
# (the last crossing's resolved notification) fail by design, so WARN
# lines after this instant are teardown, reported apart.
( while kill -0 "$probe" 2>/dev/null; do sleep 0.5; done
  date -u +%Y-%m-%dT%H:%M:%S.%N >"$work/probe.end" ) &
pids+=("$!")

# The dashboard, open: pages on a loop (the probe holds the live socket).
(
  pages=(/ /hosts /alerts /hosts/soak-00000)
  ok=0 bad=0
  end=$(( $(date +%s) + seconds ))
  # The host page exists once the fleet's first batch is stored.
  for _ in $(seq 1 300); do
    [ "$(curl -s -b "$jar" -o /dev/null -w '%{http_code}' "http://$http/hosts/soak-00000")" = 200 ] && break
    sleep 0.2
  done
  while [ "$(date +%s)" -lt "$end" ]; do
    for p in "${pages[@]}"; do
      read -r c secs < <(curl -s -b "$jar" -o /dev/null -w '%{http_code} %{time_total}\n' "http://$http$p" || echo "000 0")
      if [ "$c" = 200 ]; then ok=$((ok + 1)); else bad=$((bad + 1)); echo "page $p: HTTP $c" >>"$work/pages.err"; fi
      echo "$p $secs" >>"$work/pages.times"
    done
    echo "$ok $bad" >"$work/pages.count"
    sleep "$page_every"
  done
) &
pids+=("$!")

# RSS (KiB) every RSS_EVERY seconds while the load runs.
rss() { awk '/^VmRSS/ {print $2}' "/proc/$agg/status" 2>/dev/null || echo 0; }
start=$(date +%s)
warm_after=$(( seconds / 6 ))
[ "$warm_after" -ge 10 ] || warm_after=10
: >"$work/rss"
while kill -0 "$loadgen" 2>/dev/null; do
  echo "$(( $(date +%s) - start )) $(rss)" >>"$work/rss"
  kill -0 "$agg" 2>/dev/null || break
  sleep "$rss_every"
done
alive=1
kill -0 "$agg" 2>/dev/null || alive=0
wait "$loadgen" || true
wait "$probe" || true
echo "$(( $(date +%s) - start )) $(rss)" >>"$work/rss"

status=0
acked=$(sed -n 's/.*(newly stored \([0-9]*\)).*/\1/p' "$work/loadgen.out" | tail -1)
stored=$(count | tr -d '[:space:]')
lost=$(( ${acked:-0} - ${stored:-0} ))
lg_errors=$(field errors "$work/loadgen.out")
refused=$(sed -n 's/.* refused \([0-9]*\) .*/\1/p' "$work/loadgen.out" | tail -1)
probe_complete=$(field complete "$work/probe.out")
read -r pages_ok pages_bad <"$work/pages.count" || { pages_ok=0; pages_bad=0; }
# Per page: p50 / p99 / max of the fetch time, in ms.
page_times=$(python3 - "$work/pages.times" <<'PY'
import sys
times = {}
try:
    for line in open(sys.argv[1]):
        page, secs = line.split()
        times.setdefault(page, []).append(float(secs) * 1000)
except FileNotFoundError:
    pass
out = []
for page, t in times.items():
    t.sort()
    q = lambda f: t[min(len(t) - 1, int(f * len(t)))]
    out.append(f"{page} {q(0.5):.0f}/{q(0.99):.0f}/{t[-1]:.0f}")
print("; ".join(out) or "none")
PY
)
probe_end=$(cat "$work/probe.end" 2>/dev/null || echo 9999)
: >"$work/warn"
: >"$work/warn.teardown"
grep -E '\b(WARN|ERROR)\b' "$work/agg.log" |
  awk -v end="$probe_end" -v during="$work/warn" -v after="$work/warn.teardown" \
    '{print > ($1 < end ? during : after)}' || true
warn_lines=$(wc -l <"$work/warn")
teardown_lines=$(wc -l <"$work/warn.teardown")
read -r rss_warm rss_end rss_max < <(awk -v w="$warm_after" '
  $1 >= w && warm == "" {warm = $2}
  {last = $2; if ($2 > max) max = $2}
  END {if (warm == "") warm = last; print warm, last, max}' "$work/rss")
growth_mb=$(python3 -c "print(round(($rss_end - $rss_warm) / 1024, 1))")
growth_pct=$(python3 -c "print(round(100 * ($rss_end - $rss_warm) / max($rss_warm, 1), 1))")

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)   cpus: $(nproc)"
printf '%-34s %s\n' \
  "run" "${seconds}s, $db, $agents agents x $series series, ~$rate samples/s" \
  "samples acked (newly stored)" "${acked:-?}" \
  "samples stored (loadgen hosts)" "${stored:-?}" \
  "lost samples" "$lost" \
  "loadgen errors / refused" "${lg_errors:-?} / ${refused:-?}" \
  "probe: everything seen" "${probe_complete:-?} (samples $(field samples "$work/probe.out"), crossings $(field crossings "$work/probe.out"))" \
  "dashboard pages ok / failed" "$pages_ok / $pages_bad" \
  "page p50/p99/max ms" "$page_times" \
  "aggregator WARN/ERROR log lines" "$warn_lines (+ $teardown_lines after the probe's receiver closed)" \
  "RSS after warm-up (${warm_after}s)" "$(( rss_warm / 1024 )) MiB" \
  "RSS at the end" "$(( rss_end / 1024 )) MiB" \
  "RSS largest" "$(( rss_max / 1024 )) MiB" \
  "RSS growth after warm-up" "$growth_mb MiB ($growth_pct %)"
if [ "$warn_lines" -gt 0 ]; then
  echo "-- aggregator WARN/ERROR lines (first 10):"
  head -10 "$work/warn"
fi
if [ "$teardown_lines" -gt 0 ]; then
  echo "-- after the probe's receiver closed (first 3):"
  head -3 "$work/warn.teardown" | cut -c1-200
fi
[ -f "$work/pages.err" ] && { echo "-- failed pages:"; head -10 "$work/pages.err"; }

[ "$alive" = 1 ] || { echo "FAIL: the aggregator died"; tail -20 "$work/agg.log"; status=1; }
[ -n "$acked" ] && [ "$acked" -gt 0 ] || { echo "FAIL: loadgen acked nothing"; tail -20 "$work/loadgen.out"; status=1; }
[ "$lost" = 0 ] || { echo "FAIL: $lost samples lost"; status=1; }
[ "${lg_errors:-1}" = 0 ] || { echo "FAIL: loadgen errors"; tail -5 "$work/loadgen.out"; status=1; }
[ "$probe_complete" = true ] || { echo "FAIL: the probe missed samples or crossings"; tail -5 "$work/probe.out"; status=1; }
[ "$pages_bad" = 0 ] && [ "$pages_ok" -gt 0 ] || { echo "FAIL: dashboard pages failed"; status=1; }
if [ -n "${MAX_RSS_GROWTH_MB:-}" ]; then
  python3 -c "import sys; sys.exit(0 if $growth_mb <= $MAX_RSS_GROWTH_MB else 1)" \
    || { echo "FAIL: RSS grew $growth_mb MiB (limit $MAX_RSS_GROWTH_MB)"; status=1; }
fi
[ "$status" = 0 ] && echo "soak: OK"
exit "$status"
