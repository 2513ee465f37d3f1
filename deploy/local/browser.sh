#!/usr/bin/env bash
# Installs what the API's browser test and presign benchmark need, idempotently, on a fresh Debian
# machine: headless Chromium from Debian's packages (/usr/bin/chromium) and the npm packages of
# internal/api/testdata/{uppy,refserver} (Uppy, esbuild, playwright-core; the reference Node
# presign server). Browsers are never downloaded by npm: only playwright-core is used, driving the
# Debian Chromium.
#
#   deploy/local/browser.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
log() { printf '[browser] %s\n' "$*" >&2; }

if [ ! -x /usr/bin/chromium ]; then
	log "installing chromium and chromium-driver from Debian's packages"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! command -v npm >/dev/null; then
	log "installing nodejs and npm from Debian's packages"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

for dir in "$ROOT/internal/api/testdata/uppy" "$ROOT/internal/api/testdata/refserver"; do
	if [ ! -d "$dir/node_modules" ]; then
		log "npm ci in ${dir#"$ROOT"/}"
		(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
	fi
done
log "ready: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?'), node $(node --version)"
