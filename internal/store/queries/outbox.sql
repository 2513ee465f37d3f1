-- Queries of the notification outbox (internal/outbox, internal/webhook). Rows are inserted by the
-- statements that commit verdicts (PipelineRecord, RecordMultipartAbort, ...), never here.

-- name: OutboxClaim :many
-- The oldest rows not relayed yet, locked until the relay's transaction ends; rows another relay
-- holds are skipped, so relays on several replicas share the work.
SELECT id, event_id, event_type, upload_id, bucket, key, data, created_at
FROM outbox
WHERE relayed_at IS NULL
ORDER BY id
LIMIT @max_rows
FOR UPDATE SKIP LOCKED;

-- name: OutboxMarkRelayed :exec
-- Marks claimed rows relayed, each with its endpoints still to deliver to (comma-separated names;
-- the arrays are parallel). A row with none is delivered at once.
UPDATE outbox o
SET relayed_at   = now(),
    pending      = string_to_array(v.pending, ','),
    delivered_at = CASE WHEN v.pending = '' THEN now() END
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@pendings::text[]) AS pending) AS v
WHERE o.id = v.id;

-- name: OutboxGet :one
-- One notification, for a delivery attempt. FOR SHARE waits for a relay that still holds the row
-- (its tasks may start before it commits) and then reads what it committed.
SELECT id, event_id, event_type, bucket, key, data, created_at, relayed_at, pending
FROM outbox
WHERE id = @id
FOR SHARE;

-- name: OutboxMarkDelivered :one
-- Removes endpoint from the row's pending endpoints (idempotent) and sets delivered_at once none is
-- left; returns whether the row is now delivered to every endpoint.
UPDATE outbox
SET pending      = array_remove(pending, @endpoint::text),
    delivered_at = CASE WHEN cardinality(array_remove(pending, @endpoint::text)) = 0
                        THEN COALESCE(delivered_at, now()) ELSE delivered_at END
WHERE id = @id
RETURNING (delivered_at IS NOT NULL)::boolean AS all_delivered;

-- name: OutboxBacklog :one
-- The age in seconds (by the database's clock) of the oldest notification not yet delivered to
-- every endpoint (0: none), and how many notifications are not relayed yet.
SELECT COALESCE(EXTRACT(EPOCH FROM now() - (SELECT min(created_at) FROM outbox WHERE delivered_at IS NULL)), 0)::float8 AS oldest_age_seconds,
       (SELECT count(*) FROM outbox WHERE relayed_at IS NULL)::bigint AS unrelayed;

-- name: OutboxPurge :execrows
-- Deletes up to max_rows notifications delivered before cutoff, oldest first.
DELETE FROM outbox
WHERE id IN (SELECT o.id FROM outbox o WHERE o.delivered_at < @cutoff::timestamptz ORDER BY o.id LIMIT @max_rows);

-- name: OutboxList :many
-- Every notification of an upload, oldest first (tests and operators).
SELECT * FROM outbox WHERE upload_id = @upload_id ORDER BY id;
