#!/usr/bin/env bash
# What the dashboard's browser test needs besides Rust: Debian's chromium
# (never a downloaded browser) and playwright-core from the committed
# lockfile. Idempotent; .ci/run and the README's test command call it.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: chromium is missing; installing Debian's package"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y chromium
  else
    sudo apt-get update -qq && sudo apt-get install -y chromium
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: npm (Node.js) is missing: install Node.js 18+ (Debian: apt-get install -y nodejs npm)" >&2
  exit 1
fi
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
