#!/usr/bin/env bash
# Starts Constellation on this machine for development: builds the binaries, then runs a
# 3-member control plane on loopback (member 1 bootstraps, 2 and 3 join through it)
# with its data in a temporary directory, and a gateway in front of it. Ctrl-C stops
# everything and removes the data.
#
# With CONSTELLATION_AGENTS=N it also starts N node agents on the local Docker engine
# (node1..nodeN, gossiping on loopback); with CONSTELLATION_EXAMPLE=1 it deploys an
# example web service carrying Traefik labels through the gateway's REST API, and
# removes it again on Ctrl-C. deploy/quickstart.sh does both.
#
#   deploy/local.sh            # APIs on 127.0.0.1:7400, :7410, :7420; gateway on :8080
#   CONSTELLATION_API_PORT=17400 CONSTELLATION_HTTP_PORT=18080 deploy/local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

api_port=${CONSTELLATION_API_PORT:-7400}
http_port=${CONSTELLATION_HTTP_PORT:-8080}
agents=${CONSTELLATION_AGENTS:-0}
example=${CONSTELLATION_EXAMPLE:-0}
gateway="http://127.0.0.1:$http_port"
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
  if [ "$example" = 1 ]; then
    # The agents remove the service's containers before they are stopped.
    curl -fsS -X DELETE "$gateway/api/v1/services/web" >/dev/null 2>&1 || true
    for _ in $(seq 50); do
      [ -z "$(docker ps -aq --filter label=constellation.service=web 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
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
members="$(api 1),$(api 2),$(api 3)"
gossip() { echo "127.0.0.1:$((api_port + 50 + $1))"; }
for i in $(seq "$agents"); do
  seed=()
  [ "$i" -gt 1 ] && seed=(--gossip-seed "$(gossip 1)")
  "$bin/constellation-agent" --name "node$i" --controlplane "$members" \
    --state-dir "$data/agent$i/state" --secrets-dir "$data/agent$i/secrets" \
    --advertise-addr 127.0.0.1 --gossip-listen "$(gossip "$i")" "${seed[@]}" &
  pids+=($!)
done
sleep 1
"$bin/constellation" --controlplane "$(api 1)" status || true

if [ "$example" = 1 ]; then
  echo "deploying the example service 'web' through $gateway/api/v1/services/web…"
  curl -fsS -X PUT -H 'content-type: application/json' "$gateway/api/v1/services/web" -d @- <<JSON >/dev/null
{"name": "web", "image": "${CONSTELLATION_TEST_IMAGE:-constellation-test/busybox:latest}",
 "command": ["httpd", "-f", "-p", "8080", "-h", "/www"], "replicas": 2,
 "ports": [{"container_port": 8080, "host_ip": "127.0.0.1"}],
 "health_check": {"test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"],
                  "interval": "2s", "timeout": "1s", "retries": 3},
 "stop_grace_period": "2s",
 "labels": {"traefik.enable": "true",
            "traefik.http.routers.web.rule": "Host(\`web.localhost\`)",
            "traefik.http.services.web.loadbalancer.server.port": "8080"}}
JSON
  echo -n "waiting until both replicas are healthy and routed"
  for _ in $(seq 120); do
    servers=$(curl -fsS "$gateway/traefik" 2>/dev/null | grep -o '"url"' | wc -l || true)
    [ "${servers:-0}" -ge 2 ] && break
    echo -n .
    sleep 0.5
  done
  echo
  "$bin/constellation" --controlplane "$(api 1)" alloc ls || true
fi

cat <<MSG

Constellation is running (data in $data):
  control plane gRPC   $(api 1) $(api 2) $(api 3)
                       (try: $bin/constellation --controlplane $(api 1) status)
  control plane Raft   $(raft 1) $(raft 2) $(raft 3)
  gateway HTTP         http://127.0.0.1:$http_port/health
  gateway REST         http://127.0.0.1:$http_port/api/v1/status  (and /api/v1/services, /nodes, ...)
  gateway events       http://127.0.0.1:$http_port/api/v1/events?index=0  ws://127.0.0.1:$http_port/ws
  Traefik provider     http://127.0.0.1:$http_port/traefik  (point Traefik's HTTP provider here)
  node agents          $agents on the local Docker engine (data in $data/agent*)
Press Ctrl-C to stop it all.
MSG
wait -n "${pids[@]}"
