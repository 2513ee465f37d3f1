-- Queries of the HTTP API (internal/api). Every read is scoped to the caller (owner), so another
-- owner's rows are indistinguishable from missing ones.

-- name: APICreateUpload :exec
INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, size_declared,
                     sha256, multipart_upload_id, part_size, expires_at)
VALUES (@id, @owner, @bucket, @key, @method, @filename, @content_type, @size, @size_declared,
        @sha256, @multipart_upload_id, sqlc.narg(part_size), @expires_at);

-- name: APIGetUpload :one
SELECT * FROM uploads WHERE id = @id AND owner = @owner;

-- name: APIGetUploadByKey :one
SELECT * FROM uploads WHERE bucket = @bucket AND key = @key AND owner = @owner;

-- name: APIListObjects :many
-- Owner's objects, newest first. The cursor is the (created_at, id) of the last row of the previous
-- page; pass a NULL cursor_created_at for the first page.
SELECT * FROM objects
WHERE owner = @owner
  AND (sqlc.narg(cursor_created_at)::timestamptz IS NULL
       OR (created_at, id) < (sqlc.narg(cursor_created_at)::timestamptz, sqlc.narg(cursor_id)::uuid))
ORDER BY created_at DESC, id DESC
LIMIT @max_rows;

-- name: APIGetObject :one
SELECT * FROM objects WHERE id = @id AND owner = @owner;
