-- name: RecordMultipartAbort :one
-- Records one abort (reason deadline|sweep|api, outcome aborted|gone) and, when the upload was
-- really aborted, moves intake's intent for it (if any) from pending to aborted and inserts its
-- upload.aborted notification in the same transaction (the outbox). initiated falls back to the
-- intent's created_at. Recording twice is harmless: the first row wins.
WITH intent AS (
    UPDATE uploads
    SET status = 'aborted', updated_at = now()
    WHERE uploads.bucket = @bucket
      AND uploads.multipart_upload_id = @upload_id::text
      AND uploads.status = 'pending'
      AND @outcome::text = 'aborted'
    RETURNING uploads.*
), notified AS (
    INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
    SELECT 'aborted:' || i.id, 'upload.aborted', i.id, i.bucket, i.key,
           jsonb_build_object('upload_id', i.id, 'owner', i.owner, 'bucket', i.bucket, 'key', i.key,
                              'method', i.method, 'filename', i.filename, 'status', 'aborted',
                              'reason', @reason::text, 'multipart_upload_id', @upload_id::text)
           || CASE WHEN i.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', i.metadata) END
    FROM intent i
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
SELECT (SELECT count(*) FROM intent)::bigint   AS intents_aborted,
       (SELECT count(*) FROM recorded)::bigint AS recorded;

-- name: StalePendingMultipart :many
-- Pending multipart intents of a bucket created before cutoff, under prefix, that no abort has been
-- recorded for yet; keyset pagination on (created_at, id).
SELECT u.id, u.key, u.multipart_upload_id::text AS upload_id, u.created_at
FROM uploads u
WHERE u.bucket = @bucket
  AND u.status = 'pending'
  AND u.multipart_upload_id IS NOT NULL
  AND u.created_at < @cutoff
  AND starts_with(u.key, @prefix::text)
  AND (u.created_at, u.id) > (@after_created_at::timestamptz, @after_id::uuid)
  AND NOT EXISTS (SELECT 1 FROM multipart_aborts a
                  WHERE a.bucket = u.bucket AND a.upload_id = u.multipart_upload_id)
ORDER BY u.created_at, u.id
LIMIT @max_rows;

-- name: ListMultipartAborts :many
-- Recorded aborts of a bucket, oldest first (tests, `intake sweep` reports).
SELECT * FROM multipart_aborts WHERE bucket = @bucket ORDER BY aborted_at, upload_id;
