-- Queries of the periodic maintenance task (worker/jobs: intent expiry, event and intent
-- retention). Each statement is one bounded batch; the task repeats it until a batch comes back
-- short.

-- name: ExpireIntents :many
-- Marks expired at most max_rows pending intents whose deadline (expires_at) is before cutoff,
-- oldest deadline first, and returns them. A multipart intent expires only once an abort of its
-- upload has been recorded in multipart_aborts (one still "aborting" has not been): until then the
-- abort path (the deadline task, the sweep's passes) still needs it pending, to find the upload and
-- abort it. An intent whose object's inspection is owed (a row in handed_off) does not expire.
-- An object that lands later still completes an expired intent (PipelineRecord). Rows another
-- transaction holds are skipped. The CTE "notified" inserts an upload.expired notification per
-- expired intent in the same transaction (the outbox).
WITH candidates AS (
    SELECT u.id
    FROM uploads u
    WHERE u.status = 'pending'
      AND u.expires_at < @cutoff
      -- A scalar sub-select (at most one row: the primary key), not EXISTS: an EXISTS under OR
      -- is planned as a hashed sub-plan that reads the whole of multipart_aborts (never pruned)
      -- in every batch once work_mem holds it.
      AND (u.multipart_upload_id IS NULL
           OR (SELECT a.outcome FROM multipart_aborts a
               WHERE a.bucket = u.bucket AND a.upload_id = u.multipart_upload_id) <> 'aborting')
      -- An object whose inspection the consumer handed off (handed_off, migration 0028) has
      -- landed: its upload is completed when the inspection records it, not expired meanwhile.
      AND NOT EXISTS (SELECT 1 FROM handed_off h WHERE h.bucket = u.bucket AND h.key = u.key)
    ORDER BY u.expires_at
    LIMIT @max_rows
    FOR UPDATE OF u SKIP LOCKED
), expired AS (
    UPDATE uploads
    SET status = 'expired', updated_at = now()
    FROM candidates
    WHERE uploads.id = candidates.id
    RETURNING uploads.id, uploads.owner, uploads.bucket, uploads.key, uploads.method,
              uploads.multipart_upload_id, uploads.expires_at, uploads.filename, uploads.metadata
), notified AS (
    -- Each expiry's upload.expired notification, in the same transaction (the outbox).
    INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
    SELECT 'expired:' || e.id, 'upload.expired', e.id, e.bucket, e.key,
           jsonb_strip_nulls(jsonb_build_object('upload_id', e.id, 'owner', e.owner, 'bucket', e.bucket,
                              'key', e.key, 'method', e.method, 'filename', e.filename, 'status', 'expired',
                              'multipart_upload_id', e.multipart_upload_id))
           || CASE WHEN e.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', e.metadata) END
    FROM expired e
    ON CONFLICT (dedupe_key) DO NOTHING
)
SELECT id, owner, bucket, key, method, multipart_upload_id, expires_at FROM expired;

-- name: PruneEvents :execrows
-- Deletes at most max_rows archived events received before cutoff, oldest first (a range scan of
-- events_received_at_id_idx); rows another transaction holds are skipped. The batch is an array,
-- deleted by primary key: as "id IN (SELECT ...)" PostgreSQL planned a hash join over a sequential
-- scan of the whole table, in every batch (TestPurgesReadTheirBatchOnly).
DELETE FROM events
WHERE id = ANY (ARRAY(SELECT e.id FROM events e
                      WHERE e.received_at < @cutoff
                      ORDER BY e.received_at
                      LIMIT @max_rows
                      FOR UPDATE SKIP LOCKED));

-- name: PruneEndedIntents :execrows
-- Deletes at most max_rows intents that ended without an upload (expired, aborted) before cutoff,
-- oldest first (a range scan of uploads_ended_updated_idx); rows another transaction holds are
-- skipped. An intent's end is the later of when it ended (updated_at) and its deadline
-- (expires_at): an object can land only before the deadline, and its event be processed up to
-- SQS's retention (14 days) later, which the retention's floor covers: until the intent is
-- deleted, a late event completes it with its checks. The
-- batch is an array, deleted by primary key: as "id IN (SELECT ...)" PostgreSQL planned a hash
-- join that read every ended intent (with the status condition below) or the whole table (without
-- it; always in the generic plan) in every batch. The DELETE checks the status again on the row it
-- deletes: an expired intent whose object lands later is completed (PipelineRecord) and stays.
-- What referenced a deleted intent: objects.upload_id becomes NULL (ON DELETE SET NULL,
-- objects_upload_id_idx); the outbox's upload_id and multipart_aborts (keyed by the S3 upload ID)
-- have no foreign key and keep theirs; its Idempotency-Key is freed (a request with it, long after
-- any client's retry, creates a new intent).
DELETE FROM uploads
WHERE id = ANY (ARRAY(SELECT u.id FROM uploads u
                      WHERE u.status IN ('expired', 'aborted')
                        AND GREATEST(u.updated_at, u.expires_at) < @cutoff
                      ORDER BY GREATEST(u.updated_at, u.expires_at)
                      LIMIT @max_rows
                      FOR UPDATE SKIP LOCKED))
  AND status IN ('expired', 'aborted');
