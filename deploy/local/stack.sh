#!/usr/bin/env bash
# The local stack for development and tests: PostgreSQL and Redis from the machine (started if down),
# MinIO (S3), kumo (SQS) and toxiproxy (the fault proxy tests put between intake and the servers) built
# into bin/ from the Go module proxy and started here. Idempotent: whatever already runs is reused.
# Everything binds to 127.0.0.1.
#
#   deploy/local/stack.sh up|down|status|env
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$ROOT/bin
STATE=$ROOT/.stack
mkdir -p "$BIN" "$STATE"

# Pinned versions. MinIO has no semver tags: this is the pseudo-version of its last published commit.
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
# kumo's and toxiproxy's versions are pinned by deploy/local/{kumo,toxiproxy}/go.mod (and their
# committed go.sum).

PG_HOST=127.0.0.1 PG_PORT=5432
REDIS_PORT=6379
S3_ADDR=127.0.0.1:9000 S3_CONSOLE=127.0.0.1:9001
SQS_PORT=4566
TOXIPROXY_PORT=8474
ACCESS_KEY=${INTAKE_LOCAL_ACCESS_KEY:-intakeadmin}
SECRET_KEY=${INTAKE_LOCAL_SECRET_KEY:-intakeadmin-secret}
# At least 32 bytes: intake refuses a shorter INTAKE_CONSUMER_INGRESS_TOKEN.
INGRESS_TOKEN=${INTAKE_LOCAL_INGRESS_TOKEN:-local-ingress-token-not-secret-0123456789}
BUCKET=${INTAKE_LOCAL_BUCKET:-intake-local}
QUEUE=${INTAKE_LOCAL_QUEUE:-intake-events}

log() { printf '[stack] %s\n' "$*" >&2; }

wait_for() { # wait_for NAME SECONDS CMD...
	local name=$1 secs=$2
	shift 2
	for _ in $(seq 1 $((secs * 5))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	log "$name did not come up within ${secs}s"
	return 1
}

pg_up() { pg_isready -h $PG_HOST -p $PG_PORT -q; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p $REDIS_PORT ping 2>/dev/null)" = PONG ]; }
minio_up() { curl -fs -o /dev/null "http://$S3_ADDR/minio/health/live"; }
toxiproxy_up() { curl -fs -o /dev/null "http://127.0.0.1:$TOXIPROXY_PORT/version"; }
kumo_up() { curl -fs -o /dev/null -X POST "http://127.0.0.1:$SQS_PORT/" -H 'X-Amz-Target: AmazonSQS.ListQueues' -H 'Content-Type: application/x-amz-json-1.0' -d '{}'; }

# pg_trust_loopback lets the local stack's clients (the tests, `make run`: user postgres, no
# password) in over 127.0.0.1 and ::1 on a cluster this script installed: Debian's pg_hba.conf asks
# for a password there, and the postgres role has none. Only for the throwaway cluster of a
# development or CI machine: an existing cluster's authentication is never touched.
pg_trust_loopback() {
	local ver=$1 hba
	hba=/etc/postgresql/$ver/main/pg_hba.conf
	grep -q '^# intake local stack' "$hba" && return 0
	log "letting local clients in over loopback without a password ($hba)"
	{
		echo '# intake local stack: loopback clients without a password (development and CI only)'
		echo 'host all all 127.0.0.1/32 trust'
		echo 'host all all ::1/128 trust'
		cat "$hba"
	} > "$hba.new" && mv "$hba.new" "$hba"
	chown postgres:postgres "$hba" 2>/dev/null || true
}

# ensure_tools installs what the stack and the tests call besides Go: curl (the readiness waits
# below) and a C compiler (go test -race needs cgo). A minimal Debian with Go from its tarball has
# neither.
ensure_tools() {
	local missing=()
	command -v curl >/dev/null || missing+=(curl ca-certificates)
	command -v gcc >/dev/null || missing+=(build-essential)
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]} from Debian's packages"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_postgres() {
	if ! pg_up; then
		local installed=""
		if ! command -v pg_ctlcluster >/dev/null; then
			log "installing PostgreSQL from Debian's packages"
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
			installed=1
		fi
		local ver
		ver=$(ls /etc/postgresql | sort -V | tail -1)
		[ -n "$installed" ] && pg_trust_loopback "$ver"
		log "starting PostgreSQL"
		pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
		wait_for postgres 30 pg_up
	fi
	if ! psql -h $PG_HOST -U postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
		log "PostgreSQL on $PG_HOST:$PG_PORT does not let user postgres in without a password: the tests and \`make run\` connect as postgres@$PG_HOST."
		log "On a development machine, add 'host all all 127.0.0.1/32 trust' at the top of its pg_hba.conf and reload (pg_ctlcluster <version> main reload), or set PGPASSWORD."
		return 1
	fi
	for db in intake intake_test; do
		if ! psql -h $PG_HOST -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
			log "creating database $db"
			psql -h $PG_HOST -U postgres -qc "CREATE DATABASE $db" >/dev/null
		fi
	done
}

