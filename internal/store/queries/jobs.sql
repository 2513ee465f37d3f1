-- Queries of internal/multipart (through the store.Multipart adapter): aborts, completions and the
-- sweep's view of intake's own uploads. The file keeps its old name for history.

-- name: RecordMultipartAbort :one
-- Records one abort (reason deadline|sweep|api|too_large, outcome aborted|gone) and settles intake's
-- intent for the upload (if any) by what S3 showed after the abort, when it was looked at
-- (settle): an object at the key means the upload was completed (pending, expired or aborted →
-- completed); no object means it is aborted (pending or expired → aborted). Without settle the
-- intent is left alone. initiated falls back to the intent's created_at. Recording twice is
-- harmless: the first row wins, and the intent is settled by every call. An intent settled aborted
-- gets its upload.aborted notification in the same transaction (the outbox), once.
WITH intent AS (
    UPDATE uploads
    SET status = CASE WHEN @object_exists::boolean THEN 'completed' ELSE 'aborted' END,
        updated_at = now()
    WHERE uploads.bucket = @bucket
      AND uploads.multipart_upload_id = @upload_id::text
      AND @settle::boolean
      AND (uploads.status IN ('pending', 'expired')
           OR (@object_exists::boolean AND uploads.status = 'aborted'))
    RETURNING uploads.*
), notified AS (
    INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
    SELECT 'aborted:' || i.id, 'upload.aborted', i.id, i.bucket, i.key,
           jsonb_build_object('upload_id', i.id, 'owner', i.owner, 'bucket', i.bucket, 'key', i.key,
                              'method', i.method, 'filename', i.filename, 'status', 'aborted',
                              'reason', @reason::text, 'multipart_upload_id', @upload_id::text)
           || CASE WHEN i.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', i.metadata) END
    FROM intent i
    WHERE i.status = 'aborted'
    ON CONFLICT (dedupe_key) DO NOTHING
), recorded AS (
    INSERT INTO multipart_aborts (bucket, key, upload_id, initiated, reason, outcome)
    VALUES (@bucket, @key, @upload_id::text,
            COALESCE(sqlc.narg(initiated)::timestamptz,
                     (SELECT u.created_at FROM uploads u
                      WHERE u.bucket = @bucket AND u.multipart_upload_id = @upload_id::text)),
            @reason, @outcome::text)
    ON CONFLICT (bucket, upload_id) DO NOTHING
    RETURNING 1
)
SELECT COALESCE((SELECT status FROM intent), '')::text AS intent_status,
       (SELECT count(*) FROM recorded)::bigint          AS recorded;

-- name: MultipartCompleted :execrows
-- S3 completed the upload: its intent becomes completed, also when a racing abort had marked it
-- aborted or the expiry had marked it expired.
UPDATE uploads SET status = 'completed', updated_at = now()
WHERE bucket = @bucket
  AND multipart_upload_id = @upload_id::text
  AND status IN ('pending', 'expired', 'aborted');

-- name: MultipartIntents :many
-- intake's intents for some upload ids of a bucket (the sweep's fence: one query per listing page).
SELECT u.id, u.key, u.multipart_upload_id::text AS upload_id, u.status, u.created_at, u.expires_at
FROM uploads u
WHERE u.bucket = @bucket
  AND u.multipart_upload_id = ANY(@upload_ids::text[]);

-- name: OverdueMultipart :many
-- intake's multipart uploads of a bucket past their deadline (expires_at before now), under prefix,
-- still pending and with no abort recorded; keyset pagination on (expires_at, id), a range of
-- uploads_pending_expires_idx. (The maintenance task expires a multipart intent only once an abort
-- is recorded, so no expired intent waits for one.)
SELECT u.id, u.key, u.multipart_upload_id::text AS upload_id, u.status, u.created_at, u.expires_at
FROM uploads u
WHERE u.bucket = @bucket
  AND u.status = 'pending'
  AND u.multipart_upload_id IS NOT NULL
  AND u.expires_at < @now
  AND starts_with(u.key, @prefix::text)
  AND (u.expires_at, u.id) > (@after_expires_at::timestamptz, @after_id::uuid)
  AND NOT EXISTS (SELECT 1 FROM multipart_aborts a
                  WHERE a.bucket = u.bucket AND a.upload_id = u.multipart_upload_id)
ORDER BY u.expires_at, u.id
LIMIT @max_rows;
