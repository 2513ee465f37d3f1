-- Queries of the HTTP API (internal/api). Every read is scoped to the caller (owner), so another
-- owner's rows are indistinguishable from missing ones.

-- name: APICreateUpload :exec
INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, size_declared,
                     sha256, multipart_upload_id, expires_at, metadata)
VALUES (@id, @owner, @bucket, @key, @method, @filename, @content_type, @size, @size_declared,
        @sha256, @multipart_upload_id, @expires_at, @metadata);

-- name: APIGetUpload :one
SELECT * FROM uploads WHERE id = @id AND owner = @owner;

-- name: APIGetUploadByKey :one
SELECT * FROM uploads WHERE bucket = @bucket AND key = @key AND owner = @owner;

-- name: APISetUploadStatus :execrows
-- Moves a pending intent to completed or aborted; 0 rows means it was no longer pending. An abort
-- inserts its upload.aborted notification (reason api) in the same transaction (the outbox).
WITH moved AS (
    UPDATE uploads SET status = @status::text, updated_at = now()
    WHERE uploads.id = @id AND uploads.owner = @owner AND uploads.status = 'pending'
    RETURNING uploads.*
), notified AS (
    INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
    SELECT 'aborted:' || m.id, 'upload.aborted', m.id, m.bucket, m.key,
           jsonb_strip_nulls(jsonb_build_object('upload_id', m.id, 'owner', m.owner, 'bucket', m.bucket,
                              'key', m.key, 'method', m.method, 'filename', m.filename, 'status', 'aborted',
                              'reason', 'api', 'multipart_upload_id', m.multipart_upload_id))
           || CASE WHEN m.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', m.metadata) END
    FROM moved m
    WHERE m.status = 'aborted'
    ON CONFLICT (dedupe_key) DO NOTHING
)
SELECT moved.id FROM moved;

-- name: APIRecordAbort :exec
INSERT INTO multipart_aborts (bucket, key, upload_id, initiated, reason, outcome)
VALUES (@bucket, @key, @upload_id, @initiated, 'api', @outcome)
ON CONFLICT (bucket, upload_id) DO NOTHING;

-- name: APIListObjects :many
-- Owner's objects, newest first, optionally only those of one status, of one upload, or whose key
-- starts with prefix (NULL: no filter). The cursor is the (created_at, id) of the last row of the
-- previous page; pass a NULL cursor_created_at for the first page.
SELECT * FROM objects
WHERE owner = @owner
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status)::text)
  AND (sqlc.narg(upload_id)::uuid IS NULL OR upload_id = sqlc.narg(upload_id)::uuid)
  AND (sqlc.narg(prefix)::text IS NULL OR starts_with(key, sqlc.narg(prefix)::text))
  AND (sqlc.narg(cursor_created_at)::timestamptz IS NULL
       OR (created_at, id) < (sqlc.narg(cursor_created_at)::timestamptz, sqlc.narg(cursor_id)::uuid))
ORDER BY created_at DESC, id DESC
LIMIT @max_rows;

-- name: APIObjectOfUpload :one
-- The object an upload produced (the newest row naming it), for GET /v1/uploads/{id}.
SELECT * FROM objects WHERE upload_id = @upload_id AND owner = @owner ORDER BY updated_at DESC LIMIT 1;

-- name: APIGetObject :one
SELECT * FROM objects WHERE id = @id AND owner = @owner;
