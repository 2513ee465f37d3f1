-- 0017_outbox_purgeable_idx: the purge (OutboxPurge) deletes notifications with no delivery left
-- and none given up. Given-up ones have delivered_at set too (no delivery left to try) and stay
-- until redelivered or discarded: in outbox_delivered_at_idx (0014) they gathered at the oldest
-- end, where every purge read them, one heap fetch each, before reaching a row it could delete.
-- The index now holds the purgeable rows only. Built without blocking the outbox's inserts,
-- outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS outbox_delivered_at_idx;
CREATE INDEX CONCURRENTLY outbox_delivered_at_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL AND gave_up = '{}';
