#!/usr/bin/env bash
# LocalStack "ready" hook for docker-compose.yml (mounted into /etc/localstack/init/ready.d/).
#
# It wires S3 and SQS the way production is wired, from the same JSON documents in deploy/aws/
# (mounted at /opt/intake/aws): the bucket with its CORS rules and multipart clean-up backstop, the
# dead-letter queue, the event queue with its redrive policy (5 receives, then the DLQ) and the queue
# policy that lets only this bucket send to it, and the bucket notification that sends
# s3:ObjectCreated:* and s3:ObjectRemoved:* to the queue. It is idempotent, and it touches
# $INTAKE_INIT_READY_FILE when everything is in place: the Compose healthcheck waits for that file.
#
# Settings (environment, all optional):
#   INTAKE_INIT_BUCKET          bucket name                         (intake-local)
#   INTAKE_INIT_QUEUE           event queue name; the DLQ is NAME-dlq (intake-events)
#   INTAKE_INIT_ALLOWED_ORIGIN  browser origin allowed by S3 CORS   (*)
#   INTAKE_INIT_AWS_DIR         where deploy/aws/ is mounted        (/opt/intake/aws)
#   INTAKE_INIT_READY_FILE      written when done                   (/tmp/intake-init-ready)
set -euo pipefail

BUCKET=${INTAKE_INIT_BUCKET:-intake-local}
QUEUE=${INTAKE_INIT_QUEUE:-intake-events}
DLQ=$QUEUE-dlq
ALLOWED_ORIGIN=${INTAKE_INIT_ALLOWED_ORIGIN:-*}
AWS_DIR=${INTAKE_INIT_AWS_DIR:-/opt/intake/aws}
READY_FILE=${INTAKE_INIT_READY_FILE:-/tmp/intake-init-ready}

log() { printf '[intake-init] %s\n' "$*" >&2; }

rm -f "$READY_FILE"

# render FILE: a deploy/aws/ document with its ${…} placeholders filled in. REGION and ACCOUNT_ID
# come from the DLQ's ARN, so they are whatever the emulator (or account) really uses.
render() {
	sed -e "s|\${AWS_REGION}|$REGION|g" \
		-e "s|\${ACCOUNT_ID}|$ACCOUNT_ID|g" \
		-e "s|\${BUCKET}|$BUCKET|g" \
		-e "s|\${QUEUE}|$QUEUE|g" \
		-e "s|\${ALLOWED_ORIGIN}|$ALLOWED_ORIGIN|g" \
		"$AWS_DIR/$1"
}

# queue_attributes BASE_FILE [NAME FILE]...: BASE_FILE's string map, plus each NAME set to FILE's
# document as a JSON string (SQS takes RedrivePolicy and Policy as strings holding JSON).
queue_attributes() {
	local base=$1
	shift
	local args=()
	while [ $# -gt 0 ]; do
		args+=("$1" "$(render "$2")")
		shift 2
	done
	render "$base" | python3 -c '
import json, sys
attrs = json.load(sys.stdin)
pairs = sys.argv[1:]
for name, doc in zip(pairs[0::2], pairs[1::2]):
    attrs[name] = json.dumps(json.loads(doc), separators=(",", ":"))
print(json.dumps(attrs))
' "${args[@]}"
}

queue_arn() {
	awslocal sqs get-queue-attributes --queue-url "$1" --attribute-names QueueArn \
		--query Attributes.QueueArn --output text
}

log "bucket $BUCKET"
if ! awslocal s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
	awslocal s3api create-bucket --bucket "$BUCKET" >/dev/null
fi

log "dead-letter queue $DLQ"
dlq_url=$(awslocal sqs create-queue --queue-name "$DLQ" --query QueueUrl --output text)
dlq_arn=$(queue_arn "$dlq_url")
REGION=$(cut -d: -f4 <<<"$dlq_arn")
ACCOUNT_ID=$(cut -d: -f5 <<<"$dlq_arn")
awslocal sqs set-queue-attributes --queue-url "$dlq_url" \
	--attributes "$(queue_attributes dlq-attributes.json)"

log "event queue $QUEUE (redrive to $DLQ after 5 receives; only $BUCKET may send)"
queue_url=$(awslocal sqs create-queue --queue-name "$QUEUE" --query QueueUrl --output text)
awslocal sqs set-queue-attributes --queue-url "$queue_url" \
	--attributes "$(queue_attributes queue-attributes.json RedrivePolicy redrive-policy.json Policy sqs-queue-policy.json)"
queue_arn=$(queue_arn "$queue_url")
if [ "$queue_arn" != "arn:aws:sqs:$REGION:$ACCOUNT_ID:$QUEUE" ]; then
	log "unexpected queue ARN $queue_arn"
	exit 1
fi

log "bucket CORS, multipart backstop and notification to $queue_arn"
awslocal s3api put-bucket-cors --bucket "$BUCKET" --cors-configuration "$(render s3-cors.json)"
awslocal s3api put-bucket-lifecycle-configuration --bucket "$BUCKET" \
	--lifecycle-configuration "$(render s3-lifecycle.json)"
awslocal s3api put-bucket-notification-configuration --bucket "$BUCKET" \
	--notification-configuration "$(render bucket-notification.json)"

touch "$READY_FILE"
log "ready: INTAKE_BUCKET=$BUCKET INTAKE_QUEUE_URL=$queue_url INTAKE_DLQ_URL=$dlq_url"
