-- 0027_done_notify: every change of an objects row that makes its upload done wakes the upload's
-- long polls, outbox row or not. GET /v1/uploads/{id}?wait= sleeps until a notification on
-- "<schema>.intake_outbox" names the upload (0009: the outbox's trigger sends one per notification
-- row). Some changes make the upload done (internal/api/status.go: isVerdict, uploadStatus) without
-- any notification row, and its long polls slept until their wait ended:
--   - the completed upload's object seen gone before intake inspected it: its row is a tombstone
--     (missing or deleted, verdict_at NULL) and the upload is done once an observation at or after
--     the intent's completion (observed_at >= uploads.updated_at) is recorded, by a record that
--     creates the row, or one that only moves its observed_at (PipelineRecord);
--   - a late sighting of a missing row (PipelineRecord sets verdict_at: seen present, then gone: a
--     verdict), which notifies nothing (only a deleted row's gives upload.deleted);
--   - a row the reconcile marks missing (OpsMarkMissing), or a record turns missing, from a state
--     that was no verdict (pending: known, not inspected); missing is never notified;
--   - a row that becomes the upload's (a record sets its upload_id or owner) while its verdict
--     stays the same, which is no new verdict.
-- (The reconcile's marking of a verdict's row missing is none of them: the upload was done before,
-- and is still.) The triggers below send the same notification as 0009 (the upload id, on the
-- channel named from the table's schema) for each change of an objects row from not done to done,
-- in the writing transaction: PostgreSQL delivers it at commit, only if it commits, to the
-- listeners of every replica. A new write path cannot forget it, and the writes of an older release
-- during a rolling upgrade send it too.
--
-- The uploads row needs no trigger: it makes an upload done by becoming aborted or expired, and
-- every statement that does so (RecordMultipartAbort, ExpireIntents) writes that notification's
-- outbox row (upload.aborted, upload.expired, which apps are told about anyway). Its completion
-- sets updated_at to the completing transaction's start, so it makes the upload done only if an
-- absence observed at or after that start was committed before it. A record completes an intent
-- only with an observation of the object present (pipeline: "Only an object S3 showed completes
-- its upload"), in the same statement as its objects row, which then loses to that absence: a late
-- sighting, above, notified by this trigger. MultipartCompleted and RecordMultipartAbort are single
-- statements: the absence would have to be looked up and committed while the statement ran (and
-- the consumer looks only after S3's event of the completion). That window is left to the wait's
-- end, rather than read the upload's objects on every completion, once per upload (measured: 12 µs
-- a completion; 475 µs with a plan cached while the table was small, which scanned it whole).
--
-- Cost: the consumer records thousands of rows a second, and most records change nothing that
-- decides done (a duplicate event; a re-observation, which moves observed_at; a re-inspection of a
-- verdict). The triggers' WHEN clauses are evaluated in the executor, and only a row that may have
-- become done calls the function: an objects row of an upload in a state that can be done
-- (valid, rejected, deleted, missing) that was no verdict of that upload before (a row that was one
-- stays done, whatever else changes), with status, verdict_at, observed_at, upload_id or owner
-- changed. So a record that does not change done-ness calls nothing and sends nothing
-- (BenchmarkRecordBatch and BenchmarkRecordBatchNotified, records over existing rows, are unchanged
-- within their noise). What calls it, once per upload, is its first verdict, whose outbox row
-- notifies the same payload in the same transaction: PostgreSQL sends the two as one, and the
-- function returns without reading anything (7 to 11 µs a call in pg_stat_user_functions, of the
-- backend's 300 µs per first verdict in BenchmarkRecordBatchNewUploads). Only an
-- absence without a verdict (a tombstone of an upload, rare) reads the intent, through EXECUTE:
-- planned at each call, so never with a plan cached while the table was small, and on the trigger's
-- schema, whatever the session's search_path (an operator's psql; an install moved between
-- schemas).
--
-- CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock of objects and scans nothing: it waits for the
-- writes in progress (bounded by the migration's lock_timeout) and holds writes back only for the
-- catalog change.

-- An objects row's done-ness for its upload, before and after the change, as uploadStatus decides
-- it: a verdict (valid, rejected, or an absence with verdict_at set) is done whatever the intent;
-- an absence without one is done when the intent completed and the absence was observed at or after
-- the completion; an aborted or expired intent is done whatever its object (notified by the outbox
-- when it became so).
CREATE FUNCTION objects_done_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    same      boolean := TG_OP = 'UPDATE' AND OLD.upload_id IS NOT DISTINCT FROM NEW.upload_id
                                          AND OLD.owner IS NOT DISTINCT FROM NEW.owner;
    is_done   boolean := NEW.status IN ('valid', 'rejected')
                         OR (NEW.status IN ('deleted', 'missing') AND NEW.verdict_at IS NOT NULL);
    was_done  boolean := same AND (OLD.status IN ('valid', 'rejected')
                                   OR (OLD.status IN ('deleted', 'missing') AND OLD.verdict_at IS NOT NULL));
    u_status  text;
    u_updated timestamptz;
BEGIN
    IF was_done THEN
        RETURN NULL; -- done before, done still (the WHEN clause leaves these out already)
    END IF;
    -- A new verdict (the row was none): notified without reading the intent. When the row was an
    -- absence already done for a completed upload, this is a second, harmless, wake-up; reading the
    -- intent to tell would see it as the writing statement left it (a late sighting that also
    -- completes the intent, in one statement, would look done before), and miss a wake-up.
    IF is_done THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.intake_outbox', NEW.upload_id::text);
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT status, updated_at FROM %I.uploads WHERE id = $1', TG_TABLE_SCHEMA)
        INTO u_status, u_updated USING NEW.upload_id;
    IF u_status IS NULL OR u_status IN ('aborted', 'expired') THEN
        RETURN NULL; -- no intent, or one done by its own status
    END IF;
    is_done := is_done OR COALESCE(u_status = 'completed' AND NEW.status IN ('deleted', 'missing')
                                   AND NEW.observed_at >= u_updated, false);
    was_done := same AND COALESCE(u_status = 'completed' AND OLD.status IN ('deleted', 'missing')
                                  AND OLD.observed_at >= u_updated, false);
    IF is_done AND NOT was_done THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.intake_outbox', NEW.upload_id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER objects_done_notify_insert AFTER INSERT ON objects FOR EACH ROW
    WHEN (NEW.upload_id IS NOT NULL AND NEW.status IN ('valid', 'rejected', 'deleted', 'missing'))
    EXECUTE FUNCTION objects_done_notify();
CREATE TRIGGER objects_done_notify_update AFTER UPDATE ON objects FOR EACH ROW
    WHEN (NEW.upload_id IS NOT NULL AND NEW.status IN ('valid', 'rejected', 'deleted', 'missing')
          AND (OLD.upload_id IS DISTINCT FROM NEW.upload_id OR OLD.owner IS DISTINCT FROM NEW.owner
               OR NOT (OLD.status IN ('valid', 'rejected')
                       OR (OLD.status IN ('deleted', 'missing') AND OLD.verdict_at IS NOT NULL)))
          AND (OLD.status, OLD.verdict_at, OLD.observed_at, OLD.upload_id, OLD.owner)
              IS DISTINCT FROM (NEW.status, NEW.verdict_at, NEW.observed_at, NEW.upload_id, NEW.owner))
    EXECUTE FUNCTION objects_done_notify();
