#!/usr/bin/env bash
# The quick start: on a fresh Debian machine, installs what is missing (the Docker
# engine and busybox for the local example image, curl), starts dockerd if none
# answers, builds Constellation, and runs deploy/local.sh with two node agents and an
# example web service deployed through the REST API. It prints where to look (REST,
# WebSocket, the Traefik endpoint); Ctrl-C removes the example and stops everything.
#
#   sudo deploy/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v curl >/dev/null || missing+=(curl)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "missing ${missing[*]}: run as root to install them" >&2; exit 1; }
  echo "installing ${missing[*]}…"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: /tmp/constellation-dockerd.log)…"
  (dockerd >/tmp/constellation-dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start" >&2; exit 1; }
fi

# No registry is needed: the example runs a local FROM-scratch busybox image.
tests/fixtures/busybox-image/build.sh

CONSTELLATION_AGENTS=2 CONSTELLATION_EXAMPLE=1 exec deploy/local.sh
