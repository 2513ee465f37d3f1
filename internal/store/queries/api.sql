-- Queries of the HTTP API (internal/api). Every read is scoped to the caller (owner), so another
-- owner's rows are indistinguishable from missing ones.

-- name: APICreateUpload :exec
INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, size_declared,
                     sha256, multipart_upload_id, part_size, expires_at, metadata)
VALUES (@id, @owner, @bucket, @key, @method, @filename, @content_type, @size, @size_declared,
        @sha256, @multipart_upload_id, sqlc.narg(part_size), @expires_at, @metadata);

-- name: APIGetUpload :one
SELECT * FROM uploads WHERE id = @id AND owner = @owner;

-- name: APIGetUploadByKey :one
SELECT * FROM uploads WHERE bucket = @bucket AND key = @key AND owner = @owner;

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

-- name: APIGetObject :one
SELECT * FROM objects WHERE id = @id AND owner = @owner;

-- name: APIObjectOfUpload :one
-- The object an upload produced (the newest row naming it), for GET /v1/uploads/{id}.
SELECT * FROM objects WHERE upload_id = @upload_id AND owner = @owner ORDER BY updated_at DESC LIMIT 1;

-- name: APICountOpenMultipart :one
-- The owner's open multipart uploads (pending, and before their deadline: one past it is no longer
-- worked on, and its abort is due), counted up to max_rows: the quota check needs to know only
-- whether the limit is reached (uploads_open_multipart_owner_expires_idx: a range of the owner's
-- pending ones, read without their rows).
SELECT count(*)::int AS open
FROM (SELECT 1 FROM uploads
      WHERE owner = @owner AND method = 'multipart' AND status = 'pending' AND expires_at > now()
      LIMIT @max_rows) AS o;
