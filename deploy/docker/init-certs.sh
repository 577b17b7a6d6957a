#!/bin/sh
# One-shot certificate setup for docker compose (service `certs`): the Vigil
# CA, the aggregator's certificate and the agents' identities, each in its
# own volume so every container sees only its own keys. Files already
# there are kept, so it is safe on every `docker compose up`.
#
#   VIGIL_CA_DIR            ca.crt, ca.key          (only this service mounts it)
#   VIGIL_SERVER_DIR        ca.crt, server.crt/.key (the aggregator's /etc/vigil/certs)
#   VIGIL_AGENT_DIR         ca.crt, <id>.crt/.key/.sign.key/.pub (the agent's)
#   VIGIL_SERVER_NAMES      names agents dial (the compose service, localhost)
#   VIGIL_AGENT_IDS         agent ids to issue
set -eu

ca_dir=${VIGIL_CA_DIR:-/var/lib/vigil-ca}
server_dir=${VIGIL_SERVER_DIR:-/etc/vigil/certs}
agent_dir=${VIGIL_AGENT_DIR:-/etc/vigil/agent-certs}
server_names=${VIGIL_SERVER_NAMES:-aggregator localhost 127.0.0.1}
agent_ids=${VIGIL_AGENT_IDS:-demo-host}

umask 077
if [ ! -f "$ca_dir/ca.crt" ]; then
    vigil-certs ca --dir "$ca_dir"
fi
for dir in "$server_dir" "$agent_dir"; do
    mkdir -p "$dir"
    cp "$ca_dir/ca.crt" "$dir/ca.crt"
    chmod 0644 "$dir/ca.crt"
done
if [ ! -f "$server_dir/server.crt" ]; then
    set --
    for name in $server_names; do
        set -- "$@" --name "$name"
    done
    vigil-certs server --dir "$server_dir" --ca-dir "$ca_dir" "$@"
fi
for id in $agent_ids; do
    if [ ! -f "$agent_dir/$id.crt" ]; then
        vigil-certs agent --dir "$agent_dir" --ca-dir "$ca_dir" --agent-id "$id"
    fi
done
echo "certificates ready"
