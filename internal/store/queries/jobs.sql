-- Queries of internal/multipart (through the store.Multipart adapter): aborts, completions and the
-- sweep's view of intake's own uploads. The file keeps its old name for history.

-- name: BeginMultipartAbort :one
-- Writes the abort about to be sent (outcome aborting) before S3 is asked, so that a process killed
-- between S3's answer and RecordMultipartAbort leaves a row behind for the sweep to resume
-- (PendingMultipartAborts). initiated falls back to the intent's created_at. Returns the outcome
-- an earlier attempt left: the empty string when this call wrote the row, 'aborting' when an
-- attempt was interrupted or runs now, 'aborted' or 'gone' when one finished.
-- Whether this call wrote the row is told by the insert itself (begun), not by looking for the row:
-- the select reads the statement's snapshot, which does not see the row the insert wrote, nor,
-- under READ COMMITTED, a row a concurrent call inserted and committed while this insert waited for
-- it (ON CONFLICT DO NOTHING then skips the insert). That concurrent attempt runs now: this call
-- gets 'aborting' (the outcome that row was committed with; its current one cannot be read here),
-- never the empty string: of two racing calls, only one begins the abort.
WITH begun AS (
    INSERT INTO multipart_aborts (bucket, key, upload_id, initiated, reason, outcome)
    VALUES (@bucket, @key, @upload_id::text,
            COALESCE(sqlc.narg(initiated)::timestamptz,
                     (SELECT u.created_at FROM uploads u
                      WHERE u.bucket = @bucket AND u.multipart_upload_id = @upload_id::text)),
            @reason, 'aborting')
    ON CONFLICT (bucket, upload_id) DO NOTHING
    RETURNING 1
)
SELECT (CASE WHEN EXISTS (SELECT 1 FROM begun) THEN ''
             ELSE COALESCE((SELECT a.outcome FROM multipart_aborts a
                            WHERE a.bucket = @bucket AND a.upload_id = @upload_id::text), 'aborting')
        END)::text AS prior;

-- name: RecordMultipartAbort :one
-- Records one abort (reason deadline|sweep|api|too_large, outcome aborted|gone) and settles intake's
-- intent for the upload (if any) by what S3 showed after the abort, when it was looked at
-- (settle): an object at the key means the upload was completed (pending, expired or aborted →
-- completed); no object means it is aborted (pending or expired → aborted). Without settle the
-- intent is left alone. initiated falls back to the intent's created_at. The row BeginMultipartAbort
-- wrote (aborting) takes the outcome and the time S3 answered; a finished row keeps its reason and
-- outcome, except that "aborted" replaces "gone": two attempts racing, the one whose abort S3
-- accepted tells what happened (an upload id S3 forgot never comes back). Recording twice is
-- otherwise harmless, and the intent is settled by every call. An intent settled aborted gets its
-- upload.aborted notification in the same transaction (the outbox), once.
WITH intent AS (
    UPDATE uploads
    SET status = CASE WHEN @object_exists::boolean THEN 'completed' ELSE 'aborted' END,
        updated_at = now()
    WHERE uploads.bucket = @bucket
      AND uploads.multipart_upload_id = @upload_id::text
      AND @settle::boolean
      AND (uploads.status IN ('pending', 'expired')
           OR (@object_exists::boolean AND uploads.status = 'aborted'))
    RETURNING uploads.*
), notified AS (
    INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
    SELECT 'aborted:' || i.id, 'upload.aborted', i.id, i.bucket, i.key,
           jsonb_build_object('upload_id', i.id, 'owner', i.owner, 'bucket', i.bucket, 'key', i.key,
                              'method', i.method, 'filename', i.filename, 'status', 'aborted',
                              'reason', @reason::text, 'multipart_upload_id', @upload_id::text)
           || CASE WHEN i.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', i.metadata) END
    FROM intent i
    WHERE i.status = 'aborted'
    ON CONFLICT (dedupe_key) DO NOTHING
), recorded AS (
    INSERT INTO multipart_aborts (bucket, key, upload_id, initiated, reason, outcome)
    VALUES (@bucket, @key, @upload_id::text,
            COALESCE(sqlc.narg(initiated)::timestamptz,
                     (SELECT u.created_at FROM uploads u
                      WHERE u.bucket = @bucket AND u.multipart_upload_id = @upload_id::text)),
            @reason, @outcome::text)
    ON CONFLICT (bucket, upload_id) DO UPDATE
    SET outcome = EXCLUDED.outcome, aborted_at = now()
    WHERE multipart_aborts.outcome = 'aborting'
       OR (multipart_aborts.outcome = 'gone' AND EXCLUDED.outcome = 'aborted')
    RETURNING 1
)
SELECT COALESCE((SELECT status FROM intent), '')::text AS intent_status,
       (SELECT count(*) FROM recorded)::bigint          AS recorded;

