-- 0007_multipart: multipart uploads bound to their size, fenced by their deadline.
--
-- uploads.part_size: the part size a /v1 client declared for a multipart upload (NULL: not
-- declared). With it, every part URL signs its Content-Length (part_size, the last part the rest of
-- the declared size) and part numbers beyond the declared size are refused.
ALTER TABLE uploads ADD COLUMN part_size bigint
    CHECK (part_size IS NULL OR (method = 'multipart' AND part_size > 0));

-- multipart_aborts.reason gains too_large: `complete` refused an upload whose parts sum to more than
-- the declared size or the policy's max_size, and aborted it.
ALTER TABLE multipart_aborts DROP CONSTRAINT multipart_aborts_reason_check;
ALTER TABLE multipart_aborts ADD CONSTRAINT multipart_aborts_reason_check
    CHECK (reason IN ('deadline', 'sweep', 'api', 'too_large'));

-- The sweep aborts intake's multipart uploads past their deadline (expires_at) that no abort was
-- recorded for, pending or already marked expired, page by page on (expires_at, id). This index
-- replaces 0004's, which ordered them by creation.
CREATE INDEX uploads_open_multipart_expires_idx ON uploads (bucket, expires_at, id)
    WHERE status IN ('pending', 'expired') AND multipart_upload_id IS NOT NULL;
DROP INDEX uploads_pending_multipart_created_idx;
