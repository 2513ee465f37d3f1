-- name: PipelineLookups :many
-- The upload intents of several (bucket, key) pairs at once, with the database's clock (store.Records
-- batches the lookups of concurrent messages; alone, a lookup is a batch of one). Every pair gets a
-- row; the upload columns are NULL when it has no intent. Each pair is one probe of the
-- uploads_bucket_key_key index (the arrays are parallel, as in intents.sql). looked_up_at is read
-- before the caller looks at S3, so it stamps that observation (objects.observed_at) on one clock
-- for every replica: an observation made after it is never stamped earlier than one made before it.
SELECT k.bucket::text AS bucket, k.key::text AS key, statement_timestamp()::timestamptz AS looked_up_at,
       u.id, u.owner, u.method, u.content_type, u.size, u.size_declared, u.sha256,
       u.multipart_upload_id, u.status
FROM (SELECT unnest(@buckets::text[]) AS bucket, unnest(@keys::text[]) AS key) AS k
LEFT JOIN uploads u ON u.bucket = k.bucket AND u.key = k.key;

-- name: PipelineRecord :batchone
-- Writes one observation of (bucket, key): creates the row, or replaces its state (the content
-- columns, status and reason) when the observation is newer than the row's (pipeline/doc.go,
-- "Order and idempotency"):
--   1. both say the object is absent: the object is gone either way, only 'missing' becomes
--      'deleted' (a confirmed removal), whatever the times;
--   2. else the later observed_at wins (NULL = oldest; a record without one never replaces a row
--      with one);
--   3. on the same observed_at (lookups answered by one statement) or none on either side (rows
--      from before migration 0006), the newer event: by sequencer when both have one (normalized,
--      compared under COLLATE "C"), else by event time (NULL = oldest); on an exact tie without
--      sequencers, an observed state with other content replaces the row, and between two absent
--      states deleted replaces missing.
-- The row's side of rules 2 and 3 is the newest record recorded, by the same order (observation
-- time, then event): observed_at keeps the latest observation, and tiebreak_sequencer and
-- tiebreak_event_time the event of the record that set it (migration 0020; a row no record wrote
-- since, tiebreak_set NULL, uses sequencer and event_time). A record that is older changes none of
-- them: a tie is decided against the event of the row's latest observation, not against the newer
-- event of a record observed earlier, which lost. So when rules 2 and 3 rank a set of records in
-- one order (no exact tie; at any one observation instant, all of them or none with a sequencer),
-- every order of recording them ends in the same row, the newest record's. Otherwise the order may
-- matter: on an exact tie without sequencers an observed record with other content replaces the
-- row (the last one recorded wins); at one instant, comparing by sequencer where both have one and else by event time
-- is not transitive; and when the newest record says the object is absent, another absent record
-- may give the row its label and columns (rule 1: deleted replaces missing whatever the times).
-- sequencer and event_time keep the greatest values recorded (the newest event, for diagnostics).
-- updated_at moves only when the state changes; applied tells whether it did (updated_at is set to
-- this statement's start time). The statement also completes the intent.
-- It is sent as a pgx batch: store.Records sends the records of concurrent messages in one batch,
-- which runs as one implicit transaction (one commit for all of them).
-- The verdict (status, reason and content: etag, version) has its own counter and time:
-- verdict_seq grows and verdict_at is set to this statement's start time when a record creates the
-- row or changes its verdict. The CTE "notified" then inserts the verdict's notification into the
-- outbox in the same transaction, keyed by (object, verdict_seq): a committed verdict has exactly
-- one notification, a rolled-back one none, and a record that changes no verdict none (see
-- 0009_outbox.sql).
-- An absence is a verdict only for an object intake saw present: a removal confirmed for an object
-- no record ever showed (a forged or stray removal of an upload that never landed) must notify
-- nobody, but its row stays, as a tombstone that a creation processed at the same time, which
-- looked before the removal, does not outlive. So a row created absent (missing or deleted) gets
-- verdict_at NULL and no verdict; an absence replacing an absence (missing becoming deleted) is a
-- verdict only when verdict_at is set, that is when the row's absence followed a present state
-- (which gave the verdict_at) or was marked seen present; any other change of state is a verdict.
-- A record that saw the object present but lost to an absent row whose verdict_at is NULL (it was
-- observed earlier, or at the same instant with an older event: the object was there, then went;
-- the concurrent creation above) is a late sighting: on a deleted row it gives the verdict the
-- removal did not (notified upload.deleted); on a missing row it sets verdict_at (seen present), so
-- that the removal's record, when it comes, notifies. A later real creation replaces the
-- tombstone with a verdict of its own, notified as any other.
WITH arg AS (
    -- Referenced from the SET's sub-select (which sqlc would rewrite once per assigned column).
    SELECT @observed::boolean AS observed
), up AS (
    INSERT INTO objects AS o (bucket, key, version_id, etag, size, content_type, sniffed_type, sha256,
                              width, height, owner, upload_id, status, reason, sequencer, event_time,
                              observed_at, updated_at, verdict_at, tiebreak_set, tiebreak_sequencer,
                              tiebreak_event_time)
    VALUES (@bucket, @key, sqlc.narg('version_id'), sqlc.narg('etag'), sqlc.narg('size'),
            sqlc.narg('content_type'), sqlc.narg('sniffed_type'), sqlc.narg('sha256'), sqlc.narg('width'),
            sqlc.narg('height'), sqlc.narg('owner'), sqlc.narg('upload_id'), @status, sqlc.narg('reason'),
            sqlc.narg('sequencer'), sqlc.narg('event_time'), sqlc.narg('observed_at'), statement_timestamp(),
            -- A row created absent (a tombstone, a missing object) gives no verdict (see above).
            CASE WHEN @status::text IN ('missing', 'deleted') THEN NULL ELSE statement_timestamp() END,
            true, sqlc.narg('sequencer'), sqlc.narg('event_time'))
    ON CONFLICT (bucket, key) DO UPDATE SET
        (version_id, etag, size, content_type, sniffed_type, sha256, width, height, owner, upload_id,
         status, reason, updated_at, verdict_seq, verdict_at,
         tiebreak_set, tiebreak_sequencer, tiebreak_event_time) = (
            SELECT CASE WHEN d.take THEN EXCLUDED.version_id ELSE o.version_id END,
                   CASE WHEN d.take THEN EXCLUDED.etag ELSE o.etag END,
                   CASE WHEN d.take THEN EXCLUDED.size ELSE o.size END,
                   CASE WHEN d.take THEN EXCLUDED.content_type ELSE o.content_type END,
                   CASE WHEN d.take THEN EXCLUDED.sniffed_type ELSE o.sniffed_type END,
                   CASE WHEN d.take THEN EXCLUDED.sha256 ELSE o.sha256 END,
                   CASE WHEN d.take THEN EXCLUDED.width ELSE o.width END,
                   CASE WHEN d.take THEN EXCLUDED.height ELSE o.height END,
                   CASE WHEN d.take THEN EXCLUDED.owner ELSE o.owner END,
                   CASE WHEN d.take THEN EXCLUDED.upload_id ELSE o.upload_id END,
                   CASE WHEN d.take THEN EXCLUDED.status ELSE o.status END,
                   CASE WHEN d.take THEN EXCLUDED.reason ELSE o.reason END,
                   CASE WHEN d.take AND
                             (EXCLUDED.version_id, EXCLUDED.etag, EXCLUDED.size, EXCLUDED.content_type,
                              EXCLUDED.sniffed_type, EXCLUDED.sha256, EXCLUDED.width, EXCLUDED.height,
                              EXCLUDED.owner, EXCLUDED.upload_id, EXCLUDED.status, EXCLUDED.reason)
                             IS DISTINCT FROM
                             (o.version_id, o.etag, o.size, o.content_type, o.sniffed_type, o.sha256,
                              o.width, o.height, o.owner, o.upload_id, o.status, o.reason)
                        THEN statement_timestamp() ELSE o.updated_at END,
                   -- A verdict: a new state, except an absence replacing an absence not seen present;
                   -- or a late sighting (d.late) of an object whose confirmed removal had none.
                   CASE WHEN d.take AND (EXCLUDED.status, EXCLUDED.reason, EXCLUDED.etag, EXCLUDED.version_id)
                                        IS DISTINCT FROM (o.status, o.reason, o.etag, o.version_id)
                             AND NOT (o.status IN ('deleted', 'missing') AND EXCLUDED.status IN ('deleted', 'missing')
                                      AND o.verdict_at IS NULL)
                             OR d.late AND o.status = 'deleted'
                        THEN o.verdict_seq + 1 ELSE o.verdict_seq END,
                   -- The same, and a late sighting of a missing object: seen present, not a verdict.
                   CASE WHEN d.take AND (EXCLUDED.status, EXCLUDED.reason, EXCLUDED.etag, EXCLUDED.version_id)
                                        IS DISTINCT FROM (o.status, o.reason, o.etag, o.version_id)
                             AND NOT (o.status IN ('deleted', 'missing') AND EXCLUDED.status IN ('deleted', 'missing')
                                      AND o.verdict_at IS NULL)
                             OR d.late
                        THEN statement_timestamp() ELSE o.verdict_at END,
                   true,
                   CASE WHEN d.newer THEN EXCLUDED.sequencer ELSE d.seq END,
                   CASE WHEN d.newer THEN EXCLUDED.event_time ELSE d.et END
            -- d.late: the record saw the object present before the row's absence was observed (it
            -- lost on its observation time or its event; it cannot take), and that absence was never
            -- seen present (verdict_at NULL): the object was there, then it went.
            FROM (SELECT c.seq, c.et, c.newer,
                c.newer IS FALSE AND EXCLUDED.observed_at IS NOT NULL AND o.verdict_at IS NULL
                    AND o.status IN ('deleted', 'missing') AND EXCLUDED.status NOT IN ('deleted', 'missing')
                    AND o.upload_id IS NOT DISTINCT FROM EXCLUDED.upload_id AS late,
                CASE
                WHEN EXCLUDED.observed_at IS NOT NULL
                     AND o.status IN ('deleted', 'missing') AND EXCLUDED.status IN ('deleted', 'missing')
                    THEN o.status = 'missing' AND EXCLUDED.status = 'deleted'
                WHEN c.newer IS NOT NULL
                    THEN c.newer
                WHEN NOT (SELECT observed FROM arg) OR c.seq IS NOT NULL OR EXCLUDED.sequencer IS NOT NULL
                    THEN false
                WHEN o.status IN ('deleted', 'missing') AND EXCLUDED.status IN ('deleted', 'missing')
                    THEN o.status = 'missing' AND EXCLUDED.status = 'deleted'
                ELSE EXCLUDED.etag IS DISTINCT FROM o.etag OR EXCLUDED.version_id IS DISTINCT FROM o.version_id
            END AS take
            -- c.newer: whether the record is newer than the row's newest (rules 2 and 3 up to the
            -- exact tie: NULL), whose event is c.seq and c.et.
            FROM (SELECT k.seq, k.et, CASE
                WHEN EXCLUDED.observed_at IS DISTINCT FROM o.observed_at
                    THEN COALESCE(EXCLUDED.observed_at > o.observed_at, EXCLUDED.observed_at IS NOT NULL)
                WHEN k.seq IS NOT NULL AND EXCLUDED.sequencer IS NOT NULL
                    THEN CASE WHEN EXCLUDED.sequencer <> k.seq THEN EXCLUDED.sequencer > k.seq END
                WHEN EXCLUDED.event_time IS DISTINCT FROM k.et
                    THEN COALESCE(EXCLUDED.event_time > k.et, EXCLUDED.event_time IS NOT NULL)
            END AS newer
            FROM (SELECT CASE WHEN o.tiebreak_set THEN o.tiebreak_sequencer ELSE o.sequencer END AS seq,
                         CASE WHEN o.tiebreak_set THEN o.tiebreak_event_time ELSE o.event_time END AS et) AS k
            OFFSET 0) AS c
            -- OFFSET 0 keeps the decision one subquery, evaluated once per row: flattened, it would
            -- be copied into each of the 18 assignments (measured: 1.6x the CPU per record).
            OFFSET 0) AS d),
        sequencer   = GREATEST(o.sequencer, EXCLUDED.sequencer),
        event_time  = GREATEST(o.event_time, EXCLUDED.event_time),
        observed_at = GREATEST(o.observed_at, EXCLUDED.observed_at)
    RETURNING o.*
), done AS (
    UPDATE uploads SET status = 'completed', updated_at = now()
    WHERE id = sqlc.narg('complete_intent')::uuid
      AND (status IN ('pending', 'expired')
           -- an abort that raced a complete may have marked it aborted: the object S3 showed wins
           OR (status = 'aborted' AND @status::text NOT IN ('missing', 'deleted')))
    RETURNING id
), notified AS (
    -- The notification of a verdict this statement gave (transactional outbox): only for an object
    -- of an intent, only for a status an event tells, once per verdict_seq.
    INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
    SELECT 'object:' || up.id || ':' || up.verdict_seq, 'upload.' || up.status, u.id, up.bucket, up.key,
           jsonb_strip_nulls(jsonb_build_object(
               'upload_id', u.id, 'owner', u.owner, 'bucket', up.bucket, 'key', up.key,
               'method', u.method, 'filename', u.filename, 'status', up.status, 'reason', up.reason,
               'object_id', up.id, 'size', up.size, 'content_type', up.content_type,
               'sniffed_type', up.sniffed_type, 'sha256', encode(up.sha256, 'hex'), 'etag', up.etag,
               'version_id', up.version_id, 'width', up.width, 'height', up.height))
           || CASE WHEN u.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', u.metadata) END
    FROM up JOIN uploads u ON u.id = up.upload_id
    WHERE up.verdict_at = statement_timestamp()
      AND up.status IN ('valid', 'rejected', 'deleted')
    ON CONFLICT (dedupe_key) DO NOTHING
)
SELECT (up.updated_at = statement_timestamp())::boolean AS applied, up.status, up.reason, up.etag, up.version_id
FROM up;

-- name: PipelineArchiveEvent :exec
INSERT INTO events (message_id, bucket, key, event_name, outcome, body)
VALUES (@message_id, sqlc.narg('bucket'), sqlc.narg('key'), sqlc.narg('event_name'), @outcome, @body);
