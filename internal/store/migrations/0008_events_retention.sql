-- 0008_events_retention: the events archive is now pruned by age (the maintenance task in
-- worker/jobs, INTAKE_EVENTS_RETENTION) through events_received_at_idx. events_bucket_key_idx
-- answers no query (`intake replay archive` selects by received_at and filters by key prefix,
-- which a (bucket, key) b-tree under the database's collation cannot serve) and costs every archived
-- event an index entry: drop it without blocking the consumer's inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS events_bucket_key_idx;
