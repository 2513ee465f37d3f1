-- 0014_outbox_delivered_at_idx: the relay's purge (OutboxPurge) deletes delivered notifications
-- older than the retention, oldest first, 5,000 at a time, every minute. Without an index on
-- delivered_at each purge read the whole retained table (a day of rows) to find none or a few. A
-- partial index holds the delivered rows only. Built without blocking the outbox's inserts, outside
-- a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS outbox_delivered_at_idx;
CREATE INDEX CONCURRENTLY outbox_delivered_at_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
