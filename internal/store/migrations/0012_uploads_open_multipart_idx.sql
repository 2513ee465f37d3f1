-- 0012_uploads_open_multipart_idx: POST /v1/uploads (method multipart) and Uppy's POST
-- /s3/multipart count the owner's open multipart uploads against INTAKE_API_MAX_OPEN_MULTIPART
-- (APICountOpenMultipart). A partial index holds only the open ones, so the count reads at most the
-- limit's worth of index entries however many uploads an owner ever made. Built without blocking
-- the intents' inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS uploads_open_multipart_owner_idx;
CREATE INDEX CONCURRENTLY uploads_open_multipart_owner_idx ON uploads (owner)
    WHERE method = 'multipart' AND status = 'pending';
