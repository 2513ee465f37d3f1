-- 0016_outbox_gave_up_idx: the gauge intake_outbox_gave_up (OutboxGaveUp) and `intake outbox
-- discard` read the notifications with a given-up delivery: a partial index holds only those, so
-- they read none of the delivered ones. Built without blocking the
-- outbox's inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS outbox_gave_up_idx;
CREATE INDEX CONCURRENTLY outbox_gave_up_idx ON outbox (id) WHERE gave_up <> '{}';
