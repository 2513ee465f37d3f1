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
-- the arrays are parallel), less those a delivery already recorded: the tasks of a relay that rolled
-- back deliver rows before any relay commits, and when this relay's enqueue of the same task found
-- it still there, no other task will deliver them. A row with none left is delivered at once.
UPDATE outbox o
SET relayed_at   = now(),
    pending      = ARRAY(SELECT e FROM unnest(string_to_array(v.pending, ',')) AS e WHERE e <> ALL (o.delivered)),
    delivered_at = CASE WHEN EXISTS (SELECT 1 FROM unnest(string_to_array(v.pending, ',')) AS e WHERE e <> ALL (o.delivered))
                        THEN NULL ELSE COALESCE(o.delivered_at, now()) END
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@pendings::text[]) AS pending) AS v
WHERE o.id = v.id;

-- name: OutboxMarkDeliveredBatch :exec
-- Records deliveries (store.Outbox batches those of concurrent deliveries; the arrays are
-- parallel, each row once, its delivered endpoints comma-separated): removes the endpoints from the
-- row's pending ones and sets delivered_at once none is left. A row its relay still holds is
-- waited for (the relay enqueues before it commits), and the SET expressions read the row as it
-- stands once locked, so nothing the relay or another batch wrote is lost. A row whose relay
-- rolled back has no pending endpoints yet: it is marked delivered now, its endpoints recorded in
-- delivered, and the next relay leaves those out of its pending ones (it may still deliver once
-- more, under the same webhook-id, when its enqueue creates a new task).
UPDATE outbox o
SET pending      = ARRAY(SELECT e FROM unnest(o.pending) AS e WHERE e <> ALL (string_to_array(v.endpoints, ','))),
    delivered    = ARRAY(SELECT DISTINCT e FROM unnest(o.delivered || string_to_array(v.endpoints, ',')) AS e ORDER BY e),
    delivered_at = CASE WHEN EXISTS (SELECT 1 FROM unnest(o.pending) AS e WHERE e <> ALL (string_to_array(v.endpoints, ',')))
                        THEN o.delivered_at ELSE COALESCE(o.delivered_at, now()) END
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@endpoints::text[]) AS endpoints) AS v
WHERE o.id = v.id;

-- name: OutboxBacklog :one
-- The age in seconds (by the database's clock) of the oldest notification not yet delivered to
-- every endpoint (0: none), and how many notifications are not relayed yet.
SELECT COALESCE(EXTRACT(EPOCH FROM now() - (SELECT min(created_at) FROM outbox WHERE delivered_at IS NULL)), 0)::float8 AS oldest_age_seconds,
       (SELECT count(*) FROM outbox WHERE relayed_at IS NULL)::bigint AS unrelayed;

-- name: OutboxPurge :execrows
-- Deletes up to max_rows notifications delivered before cutoff, oldest delivery first
-- (outbox_delivered_at_idx).
DELETE FROM outbox
WHERE id IN (SELECT o.id FROM outbox o WHERE o.delivered_at < @cutoff::timestamptz ORDER BY o.delivered_at LIMIT @max_rows);
