-- Queries of the operator commands: intake reconcile and intake replay archive.

-- name: OpsNow :one
-- The database's clock: reconcile compares row timestamps with it, not with the client's.
SELECT now()::timestamptz AS now;

-- name: OpsListObjects :many
-- One page of a bucket's rows under prefix, in byte order of key (as S3 lists), after after_key.
SELECT key, etag, status, updated_at
FROM objects
WHERE bucket = @bucket
  AND key COLLATE "C" > @after_key::text
  AND key COLLATE "C" >= @prefix::text
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
-- with one outcome, by id in (after_id, last_id].
SELECT id, message_id, body
FROM events
WHERE received_at >= @since
  AND received_at < @until
  AND (@key_prefix::text = '' OR starts_with(key, @key_prefix::text))
  AND (@outcome::text = '' OR outcome = @outcome::text)
  AND id > @after_id
  AND id <= @last_id
ORDER BY id
LIMIT @max_rows;