ensure_redis() {
	if ! redis_up; then
		if ! command -v redis-server >/dev/null; then
			log "installing Redis from Debian's packages"
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
		fi
		log "starting Redis"
		mkdir -p /var/lib/redis /var/log/redis
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $REDIS_PORT --save "" --appendonly no \
			--dir /var/lib/redis --logfile /var/log/redis/ci.log
		wait_for redis 15 redis_up
	fi
}

build_minio() {
	[ -x "$BIN/minio" ] && return 0
	log "building MinIO $MINIO_VERSION into bin/ (first time only, ~5 minutes)"
	GOBIN=$BIN GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION"
}

build_kumo() {
	[ -x "$BIN/kumo" ] && return 0
	log "building kumo into bin/ from deploy/local/kumo (first time only)"
	# The committed go.sum pins every module; GONOSUMDB avoids checksum-database look-ups that the
	# proxy cannot answer for some aws-sdk-go-v2 service modules kumo depends on.
	(cd "$ROOT/deploy/local/kumo" && GONOSUMDB=github.com/aws/aws-sdk-go-v2 GOFLAGS="-mod=readonly -buildvcs=false" \
		go build -o "$BIN/kumo" github.com/sivchari/kumo/cmd/kumo)
}

build_toxiproxy() {
	[ -x "$BIN/toxiproxy-server" ] && return 0
	log "building toxiproxy-server into bin/ from deploy/local/toxiproxy (first time only)"
	(cd "$ROOT/deploy/local/toxiproxy" && GOFLAGS="-mod=readonly -buildvcs=false" \
		go build -o "$BIN/toxiproxy-server" github.com/Shopify/toxiproxy/v2/cmd/server)
}

# minio_current reports whether the MinIO answering on S3_ADDR was started with this script's
# webhook token (an older stack.sh used another): its environment is read from /proc. A MinIO whose
# environment cannot be read (another user's, another OS) is taken as current.
minio_current() {
	local pid
	pid=$(pgrep -f "minio server .*--address $S3_ADDR" | head -1) || return 0
	[ -n "$pid" ] && [ -r "/proc/$pid/environ" ] || return 0
	tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_INTAKE=$INGRESS_TOKEN"
}

start_minio() {
	if minio_up && ! minio_current; then
		log "restarting MinIO: it runs with an older webhook configuration"
		pkill -f "minio server .*--address $S3_ADDR" || true
		for _ in $(seq 1 50); do minio_up || break; sleep 0.2; done
	fi
	minio_up && return 0
	log "starting MinIO on $S3_ADDR (data in .stack/minio)"
	mkdir -p "$STATE/minio" "$STATE/minio-events"
	# Two webhook targets: INTAKE feeds the daemon's ingress (make run); TEST is used by the
	# end-to-end tests, which listen on 127.0.0.1:18080 while they run.
	MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY \
	MINIO_REGION=us-east-1 MINIO_SITE_REGION=us-east-1 MINIO_BROWSER=off \
	MINIO_NOTIFY_WEBHOOK_ENABLE_INTAKE=on \
	MINIO_NOTIFY_WEBHOOK_ENDPOINT_INTAKE=http://127.0.0.1:8080/v1/events/s3 \
	MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_INTAKE=$INGRESS_TOKEN \
	MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_INTAKE=$STATE/minio-events \
	MINIO_NOTIFY_WEBHOOK_ENABLE_TEST=on \
	MINIO_NOTIFY_WEBHOOK_ENDPOINT_TEST=http://127.0.0.1:18080/v1/events/s3 \
	MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_TEST=test-ingress-token \
		nohup "$BIN/minio" server "$STATE/minio" --address "$S3_ADDR" --console-address "$S3_CONSOLE" --quiet \
		>"$STATE/minio.log" 2>&1 </dev/null &
	echo $! >"$STATE/minio.pid"
	wait_for minio 60 minio_up || { tail -20 "$STATE/minio.log" >&2; return 1; }
}