-- name: MultipartCompleted :execrows
-- S3 completed the upload: its intent becomes completed, also when a racing abort had marked it
-- aborted or the expiry had marked it expired.
UPDATE uploads SET status = 'completed', updated_at = now()
WHERE bucket = @bucket
  AND multipart_upload_id = @upload_id::text
  AND status IN ('pending', 'expired', 'aborted');

-- name: MultipartIntents :many
-- intake's intents for some upload ids of a bucket (the sweep's fence: one query per listing page).
SELECT u.id, u.key, u.multipart_upload_id::text AS upload_id, u.status, u.created_at, u.expires_at
FROM uploads u
WHERE u.bucket = @bucket
  AND u.multipart_upload_id = ANY(@upload_ids::text[]);

-- name: OverdueMultipart :many
-- intake's multipart uploads of a bucket past their deadline (expires_at before @now), under prefix,
-- still pending and with no abort recorded; keyset pagination on (expires_at, id), a range of
-- uploads_pending_multipart_expires_idx (0026: the pending PUT and POST intents past their deadline,
-- millions at the API's rate until the maintenance task expires them, are not in it). The sweep passes as @now its start less the grace after a deadline
-- (worker/tasks.AbortGrace): a complete accepted just before the deadline may still be running, so
-- an upload is overdue only once the grace has passed too. (The maintenance task expires a
-- multipart intent only once an abort is recorded, so no expired intent waits for one.)
SELECT u.id, u.key, u.multipart_upload_id::text AS upload_id, u.status, u.created_at, u.expires_at
FROM uploads u
WHERE u.bucket = @bucket
  AND u.status = 'pending'
  AND u.multipart_upload_id IS NOT NULL
  AND u.expires_at < @now
  AND starts_with(u.key, @prefix::text)
  AND (u.expires_at, u.id) > (@after_expires_at::timestamptz, @after_id::uuid)
  AND NOT EXISTS (SELECT 1 FROM multipart_aborts a
                  WHERE a.bucket = u.bucket AND a.upload_id = u.multipart_upload_id)
ORDER BY u.expires_at, u.id
LIMIT @max_rows;

-- name: PendingMultipartAborts :many
-- Aborts of a bucket under prefix written by BeginMultipartAbort before started_before and never
-- settled: the process that sent them died (or could not record S3's answer) in between. known says
-- whether intake has an intent for the upload. Keyset pagination on (aborted_at, upload_id), a range
-- of multipart_aborts_aborting_idx; started_before bounds the pass by what was there when it began.
SELECT a.key, a.upload_id, a.initiated, a.reason, a.aborted_at,
       EXISTS (SELECT 1 FROM uploads u
               WHERE u.multipart_upload_id = a.upload_id AND u.bucket = a.bucket) AS known
FROM multipart_aborts a
WHERE a.bucket = @bucket
  AND a.outcome = 'aborting'
  AND a.aborted_at < @started_before
  AND starts_with(a.key, @prefix::text)
  AND (a.aborted_at, a.upload_id) > (@after_aborted_at::timestamptz, @after_upload_id::text)
ORDER BY a.aborted_at, a.upload_id
LIMIT @max_rows;

-- name: BeginMultipartAborts :many
-- BeginMultipartAbort for many uploads of one bucket with one reason, in one statement and one
-- commit (the sweep begins a page of aborts at once). Returns each upload id with the outcome an
-- earlier attempt left, as BeginMultipartAbort: the empty string when this call wrote the row;
-- 'aborting' also for a row a concurrent call committed while this insert waited for it, which the
-- statement's snapshot does not see.
WITH input AS (
    SELECT unnest(@keys::text[]) AS key, unnest(@upload_ids::text[]) AS upload_id,
           unnest(@initiated::timestamptz[]) AS initiated
), begun AS (
    INSERT INTO multipart_aborts (bucket, key, upload_id, initiated, reason, outcome)
    SELECT @bucket, i.key, i.upload_id, i.initiated, @reason, 'aborting'
    FROM input i
    ON CONFLICT (bucket, upload_id) DO NOTHING
    RETURNING upload_id
)
SELECT i.upload_id::text AS upload_id,
       (CASE WHEN i.upload_id IN (SELECT b.upload_id FROM begun b) THEN ''
             ELSE COALESCE(a.outcome, 'aborting')
        END)::text AS prior
FROM input i
LEFT JOIN multipart_aborts a ON a.bucket = @bucket AND a.upload_id = i.upload_id;
