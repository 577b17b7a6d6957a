#!/bin/sh
# One-shot setup for docker compose (service `setup`), once PostgreSQL is up
# and before the aggregator starts: registers every agent key found in
# VIGIL_AGENT_DIR, creates the dashboard user admin (its password is printed
# once, in this service's log), and the API tokens Grafana (read) and
# Prometheus (write) use, as files in VIGIL_SECRETS_DIR. Safe to run again:
# keys are re-registered, an existing user and existing tokens are kept.
set -eu

config=${VIGIL_CONFIG:-/etc/vigil/aggregator.toml}
agent_dir=${VIGIL_AGENT_DIR:-/etc/vigil/agent-certs}
secrets=${VIGIL_SECRETS_DIR:-/var/lib/vigil-secrets}

found=0
for pub in "$agent_dir"/*.pub; do
    [ -f "$pub" ] || continue
    found=1
    id=$(basename "$pub" .pub)
    vigil-aggregator register-agent --config "$config" \
        --agent-id "$id" --public-key "$(cat "$pub")"
done
if [ "$found" = 0 ]; then
    echo "setup: no agent public key (*.pub) in $agent_dir" >&2
    exit 1
fi

# stdin is not a terminal and empty: create-user generates the password.
if out=$(vigil-aggregator create-user --config "$config" --name admin --role admin \
        </dev/null 2>&1); then
    echo "$out"
    echo "(dashboard: sign in as admin with the password above)"
else
    case $out in
    *"already exists"*) echo "dashboard user admin exists (password unchanged)" ;;
    *) echo "$out" >&2; exit 1 ;;
    esac
fi

# Token files are read by Grafana and Prometheus, which run as other users:
# world-readable, in a volume only they and this service mount.
umask 022
for pair in grafana:read prometheus:write; do
    name=${pair%%:*}
    scope=${pair#*:}
    file="$secrets/$name.token"
    if [ -s "$file" ]; then
        echo "token $name exists ($file)"
        continue
    fi
    vigil-aggregator create-token --config "$config" --name "$name" --scope "$scope" \
        >"$file.tmp"
    mv "$file.tmp" "$file"
    echo "token $name ($scope) written to $file"
done
