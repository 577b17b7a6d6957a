# Shared by the benchmark scripts in tests/bench (sourced, not run).
# Expects $root (the repository), $profile (release|debug) and $bin (where
# the binaries are) to be set by the caller.

# Builds the aggregator, certs and tests binaries for $profile unless
# BUILD=0, then checks that each binary named in the arguments is in $bin.
build_bins() {
  if [ "${BUILD:-1}" = 1 ]; then
    local flag=""
    [ "$profile" = release ] && flag=--release
    # shellcheck disable=SC2086 # an empty $flag must vanish
    cargo build --quiet $flag --manifest-path "$root/Cargo.toml" \
      -p vigil-aggregator -p vigil-certs -p vigil-tests --bins
  fi
  local b
  for b in "$@"; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b: build it first" >&2; exit 1; }
  done
}

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The value of KEY on the RESULT line of FILE: field KEY FILE.
field() { sed -n "s/^RESULT.* $1=\([^ ]*\).*/\1/p" "$2"; }

# Writes $work/pki/aggregator.toml for a benchmark: fresh ports ($http,
# $quic), the certificates in $work/pki, database URL $1, the HTTP rate
# limits off; then the TOML in $2 (other tables), if given.
write_agg_config() {
  http=127.0.0.1:$(free_port)
  quic=127.0.0.1:$(free_port)
  cat >"$work/pki/aggregator.toml" <<TOML
[http]
listen = "$http"
rate_limit_per_token = { per_second = 0, burst = 1 }
rate_limit_per_ip = { per_second = 0, burst = 1 }
[quic]
listen = "$quic"
ca = "ca.crt"
cert = "server.crt"
key = "server.key"
[database]
url = "$1"
${2:-}
TOML
}

# Starts the aggregator of $work/pki/aggregator.toml (log: $work/agg.log),
# sets $agg and waits up to 30 s for /readyz; exits 1 with the log's tail
# if it is not ready by then.
run_aggregator() {
  "$bin/vigil-aggregator" run --config "$work/pki/aggregator.toml" >"$work/agg.log" 2>&1 &
  agg=$!
  for _ in $(seq 1 150); do
    curl -sf "http://$http/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "aggregator did not become ready:" >&2
  tail -20 "$work/agg.log" >&2
  exit 1
}

# Stops the aggregator started by run_aggregator, if one runs.
stop_aggregator() {
  if [ -n "${agg:-}" ]; then
    kill "$agg" 2>/dev/null || true
    wait "$agg" 2>/dev/null || true
  fi
  agg=
}

# Drops and creates the PostgreSQL database $pg_db on server $pg.
fresh_pg_db() {
  psql "$pg/postgres" -q -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db" >/dev/null
}

# Drops the PostgreSQL database $pg_db (cleanup: never fails); nothing when
# $pg_db is empty (a run that uses no PostgreSQL).
drop_pg_db() {
  [ -n "${pg_db:-}" ] || return 0
  psql "$pg/postgres" -q -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 || true
}

# What every bench script's exit trap ends with: stop the aggregator, drop
# the fresh database, remove $work.
bench_cleanup() {
  stop_aggregator
  drop_pg_db
  rm -rf "$work"
}

# Prints the p50 and p99 of histogram $1 over the observations made between
# two /metrics scrapes in files $2 and $3, as the upper bound of the bucket
# each falls in ("<= X ms").
bucket_quantiles() {
  python3 - "$1" "$2" "$3" <<'PY'
import re, sys
name, before, after = sys.argv[1:4]
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'%s_bucket\{le="([^"]+)"\} (\S+)' % re.escape(name), line)
        if m:
            out[float(m.group(1))] = float(m.group(2))
    return out
b0, b1 = buckets(before), buckets(after)
counts = sorted((le, b1[le] - b0.get(le, 0.0)) for le in b1)
total = counts[-1][1] if counts else 0
def q(p):
    for le, c in counts:
        if total and c >= p * total:
            return "<= %g ms" % (le * 1000) if le != float("inf") else "> last bucket"
    return "-"
print("%s over the run: p50 %s, p99 %s (%d observations)" % (name, q(0.5), q(0.99), total))
PY
}
