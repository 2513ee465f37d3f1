-- Queries of the operator commands: intake reconcile and intake replay archive.

-- name: OpsNow :one
-- The database's clock: reconcile compares row timestamps with it, not with the client's.
SELECT now()::timestamptz AS now;

-- name: OpsListObjects :many
-- One page of a bucket's rows under prefix, in byte order of key (as S3 lists), after after_key.
-- prefix_end (store.PrefixEnd) bounds the index range from above: PostgreSQL derives no bound from
-- starts_with in a generic plan, which pgx's cached statements get after a few runs, and the last
-- page then read the rest of the bucket's index to return nothing.
SELECT key, etag, status, updated_at
FROM objects
WHERE bucket = @bucket
  AND key COLLATE "C" > @after_key::text
  AND key COLLATE "C" >= @prefix::text
  AND key COLLATE "C" < @prefix_end::text
  AND starts_with(key, @prefix::text)
ORDER BY key COLLATE "C"
LIMIT @max_rows;

-- name: OpsMarkMissing :many
-- Marks rows whose objects are gone as missing (reason 'reconcile'): an observation like the
-- pipeline's, made at observed_at (the database's time read before the HEADs that found nothing).
-- Rows already deleted/missing, changed since the reconcile run started (changed_before) or
-- observed since observed_at are left alone: a later observation wins (see objects.sql).
UPDATE objects
SET status = 'missing', reason = 'reconcile', updated_at = now(),
    observed_at = GREATEST(observed_at, @observed_at::timestamptz)
WHERE bucket = @bucket
  AND key = ANY(@keys::text[])
  AND status NOT IN ('deleted', 'missing')
  AND updated_at < @changed_before
  AND (observed_at IS NULL OR observed_at < @observed_at::timestamptz)
RETURNING key;

-- name: OpsLastEventID :one
-- The newest archived event's id (0 when none): a replay of the archive stops there, so the bodies
-- the consumer archives while the replay runs (its own resent messages among them) are not sent.
SELECT coalesce(max(id), 0)::bigint AS last_id FROM events;

-- name: OpsListEvents :many
-- One page of archived event bodies received in [since, until), optionally under a key prefix and
-- with one outcome, with id <= last_id, in order of (received_at, id), after the row after_id
-- (0: from the start). The page is one range scan of events_received_at_id_idx from the cursor
-- (after_id's received_at, after_id), whichever plan PostgreSQL caches for the prepared statement:
-- paging by id while filtering by received_at read the rest of the window for every page once the
-- generic plan (a bitmap of the window, sorted) was chosen. When the row after_id is gone (pruned
-- meanwhile), the page starts again at since: no row is skipped, and the rows the caller already
-- had come again (the same message ids).
SELECT e.id, e.message_id, e.body
FROM events e,
     (SELECT coalesce((SELECT c.received_at FROM events c WHERE c.id = @after_id),
                      '-infinity'::timestamptz) AS received_at) AS cur
WHERE e.received_at >= @since
  AND e.received_at < @until
  AND (e.received_at, e.id) > (cur.received_at, @after_id)
  AND e.id <= @last_id
  AND (@key_prefix::text = '' OR starts_with(e.key, @key_prefix::text))
  AND (@outcome::text = '' OR e.outcome = @outcome::text)
ORDER BY e.received_at, e.id
LIMIT @max_rows;