start_kumo() {
	kumo_up && return 0
	log "starting kumo (SQS) on 127.0.0.1:$SQS_PORT"
	KUMO_HOST=127.0.0.1 KUMO_PORT=$SQS_PORT nohup "$BIN/kumo" >"$STATE/kumo.log" 2>&1 </dev/null &
	echo $! >"$STATE/kumo.pid"
	wait_for kumo 30 kumo_up || { tail -20 "$STATE/kumo.log" >&2; return 1; }
}

start_toxiproxy() {
	toxiproxy_up && return 0
	log "starting toxiproxy on 127.0.0.1:$TOXIPROXY_PORT (proxies are created by the tests)"
	nohup "$BIN/toxiproxy-server" -host 127.0.0.1 -port $TOXIPROXY_PORT >"$STATE/toxiproxy.log" 2>&1 </dev/null &
	echo $! >"$STATE/toxiproxy.pid"
	wait_for toxiproxy 30 toxiproxy_up || { tail -20 "$STATE/toxiproxy.log" >&2; return 1; }
}

bootstrap() {
	(cd "$ROOT" && GOFLAGS=-buildvcs=false go build -o "$BIN/intake-bootstrap" ./deploy/local/bootstrap)
	AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=us-east-1 \
	AWS_ENDPOINT_URL_S3=http://$S3_ADDR AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$SQS_PORT \
		"$BIN/intake-bootstrap" -bucket "$BUCKET" -queue "$QUEUE" -notify-arn arn:minio:sqs:us-east-1:INTAKE:webhook \
		>"$STATE/bootstrap.env"
}

stop_pid() {
	local name=$1 f=$STATE/$1.pid
	if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
		log "stopping $name"
		kill "$(cat "$f")" && rm -f "$f"
	fi
}

status_line() { if "$2"; then printf '%-10s up    %s\n' "$1" "$3"; else printf '%-10s DOWN  %s\n' "$1" "$3"; fi; }

case "${1:-}" in
up)
	ensure_tools
	ensure_postgres
	ensure_redis
	# The builds are independent: run them side by side (first run only).
	build_minio & minio_build=$!
	build_kumo & kumo_build=$!
	build_toxiproxy & toxiproxy_build=$!
	wait $minio_build || { log "MinIO build failed"; exit 1; }
	wait $kumo_build || { log "kumo build failed"; exit 1; }
	wait $toxiproxy_build || { log "toxiproxy build failed"; exit 1; }
	start_minio
	start_kumo
	start_toxiproxy
	bootstrap
	log "stack is up: postgres $PG_HOST:$PG_PORT, redis 127.0.0.1:$REDIS_PORT, minio http://$S3_ADDR, kumo http://127.0.0.1:$SQS_PORT, toxiproxy http://127.0.0.1:$TOXIPROXY_PORT"
	;;
down)
	stop_pid minio
	stop_pid kumo
	stop_pid toxiproxy
	log "MinIO, kumo and toxiproxy stopped (PostgreSQL and Redis belong to the machine and keep running)"
	;;
status)
	status_line postgres pg_up "$PG_HOST:$PG_PORT"
	status_line redis redis_up "127.0.0.1:$REDIS_PORT"
	status_line minio minio_up "http://$S3_ADDR"
	status_line kumo kumo_up "http://127.0.0.1:$SQS_PORT"
	status_line toxiproxy toxiproxy_up "http://127.0.0.1:$TOXIPROXY_PORT"
	;;
env)
	# The environment `make run` uses: the local stack's endpoints and credentials.
	cat <<ENV
DATABASE_URL=postgres://postgres@$PG_HOST:$PG_PORT/intake?sslmode=disable
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
AWS_ENDPOINT_URL_S3=http://$S3_ADDR
AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$SQS_PORT
INTAKE_CONSUMER_INGRESS_TOKEN=$INGRESS_TOKEN
ENV
	cat "$STATE/bootstrap.env"
	;;
*)
	echo "usage: $0 up|down|status|env" >&2
	exit 2
	;;
esac
