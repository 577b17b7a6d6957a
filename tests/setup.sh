#!/usr/bin/env bash
# Installs what the tests need besides Rust, PostgreSQL and Redis:
# - for the deploy test (tests/tests/deploy*): `systemd-analyze` (Debian's
#   systemd package) to verify the units, and a compose client (`docker
#   compose` or Debian's docker-compose) for `compose config`;
# - for the dashboard's browser test: tests/browser/setup.sh (Debian's
#   chromium, playwright-core from the lockfile);
# - for the database fault test (tests/tests/faults/database.rs), which
#   starts a private cluster it can stop: PostgreSQL's server binaries
#   (initdb, pg_ctl; Debian's postgresql package).
# Idempotent; the README's test command and .ci/run call it.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  missing+=(docker-compose)
fi
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
browser/setup.sh
