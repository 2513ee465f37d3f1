#!/usr/bin/env bash
# Checks the Prometheus rules with promtool: syntax of alerts.yml (and of any extra rule files given
# as arguments, e.g. the dashboard's queries wrapped as recording rules by deploy/deploy_test.go),
# then the alert unit tests in alerts_test.yml.
#
# promtool comes from PATH, else from bin/promtool, else it is extracted into bin/ from Debian's
# `prometheus` package (apt-get download: nothing is installed system-wide). Run by `go test
# ./deploy/...`, so by `make test`.
#
#   deploy/observability/check.sh [extra-rules.yml...]
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$DIR/../.." && pwd)
BIN=$ROOT/bin

log() { printf '[observability] %s\n' "$*" >&2; }

find_promtool() {
	if command -v promtool >/dev/null 2>&1; then
		command -v promtool
	elif [ -x "$BIN/promtool" ]; then
		echo "$BIN/promtool"
	else
		return 1
	fi
}

fetch_promtool() {
	command -v apt-get >/dev/null 2>&1 || return 1
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	log "promtool not found: extracting it from Debian's prometheus package into bin/"
	# flock: other checks may run apt at the same time (go test runs packages in parallel).
	if ! (cd "$tmp" && flock /tmp/intake-apt.lock apt-get download -qq prometheus >/dev/null 2>&1); then
		flock /tmp/intake-apt.lock apt-get update -qq >/dev/null 2>&1 || true
		(cd "$tmp" && flock /tmp/intake-apt.lock apt-get download -qq prometheus >/dev/null) || return 1
	fi
	dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" || return 1
	mkdir -p "$BIN"
	install -m 0755 "$tmp/root/usr/bin/promtool" "$BIN/promtool"
}

PROMTOOL=$(find_promtool) || { fetch_promtool && PROMTOOL=$(find_promtool); } || {
	log "promtool is required and could not be installed: apt-get install --no-install-recommends prometheus"
	exit 1
}

"$PROMTOOL" check rules "$DIR/alerts.yml" "$@"
(cd "$DIR" && "$PROMTOOL" test rules alerts_test.yml)
