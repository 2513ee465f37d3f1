-- 0028_handed_off: the inspections the consumer handed off to the jobs workers
-- (INTAKE_CONSUMER_HASH_HANDOFF) and not yet settled. A row is written, on PostgreSQL's clock,
-- before the object:inspect task is queued in Redis and before the event's message is deleted, so
-- the promise to inspect the object outlives a Redis that loses the task: the maintenance task
-- queues the inspection again for a row still there at redrive_at (ClaimHandedOffDue). A row is
-- settled (deleted) once the object's row records an observation that covers its events
-- (objects.observed_at >= looked_up_at: S3 read after the events were received, by the task or by
-- anything else, the consumer's own inspection when the hand-off queued nothing included), and
-- given up after a bounded number of re-queued inspections that recorded nothing.
-- One row per object: a later hand-off of the same object keeps the newer of the two events.
CREATE TABLE handed_off (
    bucket       text        NOT NULL,
    key          text        NOT NULL,
    -- The event's sequencer (as the event carried it; '' when it had none), time, whether the
    -- message also removed the object, and its hash's expected time (the task's timeout grows
    -- with it).
    sequencer    text        NOT NULL,
    event_time   timestamptz,
    removal      boolean     NOT NULL,
    hash_time_ms bigint      NOT NULL CHECK (hash_time_ms >= 0),
    -- PostgreSQL's time of the consumer's lookup before its inspection (store Lookup.At, read
    -- before any S3 read of the event's processing; the latest of the hand-offs'): an observation
    -- at or after it read S3 after every handed-off event was received.
    looked_up_at timestamptz NOT NULL,
    -- PostgreSQL's time of the latest hand-off: it names the row for the maintenance task's
    -- updates, which leave a row a new hand-off replaced alone.
    handed_at    timestamptz NOT NULL DEFAULT now(),
    -- How often the maintenance task queued the inspection again (a task that was gone from
    -- Redis or had failed for good), and when it looks at the row next.
    redrives     integer     NOT NULL DEFAULT 0,
    redrive_at   timestamptz NOT NULL,
    PRIMARY KEY (bucket, key)
);
-- The maintenance task's scan of the rows due.
CREATE INDEX handed_off_redrive_at_idx ON handed_off (redrive_at);
