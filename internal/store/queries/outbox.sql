-- Queries of the notification outbox (internal/outbox, internal/webhook). Rows are inserted by the
-- statements that commit verdicts (PipelineRecord, RecordMultipartAbort, ...), never here.

-- name: OutboxClaim :many
-- The oldest rows not relayed yet, locked until the relay's transaction ends; rows another relay
-- holds are skipped, so relays on several replicas share the work. delivered and gave_up are the
-- endpoints the tasks of a relay that rolled back already delivered or gave up: the relay enqueues
-- no delivery to them again (asynq frees a finished task's ID, so a relay failing again and again
-- would post them once per attempt).
SELECT id, event_id, event_type, upload_id, bucket, key, data, created_at, delivered, gave_up
FROM outbox
WHERE relayed_at IS NULL
ORDER BY id
LIMIT @max_rows
FOR UPDATE SKIP LOCKED;

-- name: OutboxMarkRelayed :exec
-- Marks claimed rows relayed, each with its endpoints still to deliver to (comma-separated names;
-- the arrays are parallel), less those a delivery already recorded: the tasks of a relay that rolled
-- back deliver rows before any relay commits, and this relay enqueued nothing to the endpoints it
-- read as delivered (OutboxClaim), or its enqueue of the same task found it still there: no other
-- task will deliver them. Endpoints such a task gave up on are left out too (they stay in gave_up).
-- A row with none left is delivered at once.
UPDATE outbox o
SET relayed_at   = now(),
    pending      = ARRAY(SELECT e FROM unnest(string_to_array(v.pending, ',')) AS e WHERE e <> ALL (o.delivered || o.gave_up)),
    delivered_at = CASE WHEN EXISTS (SELECT 1 FROM unnest(string_to_array(v.pending, ',')) AS e WHERE e <> ALL (o.delivered || o.gave_up))
                        THEN NULL ELSE COALESCE(o.delivered_at, now()) END
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@pendings::text[]) AS pending) AS v
WHERE o.id = v.id;

-- name: OutboxMarkDeliveredBatch :exec
-- Records deliveries (store.Outbox batches those of concurrent deliveries; the arrays are
-- parallel, each row once, its delivered endpoints comma-separated): removes the endpoints from the
-- row's pending ones and sets delivered_at once none is left. A row its relay still holds is
-- waited for (the relay enqueues before it commits), and the SET expressions read the row as it
-- stands once locked, so nothing the relay or another batch wrote is lost. A row whose relay
-- rolled back (a task it enqueued before another enqueue failed) is not relayed: it has no pending
-- endpoints yet, and its other endpoints and its verdict task may never have been enqueued. Its
-- endpoints are recorded in delivered, but delivered_at stays NULL (the backlog counts the row,
-- the purge leaves it) until a relay commits it: that relay enqueues nothing to the delivered
-- endpoints and leaves them out of its pending ones (OutboxClaim, OutboxMarkRelayed). A delivery
-- to an endpoint given up before (an archived task run again) takes it out of gave_up.
UPDATE outbox o
SET pending      = ARRAY(SELECT e FROM unnest(o.pending) AS e WHERE e <> ALL (string_to_array(v.endpoints, ','))),
    gave_up      = ARRAY(SELECT e FROM unnest(o.gave_up) AS e WHERE e <> ALL (string_to_array(v.endpoints, ','))),
    delivered    = ARRAY(SELECT DISTINCT e FROM unnest(o.delivered || string_to_array(v.endpoints, ',')) AS e ORDER BY e),
    delivered_at = CASE WHEN o.relayed_at IS NULL
                          OR EXISTS (SELECT 1 FROM unnest(o.pending) AS e WHERE e <> ALL (string_to_array(v.endpoints, ',')))
                        THEN o.delivered_at ELSE COALESCE(o.delivered_at, now()) END
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@endpoints::text[]) AS endpoints) AS v
WHERE o.id = v.id;

