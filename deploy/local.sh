#!/usr/bin/env bash
# Starts Constellation on this machine for development: builds the binaries, then runs a
# 3-member control plane on loopback (member 1 bootstraps, 2 and 3 join through it)
# with its data in a temporary directory, and a gateway in front of it. Ctrl-C stops
# everything and removes the data.
#
#   deploy/local.sh            # APIs on 127.0.0.1:7400, :7410, :7420; gateway on :8080
#   CONSTELLATION_API_PORT=17400 CONSTELLATION_HTTP_PORT=18080 deploy/local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

api_port=${CONSTELLATION_API_PORT:-7400}
http_port=${CONSTELLATION_HTTP_PORT:-8080}
# Member i listens on api_port + 10*(i-1) (API) and the port after it (Raft).
api() { echo "127.0.0.1:$((api_port + 10 * ($1 - 1)))"; }
raft() { echo "127.0.0.1:$((api_port + 10 * ($1 - 1) + 1))"; }

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

start_member() { # id, then --bootstrap or --join ADDR
  local id=$1
  shift
  "$bin/constellation-controlplane" --id "$id" --data-dir "$data/cp$id" \
    --api-listen "$(api "$id")" --raft-listen "$(raft "$id")" "$@" &
  pids+=($!)
}
wait_healthy() {
  for _ in $(seq 100); do
    "$bin/constellation" --controlplane "$1" health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "member at $1 did not come up" >&2
  return 1
}

start_member 1 --bootstrap
wait_healthy "$(api 1)"
start_member 2 --join "$(api 1)"
start_member 3 --join "$(api 1)"
wait_healthy "$(api 2)"
wait_healthy "$(api 3)"
"$bin/constellation-gateway" --controlplane "$(api 1),$(api 2),$(api 3)" \
  --listen "127.0.0.1:$http_port" &
pids+=($!)
sleep 1
"$bin/constellation" --controlplane "$(api 1)" status || true

cat <<MSG

Constellation is running (data in $data):
  control plane gRPC   $(api 1) $(api 2) $(api 3)
                       (try: $bin/constellation --controlplane $(api 1) status)
  control plane Raft   $(raft 1) $(raft 2) $(raft 3)
  gateway HTTP         http://127.0.0.1:$http_port/health
  gateway REST         http://127.0.0.1:$http_port/api/v1/status  (and /api/v1/services, /nodes, ...)
  gateway events       http://127.0.0.1:$http_port/api/v1/events?index=0  ws://127.0.0.1:$http_port/ws
Press Ctrl-C to stop it all.
MSG
wait -n "${pids[@]}"
