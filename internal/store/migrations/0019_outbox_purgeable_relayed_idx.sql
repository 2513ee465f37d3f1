-- 0019_outbox_purgeable_relayed_idx: the purge (OutboxPurge) deletes only relayed notifications.
-- A task of a relay that rolled back (one of its enqueues failed after others succeeded) delivered
-- rows no relay had committed, and set their delivered_at although their other endpoints and their
-- verdict task were never enqueued: the backlog gauge read them as done and the purge deleted them
-- after the retention. Deliveries no longer set delivered_at on an unrelayed row, and the purge
-- also requires relayed_at, for rows an earlier release marked that way. The index of purgeable
-- rows (0017's outbox_delivered_at_idx) now holds relayed rows only, so that the purge reads none
-- it would drop; the new index is built before the old one is dropped, so the purge is never
-- without one. Built without blocking the outbox's inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS outbox_purgeable_idx;
CREATE INDEX CONCURRENTLY outbox_purgeable_idx ON outbox (delivered_at)
    WHERE delivered_at IS NOT NULL AND gave_up = '{}' AND relayed_at IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS outbox_delivered_at_idx;