-- name: OutboxToDeliver :many
-- Those of the notifications ids still to deliver to endpoint: in the outbox, and neither
-- delivered to it nor given up on it. A batch delivery task run again (its failed items' own tasks
-- could not be enqueued) posts these only.
SELECT o.id
FROM outbox o
WHERE o.id = ANY (@ids::bigint[]) AND NOT (@endpoint::text = ANY (o.delivered || o.gave_up))
ORDER BY o.id;

-- name: OutboxBacklog :one
-- The age in seconds (by the database's clock) of the oldest notification not yet delivered to
-- every endpoint (0: none), and how many notifications are not relayed yet. A notification not
-- relayed yet is not delivered, whatever its delivered_at (a release before 0019 set it when a
-- task of a relay that rolled back delivered the row): LEAST skips a NULL. The oldest unrelayed row
-- is the first by id (outbox_unrelayed_idx: one index entry), not min(created_at), which read every
-- unrelayed row, every 15 s, on every relay, while the relay is behind: ids and created_at rise
-- together, up to the length of the transactions that inserted them.
SELECT COALESCE(EXTRACT(EPOCH FROM now() - LEAST((SELECT min(created_at) FROM outbox WHERE delivered_at IS NULL),
                                                 (SELECT created_at FROM outbox WHERE relayed_at IS NULL ORDER BY id LIMIT 1))), 0)::float8 AS oldest_age_seconds,
       (SELECT count(*) FROM outbox WHERE relayed_at IS NULL)::bigint AS unrelayed;

-- name: OutboxPurge :execrows
-- Deletes up to max_rows notifications relayed and delivered before cutoff, oldest delivery first
-- (outbox_purgeable_idx, which holds only the rows this can delete). A notification with a
-- given-up delivery stays until it is redelivered or discarded; one not relayed yet stays until a
-- relay has handed all of its deliveries to asynq, whatever its delivered_at says. The batch is an
-- array, deleted by primary key: as "id IN (SELECT ...)" PostgreSQL planned a hash join over a
-- sequential scan of the whole outbox, in every batch (TestPurgesReadTheirBatchOnly).
DELETE FROM outbox
WHERE id = ANY (ARRAY(SELECT o.id FROM outbox o
                      WHERE o.delivered_at < @cutoff::timestamptz AND o.gave_up = '{}' AND o.relayed_at IS NOT NULL
                      ORDER BY o.delivered_at LIMIT @max_rows));

-- name: OutboxMarkGaveUp :exec
-- Records that the delivery of notification id to endpoint was given up (its retries spent, or a
-- failure retrying cannot mend): the endpoint leaves pending for gave_up, and the row has no
-- delivery left to try once pending is empty and it is relayed (a row whose relay rolled back
-- waits for the next relay, as in OutboxMarkDeliveredBatch). An endpoint the row was delivered to
-- is not given up (a stale task of an earlier delivery failed). Like a delivery, it waits for a
-- relay holding the row.
UPDATE outbox o
SET pending      = ARRAY(SELECT e FROM unnest(o.pending) AS e WHERE e <> @endpoint::text),
    gave_up      = CASE WHEN @endpoint::text = ANY (o.delivered || o.gave_up) THEN o.gave_up ELSE o.gave_up || @endpoint::text END,
    delivered_at = CASE WHEN o.relayed_at IS NULL OR EXISTS (SELECT 1 FROM unnest(o.pending) AS e WHERE e <> @endpoint::text)
                        THEN o.delivered_at ELSE COALESCE(o.delivered_at, now()) END
WHERE o.id = @id;

-- name: OutboxGaveUp :many
-- The notifications with a given-up delivery, by endpoint, and the creation of the oldest of them
-- (outbox_gave_up_idx): the gauge intake_outbox_gave_up and `intake outbox status`.
SELECT e::text AS endpoint, count(*)::bigint AS notifications, min(o.created_at)::timestamptz AS oldest
FROM outbox o, unnest(o.gave_up) AS e
WHERE o.gave_up <> '{}'
GROUP BY e
ORDER BY e;

-- name: OutboxLastID :one
-- The newest notification's id (0: none): `intake outbox redeliver` and `discard` act on the rows
-- there at their start, not on those given up while they run.
SELECT COALESCE(max(id), 0)::bigint AS last_id FROM outbox;

-- name: OutboxClaimRedeliver :many
-- Up to max_rows notifications after after_id, up to last_id, in order, with deliveries to send
-- again: given-up ones (to endpoint, when it is not empty), and the endpoints still pending of rows
-- relayed (or last redelivered) before stuck_before and not delivered since (their tasks lost:
-- Redis lost its data, or a give-up could not be recorded; the zero time selects none). Locked
-- until the redeliver's transaction ends. It reads the primary key's range (the OR takes no
-- partial index): one pass over the outbox per run of the command.
SELECT id, event_id, event_type, created_at, data, relayed_at, delivered_at, pending, gave_up, redeliveries
FROM outbox
WHERE id > @after_id AND id <= @last_id
  AND ((gave_up <> '{}' AND (@endpoint::text = '' OR @endpoint::text = ANY (gave_up)))
       OR (delivered_at IS NULL AND relayed_at < @stuck_before::timestamptz
           AND (@endpoint::text = '' OR @endpoint::text = ANY (pending))))
ORDER BY id
LIMIT @max_rows
FOR UPDATE;

-- name: OutboxMarkRedelivered :exec
-- Records the redelivery of claimed rows (the arrays are parallel, each row's endpoints
-- comma-separated): the endpoints leave gave_up and are pending again, the row has deliveries to
-- try again, and its redeliveries count (the generation in its tasks' ids) grows. relayed_at,
-- when its deliveries were last handed to asynq, moves to now when every endpoint still pending
-- is among those redelivered (--stuck-for measures from there); a row with another pending
-- endpoint keeps it, so that a lost task of that one is still found stuck. A row the relay has not
-- claimed yet keeps NULL, so that the relay still claims it.
UPDATE outbox o
SET relayed_at   = CASE WHEN o.relayed_at IS NOT NULL AND COALESCE(o.pending, '{}') <@ string_to_array(v.endpoints, ',')
                        THEN now() ELSE o.relayed_at END,
    gave_up      = ARRAY(SELECT e FROM unnest(o.gave_up) AS e WHERE e <> ALL (string_to_array(v.endpoints, ','))),
    pending      = ARRAY(SELECT DISTINCT e FROM unnest(COALESCE(o.pending, '{}') || string_to_array(v.endpoints, ',')) AS e ORDER BY e),
    delivered_at = NULL,
    redeliveries = o.redeliveries + 1
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@endpoints::text[]) AS endpoints) AS v
WHERE o.id = v.id;

