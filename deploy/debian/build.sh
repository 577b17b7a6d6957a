#!/usr/bin/env bash
# Builds the release Debian packages vigil-agent and vigil-aggregator
# (docs/deploy.md, "Debian packages") into OUT_DIR (default target/debian/).
#
#   deploy/debian/build.sh            # both packages
#   OUT_DIR=dist deploy/debian/build.sh
#
# Needs cargo-deb 3.8 (cargo install cargo-deb --version 3.8.0 --locked) and
# dpkg-deb. The packages are for the architecture and libc of the machine
# that builds them: build on the oldest Debian release you deploy to.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT_DIR:-target/debian}"

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build.sh: cargo-deb is missing: cargo install cargo-deb --version 3.8.0 --locked" >&2
  exit 1
fi

# vigil-certs ships in the aggregator's package, so it is built here rather
# than by cargo-deb (which builds only the package's own crate).
cargo build --release --locked -p vigil-agent -p vigil-aggregator -p vigil-certs
mkdir -p "$out"
for package in vigil-agent vigil-aggregator; do
  cargo deb --package "$package" --no-build --output "$out"
done
ls -l "$out"/*.deb
