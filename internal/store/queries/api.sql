-- Queries of the HTTP API (internal/api). Every read is scoped to the caller (owner), so another
-- owner's rows are indistinguishable from missing ones.

-- name: APICreateUpload :exec
INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, size_declared,
                     sha256, multipart_upload_id, part_size, expires_at, metadata, idempotency_key,
                     idempotency_hash)
VALUES (@id, @owner, @bucket, @key, @method, @filename, @content_type, @size, @size_declared,
        @sha256, @multipart_upload_id, sqlc.narg(part_size), @expires_at, @metadata,
        sqlc.narg(idempotency_key), @idempotency_hash);

-- name: APIGetUpload :one
SELECT * FROM uploads WHERE id = @id AND owner = @owner;

-- name: APIGetUploadByKey :one
SELECT * FROM uploads WHERE bucket = @bucket AND key = @key AND owner = @owner;

-- name: APIGetUploadByIdempotencyKey :one
-- The owner's intent created with an Idempotency-Key (uploads_owner_idempotency_key_idx).
SELECT * FROM uploads WHERE owner = @owner AND idempotency_key = @idempotency_key;

-- name: APIListObjects :many
-- The owner's objects, newest first, optionally only those of one status, of one upload, or whose
-- key starts with prefix (NULL: no filter; prefix_end = store.PrefixEnd(prefix), NULL without one).
-- The cursor is the (created_at, id) of the previous page's last row, NULLs for the first page.
--
-- One branch per shape of filters, each with conditions an index serves, whatever the values:
--   upload_id: objects_upload_id_idx (one upload's rows, a handful), then sorted;
--   else prefix, narrow: objects_owner_key_c_idx (the owner's keys in [prefix, prefix_end)), then
--     sorted;
--   else prefix, wide (wide_prefix: the prefix covers the owner's whole key namespace, so that it
--     holds most of the owner's rows, which the range-then-sort branch read and sorted on every
--     page: the planner misjudges a COLLATE "C" range): the owner's rows newest first from the
--     cursor, objects_owner_status_created_idx with a status, objects_owner_created_idx without,
--     the prefix a filter;
--   else status: objects_owner_status_created_idx, from the cursor on;
--   else: objects_owner_created_idx, from the cursor on.
-- The other shapes' branches are cut off by conditions on the parameters alone: dropped from a
-- plan made with the values (a custom plan), skipped at run time by a one-time filter in a generic
-- plan (which pgx's cached statement gets once PostgreSQL finds it no costlier). Written as one
-- statement with (@x IS NULL OR col = @x) filters, a generic plan had no index condition for them
-- and read every row of the owner, or of the table, for a page. The first page's cursor is
-- (infinity, the greatest uuid), through COALESCE, for the same reason: with (@c IS NULL OR …),
-- every page read the pages before it.
SELECT * FROM (
    (SELECT * FROM objects AS by_upload
     WHERE by_upload.upload_id = sqlc.narg(upload_id)::uuid
       AND by_upload.owner = @owner
       AND (sqlc.narg(status)::text IS NULL OR by_upload.status = sqlc.narg(status)::text)
       AND (sqlc.narg(prefix)::text IS NULL OR starts_with(by_upload.key, sqlc.narg(prefix)::text))
       AND (by_upload.created_at, by_upload.id) < (COALESCE(sqlc.narg(cursor_created_at)::timestamptz, 'infinity'::timestamptz),
                                       COALESCE(sqlc.narg(cursor_id)::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
     ORDER BY by_upload.created_at DESC, by_upload.id DESC
     LIMIT @max_rows)
    UNION ALL
    (SELECT * FROM objects AS by_prefix
     WHERE sqlc.narg(upload_id)::uuid IS NULL AND NOT @wide_prefix::boolean
       AND by_prefix.owner = @owner
       AND by_prefix.key COLLATE "C" >= sqlc.narg(prefix)::text
       AND by_prefix.key COLLATE "C" < sqlc.narg(prefix_end)::text
       AND starts_with(by_prefix.key, sqlc.narg(prefix)::text)
       AND (sqlc.narg(status)::text IS NULL OR by_prefix.status = sqlc.narg(status)::text)
       AND (by_prefix.created_at, by_prefix.id) < (COALESCE(sqlc.narg(cursor_created_at)::timestamptz, 'infinity'::timestamptz),
                                       COALESCE(sqlc.narg(cursor_id)::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
     ORDER BY by_prefix.created_at DESC, by_prefix.id DESC
     LIMIT @max_rows)
    UNION ALL
    (SELECT * FROM objects AS by_wide
     WHERE sqlc.narg(upload_id)::uuid IS NULL AND @wide_prefix::boolean AND sqlc.narg(status)::text IS NULL
       AND by_wide.owner = @owner
       AND starts_with(by_wide.key, sqlc.narg(prefix)::text)
       AND (by_wide.created_at, by_wide.id) < (COALESCE(sqlc.narg(cursor_created_at)::timestamptz, 'infinity'::timestamptz),
                                       COALESCE(sqlc.narg(cursor_id)::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
     ORDER BY by_wide.created_at DESC, by_wide.id DESC
     LIMIT @max_rows)
    UNION ALL
    (SELECT * FROM objects AS by_wide_status
     WHERE sqlc.narg(upload_id)::uuid IS NULL AND @wide_prefix::boolean
       AND by_wide_status.owner = @owner
       AND by_wide_status.status = sqlc.narg(status)::text
       AND starts_with(by_wide_status.key, sqlc.narg(prefix)::text)
       AND (by_wide_status.created_at, by_wide_status.id) < (COALESCE(sqlc.narg(cursor_created_at)::timestamptz, 'infinity'::timestamptz),
                                       COALESCE(sqlc.narg(cursor_id)::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
     ORDER BY by_wide_status.created_at DESC, by_wide_status.id DESC
     LIMIT @max_rows)
    UNION ALL
    (SELECT * FROM objects AS by_status
     WHERE sqlc.narg(upload_id)::uuid IS NULL AND sqlc.narg(prefix)::text IS NULL
       AND by_status.owner = @owner
       AND by_status.status = sqlc.narg(status)::text
       AND (by_status.created_at, by_status.id) < (COALESCE(sqlc.narg(cursor_created_at)::timestamptz, 'infinity'::timestamptz),
                                       COALESCE(sqlc.narg(cursor_id)::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
     ORDER BY by_status.created_at DESC, by_status.id DESC
     LIMIT @max_rows)
    UNION ALL
    (SELECT * FROM objects AS by_owner
     WHERE sqlc.narg(upload_id)::uuid IS NULL AND sqlc.narg(prefix)::text IS NULL AND sqlc.narg(status)::text IS NULL
       AND by_owner.owner = @owner
       AND (by_owner.created_at, by_owner.id) < (COALESCE(sqlc.narg(cursor_created_at)::timestamptz, 'infinity'::timestamptz),
                                       COALESCE(sqlc.narg(cursor_id)::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
     ORDER BY by_owner.created_at DESC, by_owner.id DESC
     LIMIT @max_rows)
) AS page
ORDER BY page.created_at DESC, page.id DESC
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
