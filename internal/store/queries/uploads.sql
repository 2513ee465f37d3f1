-- name: CreateUpload :one
INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, sha256,
                     multipart_upload_id, expires_at)
VALUES (@id, @owner, @bucket, @key, @method, @filename, @content_type, @size, @sha256,
        @multipart_upload_id, @expires_at)
RETURNING *;

-- name: GetUpload :one
SELECT * FROM uploads WHERE id = @id;

-- name: GetUploadByKey :one
SELECT * FROM uploads WHERE bucket = @bucket AND key = @key;
