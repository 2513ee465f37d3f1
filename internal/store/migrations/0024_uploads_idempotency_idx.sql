-- 0024_uploads_idempotency_idx: one intent per owner and Idempotency-Key. The index makes a key
-- unique per owner (two requests racing with one key: the second insert fails, and the API answers
-- it with the first one's intent) and serves the API's lookup by key (APIGetUploadByIdempotencyKey).
-- Only rows with a key are in it. Built without blocking the API's inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS uploads_owner_idempotency_key_idx;
CREATE UNIQUE INDEX CONCURRENTLY uploads_owner_idempotency_key_idx ON uploads (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
