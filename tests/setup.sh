#!/usr/bin/env bash
# Installs what the tests need besides Rust, PostgreSQL and Redis:
# - for the deploy test (tests/tests/deploy*): `systemd-analyze` (Debian's
#   systemd package) to verify the units, and a compose client (`docker
#   compose` or Debian's docker-compose) for `compose config`;
# - for the deb test (tests/tests/deploy/deb*.rs): cargo-deb 3.8.0, with
#   `cargo install` (about two minutes of compiling); dpkg comes
#   with Debian;
# - for the docs test (tests/tests/docs/): `sqlite3` and PostgreSQL's
#   client tools (`pg_dump`, `pg_restore`, `psql`), which run the backup and
#   restore commands of docs/operations.md, and `curl`, which runs the
#   examples of docs/api.md;
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
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ! command -v pg_dump >/dev/null 2>&1 || ! command -v pg_restore >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
  missing+=(postgresql-client)
fi
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
case "$(cargo deb --version 2>/dev/null || true)" in
  "cargo-deb 3.8.0") ;;
  *)
    # Pinned: the test packages debug binaries (--profile dev), which
    # cargo-deb warns it may refuse in a later release.
    echo "setup: installing cargo-deb 3.8.0"
    cargo install cargo-deb --version 3.8.0 --locked
    ;;
esac
browser/setup.sh
