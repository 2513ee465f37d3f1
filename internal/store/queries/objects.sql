-- name: PipelineIntents :many
-- The upload intents of several (bucket, key) pairs at once (store.Records batches the lookups of
-- concurrent messages; alone, a lookup is a batch of one). A pair without an intent has no row. Each
-- pair is one probe of the uploads_bucket_key_key index (the arrays are parallel, as in
-- intents.sql).
SELECT u.bucket, u.key, u.id, u.owner, u.method, u.content_type, u.size, u.size_declared, u.sha256,
       u.multipart_upload_id, u.status
FROM (SELECT unnest(@buckets::text[]) AS bucket, unnest(@keys::text[]) AS key) AS k
JOIN uploads u ON u.bucket = k.bucket AND u.key = k.key;

-- name: PipelineRecord :batchone
-- The CTE "up" creates the row of (bucket, key), or replaces it only if the new state is newer: by
-- sequencer when both have one (normalized, compared under COLLATE "C"), else by event time (NULL =
-- oldest). On an exact tie without sequencers, an observed state (what S3 showed during this
-- processing) replaces a row with different content; between two absent states, deleted replaces
-- missing. The statement also reads back a row it left unchanged and completes the intent (instead
-- of three statements). applied tells whether the row changed. Data-modifying CTEs always run to
-- completion. It is sent as a pgx batch: store.Records sends the records of concurrent messages in
-- one batch, which runs as one implicit transaction (one commit for all of them).
-- When the upsert waited for a concurrent insert of the same key and then left it unchanged, the
-- read-back (which uses the statement's snapshot) may return no row: the caller reads it again.
-- The CTE "notified" inserts the verdict's notification into the outbox in the same transaction:
-- a committed verdict has exactly one, a rolled-back one none (see 0009_outbox.sql).
WITH up AS (
    INSERT INTO objects AS o (bucket, key, version_id, etag, size, content_type, sniffed_type, sha256,
                              width, height, owner, upload_id, status, reason, sequencer, event_time)
    VALUES (@bucket, @key, sqlc.narg('version_id'), sqlc.narg('etag'), sqlc.narg('size'),
            sqlc.narg('content_type'), sqlc.narg('sniffed_type'), sqlc.narg('sha256'), sqlc.narg('width'),
            sqlc.narg('height'), sqlc.narg('owner'), sqlc.narg('upload_id'), @status, sqlc.narg('reason'),
            sqlc.narg('sequencer'), sqlc.narg('event_time'))
    ON CONFLICT (bucket, key) DO UPDATE SET
        version_id   = EXCLUDED.version_id,
        etag         = EXCLUDED.etag,
        size         = EXCLUDED.size,
        content_type = EXCLUDED.content_type,
        sniffed_type = EXCLUDED.sniffed_type,
        sha256       = EXCLUDED.sha256,
        width        = EXCLUDED.width,
        height       = EXCLUDED.height,
        owner        = EXCLUDED.owner,
        upload_id    = EXCLUDED.upload_id,
        status       = EXCLUDED.status,
        reason       = EXCLUDED.reason,
        sequencer    = EXCLUDED.sequencer,
        event_time   = EXCLUDED.event_time,
        verdict_seq  = o.verdict_seq + CASE
            WHEN (o.status, o.reason, o.etag, o.version_id)
                 IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.reason, EXCLUDED.etag, EXCLUDED.version_id)
            THEN 1 ELSE 0 END,
        updated_at   = now()
    WHERE CASE
        WHEN o.sequencer IS NOT NULL AND EXCLUDED.sequencer IS NOT NULL
            THEN EXCLUDED.sequencer > o.sequencer
        WHEN EXCLUDED.event_time IS DISTINCT FROM o.event_time
            THEN COALESCE(EXCLUDED.event_time > o.event_time, EXCLUDED.event_time IS NOT NULL)
        WHEN NOT @observed::boolean OR o.sequencer IS NOT NULL OR EXCLUDED.sequencer IS NOT NULL
            THEN false
        WHEN o.status IN ('deleted', 'missing') AND EXCLUDED.status IN ('deleted', 'missing')
            THEN o.status = 'missing' AND EXCLUDED.status = 'deleted'
        ELSE EXCLUDED.etag IS DISTINCT FROM o.etag OR EXCLUDED.version_id IS DISTINCT FROM o.version_id
    END
    RETURNING o.*
), done AS (
    UPDATE uploads SET status = 'completed', updated_at = now()
    WHERE id = sqlc.narg('complete_intent')::uuid
      AND (status IN ('pending', 'expired')
           -- an abort that raced a complete may have marked it aborted: the object S3 showed wins
           OR (status = 'aborted' AND @status::text NOT IN ('missing', 'deleted')))
    RETURNING id
), notified AS (
    -- The notification of the verdict, in the same transaction (transactional outbox): only for
    -- an object of an intent, only for a status an event tells, and at most once per verdict_seq.
    INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
    SELECT 'object:' || up.id || ':' || up.verdict_seq, 'upload.' || up.status, u.id, up.bucket, up.key,
           jsonb_strip_nulls(jsonb_build_object(
               'upload_id', u.id, 'owner', u.owner, 'bucket', up.bucket, 'key', up.key,
               'method', u.method, 'filename', u.filename, 'status', up.status, 'reason', up.reason,
               'object_id', up.id, 'size', up.size, 'content_type', up.content_type,
               'sniffed_type', up.sniffed_type, 'sha256', encode(up.sha256, 'hex'), 'etag', up.etag,
               'version_id', up.version_id, 'width', up.width, 'height', up.height))
           || CASE WHEN u.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', u.metadata) END
    FROM up JOIN uploads u ON u.id = up.upload_id
    WHERE up.status IN ('valid', 'rejected', 'deleted')
    ON CONFLICT (dedupe_key) DO NOTHING
)
SELECT true AS applied, up.status, up.reason, up.etag, up.version_id FROM up
UNION ALL
SELECT false AS applied, cur.status, cur.reason, cur.etag, cur.version_id FROM objects cur
WHERE cur.bucket = @bucket AND cur.key = @key AND NOT EXISTS (SELECT 1 FROM up);

-- name: PipelineGetObject :one
SELECT * FROM objects WHERE bucket = @bucket AND key = @key;

-- name: PipelineListObjects :many
-- Every row of a bucket, by key (tests and operators).
SELECT * FROM objects WHERE bucket = @bucket ORDER BY key;

-- name: PipelineArchiveEvent :exec
INSERT INTO events (message_id, bucket, key, event_name, outcome, body)
VALUES (@message_id, sqlc.narg('bucket'), sqlc.narg('key'), sqlc.narg('event_name'), @outcome, @body);