-- name: OutboxDiscard :one
-- Drops the given-up deliveries (to endpoint, when it is not empty) of up to max_rows
-- notifications after after_id, up to last_id, in id order (outbox_gave_up_idx), and returns how
-- many it changed and the newest id among them (0: none), after which the next batch starts: they
-- are no longer counted, and once no delivery is left the purge deletes them after the retention.
-- A row another transaction holds is waited for, not skipped, and read again once unlocked: a
-- batch comes back short only when no row is left up to last_id. Its locks, max_rows rows, are
-- held for one batch only: a delivery being recorded waits for that much at most. The batch is an
-- array, updated by primary key: as "id IN (SELECT ...)" PostgreSQL planned a hash join over a
-- sequential scan of the whole outbox, in every batch (TestOutboxDiscardReadsItsBatchOnly).
WITH changed AS (
    UPDATE outbox o
    SET gave_up = CASE WHEN @endpoint::text = '' THEN '{}' ELSE array_remove(o.gave_up, @endpoint::text) END
    WHERE o.id = ANY (ARRAY(SELECT c.id FROM outbox c
                            WHERE c.gave_up <> '{}' AND c.id > @after_id AND c.id <= @last_id
                              AND (@endpoint::text = '' OR @endpoint::text = ANY (c.gave_up))
                            ORDER BY c.id
                            LIMIT @max_rows
                            FOR UPDATE))
    RETURNING o.id
)
SELECT count(*)::bigint AS notifications, COALESCE(max(id), 0)::bigint AS through_id FROM changed;
