-- 0018_events_received_at_id_idx: `intake replay archive` (OpsListEvents) pages through the events
-- received in a window. It paged by id while filtering by received_at: once PostgreSQL chose the
-- generic plan for the prepared statement (a bitmap of the whole window, then a sort), every page
-- read the rest of the window, so a replay read it quadratically. It now pages on (received_at, id),
-- a range scan of this index from the cursor to the page's last row, whatever the plan. The index
-- also serves the retention's prune (received_at < cutoff, oldest first), so it replaces
-- events_received_at_idx. Built without blocking the consumer's inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS events_received_at_id_idx;
CREATE INDEX CONCURRENTLY events_received_at_id_idx ON events (received_at, id);
DROP INDEX CONCURRENTLY IF EXISTS events_received_at_idx;
