-- Queries of the consumer's durable hash hand-off (migration 0028; worker/jobs handoff.go): a row
-- per object whose inspection the consumer handed off to the jobs workers, written before the
-- task is queued, settled once an observation of the object made after it is recorded, queued
-- again by the maintenance task when neither happened in time.

-- name: HandOffInspection :exec
-- Records that the inspection of (bucket, key) is owed for an event, before its object:inspect
-- task is queued and the event's message deleted; looked_up_at is the consumer's lookup time (the
-- settle rule's bound). A later hand-off of the same object keeps the newer event (by sequencer
-- when both have one, else by event time: S3 delivers late and twice), the later lookup time (the
-- earlier one for the same event received again) and the longer hash, and starts the row's schedule again: the maintenance task looks at it
-- redrive_after seconds from now, once the task has had its time. Without looked_up_at, now().
INSERT INTO handed_off (bucket, key, sequencer, event_time, removal, hash_time_ms, looked_up_at, redrive_at)
VALUES (@bucket, @key, @sequencer, @event_time, @removal, @hash_time_ms,
        coalesce(sqlc.narg('looked_up_at')::timestamptz, now()),
        now() + make_interval(secs => @redrive_after_secs::float8))
ON CONFLICT (bucket, key) DO UPDATE
SET (sequencer, event_time, removal) = (
        SELECT CASE WHEN newer THEN excluded.sequencer ELSE handed_off.sequencer END,
               CASE WHEN newer THEN excluded.event_time ELSE handed_off.event_time END,
               CASE WHEN newer THEN excluded.removal ELSE handed_off.removal END
        FROM (SELECT CASE
                  WHEN excluded.sequencer <> '' AND handed_off.sequencer <> ''
                      THEN excluded.sequencer COLLATE "C" > handed_off.sequencer COLLATE "C"
                  -- A missing time is the oldest (as pipeline.Newer and PipelineRecord have it).
                  ELSE coalesce(excluded.event_time > handed_off.event_time, excluded.event_time IS NOT NULL)
              END AS newer) n),
    hash_time_ms = GREATEST(handed_off.hash_time_ms, excluded.hash_time_ms),
    -- The same event received again keeps its bound (it was received before it: an observation
    -- since covers it, a task's that looked meanwhile included); another takes the later one.
    looked_up_at = CASE WHEN excluded.sequencer <> '' AND excluded.sequencer = handed_off.sequencer
                        THEN handed_off.looked_up_at
                        ELSE GREATEST(handed_off.looked_up_at, excluded.looked_up_at) END,
    handed_at = now(), redrives = 0, redrive_at = excluded.redrive_at;

-- name: SettleHandedOff :execrows
-- Deletes the hand-off row of (bucket, key) when the object's row records an observation that
-- covers its events (observed_at, PostgreSQL's time read before that S3 read, at or after
-- looked_up_at, the consumer's lookup time after it received them): S3 was read after the events,
-- whoever read it. An object:inspect task carrying an event runs it once it has recorded its
-- verdict.
DELETE FROM handed_off h
USING objects o
WHERE h.bucket = @bucket AND h.key = @key
  AND o.bucket = h.bucket AND o.key = h.key
  AND o.observed_at >= h.looked_up_at;

-- name: SettleHandedOffDue :execrows
-- SettleHandedOff for at most max_rows rows due before cutoff, oldest first (the maintenance
-- task's first step: rows whose task recorded its verdict but did not settle them, and rows whose
-- object something else observed since: the event's own processing when its hand-off queued
-- nothing, a reconcile, a jobs pod of an older release). Rows another transaction holds are skipped.
DELETE FROM handed_off
WHERE (bucket, key) IN (
    SELECT h.bucket, h.key
    FROM handed_off h
    JOIN objects o ON o.bucket = h.bucket AND o.key = h.key
    WHERE h.redrive_at < @cutoff AND o.observed_at >= h.looked_up_at
    ORDER BY h.redrive_at
    LIMIT @max_rows
    FOR UPDATE OF h SKIP LOCKED);

-- name: ClaimHandedOffDue :many
-- Takes at most max_rows rows due before cutoff whose object has no observation recorded that
-- covers their events, oldest first, and moves their next look recheck_secs ahead (so a run, whose
-- cutoff is its start, takes each row once, and another replica's run does not take it too), for
-- the maintenance task to queue their inspection again. Rows another transaction holds are
-- skipped.
UPDATE handed_off h
SET redrive_at = now() + make_interval(secs => @recheck_secs::float8)
WHERE (h.bucket, h.key) IN (
    SELECT d.bucket, d.key
    FROM handed_off d
    WHERE d.redrive_at < @cutoff
      AND NOT EXISTS (SELECT 1 FROM objects o
                      WHERE o.bucket = d.bucket AND o.key = d.key AND o.observed_at >= d.looked_up_at)
    ORDER BY d.redrive_at
    LIMIT @max_rows
    FOR UPDATE OF d SKIP LOCKED)
RETURNING h.bucket, h.key, h.sequencer, h.event_time, h.removal, h.hash_time_ms, h.handed_at, h.redrives;

-- name: HandedOffStillOwed :one
-- Whether the row of (bucket, key) handed off at handed_at is still there (no new hand-off
-- replaced it) and not covered by an observation of its object: the maintenance task asks it
-- before it queues the inspection again, as the row's task may have settled it since the claim.
SELECT EXISTS (
    SELECT 1 FROM handed_off h
    WHERE h.bucket = @bucket AND h.key = @key AND h.handed_at = @handed_at
      AND NOT EXISTS (SELECT 1 FROM objects o
                      WHERE o.bucket = h.bucket AND o.key = h.key AND o.observed_at >= h.looked_up_at)
) AS owed;

-- name: RedrivenHandedOff :execrows
-- Counts one more inspection queued again for the row of (bucket, key) handed off at handed_at,
-- and moves its next look recheck_secs ahead. A row a new hand-off replaced since is left alone.
UPDATE handed_off
SET redrives = redrives + 1, redrive_at = now() + make_interval(secs => @recheck_secs::float8)
WHERE bucket = @bucket AND key = @key AND handed_at = @handed_at;

-- name: GiveUpHandedOff :execrows
-- Deletes the row of (bucket, key) handed off at handed_at, whose inspections queued again all
-- ended without recording the object (the maintenance task logs it). A row a new hand-off
-- replaced since, or an observation of its object covers since (settled at the next run), is left
-- alone.
DELETE FROM handed_off h
WHERE h.bucket = @bucket AND h.key = @key AND h.handed_at = @handed_at
  AND NOT EXISTS (SELECT 1 FROM objects o
                  WHERE o.bucket = h.bucket AND o.key = h.key AND o.observed_at >= h.looked_up_at);
