-- 0003_upload_size_declared: Uppy's S3 routes (/s3/params, /s3/multipart) do not send the file's
-- size, so an intent created through them has no declared size. size_declared = false marks such a
-- row: its size column is 0 and means nothing, and the consumer must not compare the object's size
-- with it (the policy's max_size still applies, and POST uploads are bound by content-length-range).
ALTER TABLE uploads ADD COLUMN size_declared boolean NOT NULL DEFAULT true;
