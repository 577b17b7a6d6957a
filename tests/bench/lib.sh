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
