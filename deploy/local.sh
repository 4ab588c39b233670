#!/usr/bin/env bash
# Starts Constellation on this machine for development: builds the binaries, then runs a
# bootstrapped control plane on loopback with its data in a temporary directory, and a
# gateway in front of it. Ctrl-C stops everything and removes the data.
#
#   deploy/local.sh            # API on 127.0.0.1:7400, gateway on 127.0.0.1:8080
#   CONSTELLATION_API_PORT=17400 CONSTELLATION_HTTP_PORT=18080 deploy/local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

api_port=${CONSTELLATION_API_PORT:-7400}
raft_port=${CONSTELLATION_RAFT_PORT:-$((api_port + 1))}
http_port=${CONSTELLATION_HTTP_PORT:-8080}

echo "building…"
cargo build --quiet --bins
bin=target/debug
data=$(mktemp -d -t constellation-local.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo "stopping…"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  rm -rf "$data"
}
trap cleanup EXIT INT TERM

"$bin/constellation-controlplane" --id 1 --bootstrap --data-dir "$data/cp1" \
  --api-listen "127.0.0.1:$api_port" --raft-listen "127.0.0.1:$raft_port" &
pids+=($!)
"$bin/constellation-gateway" --controlplane "127.0.0.1:$api_port" \
  --listen "127.0.0.1:$http_port" &
pids+=($!)

for _ in $(seq 50); do
  "$bin/constellation" --controlplane "127.0.0.1:$api_port" health >/dev/null 2>&1 && break
  sleep 0.2
done
cat <<MSG

Constellation is running (data in $data):
  control plane gRPC   127.0.0.1:$api_port   (try: $bin/constellation --controlplane 127.0.0.1:$api_port health)
  control plane Raft   127.0.0.1:$raft_port
  gateway HTTP         http://127.0.0.1:$http_port/health
Press Ctrl-C to stop it all.
MSG
wait -n "${pids[@]}"
