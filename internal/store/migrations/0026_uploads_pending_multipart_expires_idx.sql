-- 0026_uploads_pending_multipart_expires_idx: the sweep looks for intake's multipart uploads past
-- their deadline (OverdueMultipart: pending, an S3 upload id, expires_at before the pass's start,
-- by (expires_at, id)). It read uploads_pending_expires_idx, which holds every pending intent: the
-- PUT and POST intents past their deadline stay pending until the maintenance task expires them
-- (the expiry grace, an hour, and its period after), and at the API's rate they number millions,
-- each read and dropped by every pass. A partial index holds the pending multipart intents only, in
-- the query's order: a pass reads the overdue uploads and no other row. Built without blocking the
-- intents' inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS uploads_pending_multipart_expires_idx;
CREATE INDEX CONCURRENTLY uploads_pending_multipart_expires_idx ON uploads (bucket, expires_at, id)
    WHERE status = 'pending' AND multipart_upload_id IS NOT NULL;
