#!/usr/bin/env bash
# Validates docker-compose.yml with a real Compose implementation (`docker compose config -q`, or
# the standalone docker-compose). There is no Docker engine on the build machines, but `config`
# needs none: it parses, interpolates and checks the file against the Compose schema (unknown keys,
# wrong types, depends_on on missing services, bad conditions).
#
# When neither is present, Debian's docker-compose package is installed (as root, with apt-get).
# Run by `go test ./deploy/...`, so by `make test`.
#
#   deploy/compose/check.sh [path/to/docker-compose.yml]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FILE=${1:-$ROOT/docker-compose.yml}

log() { printf '[compose] %s\n' "$*" >&2; }

compose() {
	if docker compose version >/dev/null 2>&1; then
		docker compose "$@"
	elif command -v docker-compose >/dev/null 2>&1; then
		docker-compose "$@"
	else
		return 127
	fi
}

have_compose() { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }

if ! have_compose; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		log "no Compose implementation: installing Debian's docker-compose"
		export DEBIAN_FRONTEND=noninteractive
		# flock: other checks may run apt at the same time (go test runs packages in parallel).
		apt_install() { flock /tmp/intake-apt.lock apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 docker-compose >/dev/null; }
		apt_install || { flock /tmp/intake-apt.lock apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null && apt_install; }
	fi
	have_compose || { log "docker compose / docker-compose is required: apt-get install docker-compose"; exit 1; }
fi

cd "$(dirname "$FILE")"
compose -f "$FILE" config -q
log "$(basename "$FILE") is valid"
