-- 0007_multipart: multipart uploads bound to their size, fenced by their deadline. Every statement
-- here changes the catalog only: no table is scanned or rewritten while its lock is held.
--
-- uploads.part_size: the part size a /v1 client declared for a multipart upload (NULL: not
-- declared). With it, every part URL signs its Content-Length (part_size, the last part the rest of
-- the declared size) and part numbers beyond the declared size are refused. The new column is NULL
-- in every existing row, so the check holds for them: NOT VALID skips the scan.
ALTER TABLE uploads ADD COLUMN part_size bigint;
ALTER TABLE uploads ADD CONSTRAINT uploads_part_size_check
    CHECK (part_size IS NULL OR (method = 'multipart' AND part_size > 0)) NOT VALID;

-- multipart_aborts.reason gains too_large: `complete` refused an upload whose parts sum to more than
-- the declared size or the policy's max_size, and aborted it. The new set contains the old one, so
-- existing rows hold: NOT VALID skips the scan.
ALTER TABLE multipart_aborts DROP CONSTRAINT multipart_aborts_reason_check;
ALTER TABLE multipart_aborts ADD CONSTRAINT multipart_aborts_reason_check
    CHECK (reason IN ('deadline', 'sweep', 'api', 'too_large')) NOT VALID;

-- The sweep no longer finds intake's uploads by creation time (0004's index) but by deadline, among
-- pending intents: 0001's uploads_pending_expires_idx serves it (a multipart intent expires only once
-- an abort is recorded, so the ones to abort are pending).
DROP INDEX uploads_pending_multipart_created_idx;
