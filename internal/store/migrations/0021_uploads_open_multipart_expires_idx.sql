-- 0021_uploads_open_multipart_expires_idx: APICountOpenMultipart counts an owner's open multipart
-- uploads before their deadline only (expires_at > now(): one past it is no longer worked on, and
-- its abort is due). The partial index of 0012 gains expires_at, so that the count still reads at
-- most the limit's worth of index entries and no row (an index-only scan), however many uploads past
-- their deadline await their abort (Redis lost their tasks and the sweep has not run yet); the
-- index it replaces is dropped. Built without blocking the intents' inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS uploads_open_multipart_owner_expires_idx;
CREATE INDEX CONCURRENTLY uploads_open_multipart_owner_expires_idx ON uploads (owner, expires_at)
    WHERE method = 'multipart' AND status = 'pending';
DROP INDEX CONCURRENTLY IF EXISTS uploads_open_multipart_owner_idx;
