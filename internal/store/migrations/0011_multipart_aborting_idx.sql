-- 0011_multipart_aborting_idx: the sweep's pass over interrupted aborts (PendingMultipartAborts)
-- reads the few rows still "aborting" of a bucket, by age: a partial index holds only those, so it
-- stays small however many aborts were ever recorded. Built without blocking the aborts' inserts,
-- outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS multipart_aborts_aborting_idx;
CREATE INDEX CONCURRENTLY multipart_aborts_aborting_idx ON multipart_aborts (bucket, aborted_at, upload_id)
    WHERE outcome = 'aborting';
