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

# Drops the PostgreSQL database $pg_db (cleanup: never fails).
drop_pg_db() {
  psql "$pg/postgres" -q -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 || true
}
