-- 0025_uploads_ended_idx: the maintenance task deletes the intents that ended without an upload
-- (expired, aborted) once INTAKE_INTENTS_RETENTION has passed since they ended and since their
-- deadline (GREATEST(updated_at, expires_at): an object can land only before the deadline, and the
-- retention covers how late its event may come), oldest first, 1,000 at a time (PruneEndedIntents). A partial index
-- holds those rows only, by that time: each batch reads its rows' index entries and no other row,
-- however many pending and completed intents the table holds. Built without blocking the intents'
-- inserts, outside a transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS uploads_ended_updated_idx;
CREATE INDEX CONCURRENTLY uploads_ended_updated_idx ON uploads ((GREATEST(updated_at, expires_at)))
    WHERE status IN ('expired', 'aborted');
