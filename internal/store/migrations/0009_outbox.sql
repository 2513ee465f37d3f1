-- 0009_outbox: notifications of verdicts (webhooks, the verdict task), written by a transactional
-- outbox, and the app's metadata of an intent.

-- The app's own small JSON object, given with the intent and returned with its status and in every
-- notification (the API checks it is an object of at most 2 KiB).
ALTER TABLE uploads ADD COLUMN metadata jsonb
    CONSTRAINT uploads_metadata_object CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object');

-- verdict_seq counts the verdicts of an object row (its status, reason and content: etag,
-- version), verdict_at is when the last one was given: PipelineRecord raises the one and sets the
-- other when a record creates the row or changes its verdict, and leaves both when a record changes
-- none of it. The outbox row of a verdict is inserted only by the statement that gave it
-- (verdict_at) and keyed by (object id, verdict_seq): a duplicate event inserts nothing, a new
-- verdict one notification.
ALTER TABLE objects ADD COLUMN verdict_seq integer NOT NULL DEFAULT 1,
                    ADD COLUMN verdict_at  timestamptz;

-- One row per notification, inserted in the same transaction as the verdict that causes it; the
-- relay (internal/outbox) turns each into asynq delivery tasks and records the endpoints still to
-- deliver to (pending); a delivery removes its endpoint; delivered_at is set when none is left.
CREATE TABLE outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- event_id is the notification's id (webhook-id), stable across retries and endpoints.
    event_id     uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    -- dedupe_key names the verdict: object:<object id>:<verdict_seq>, aborted:<upload id>,
    -- expired:<upload id>. A second insert of the same verdict does nothing.
    dedupe_key   text        NOT NULL UNIQUE,
    event_type   text        NOT NULL CHECK (event_type IN ('upload.valid', 'upload.rejected', 'upload.deleted',
                                                            'upload.aborted', 'upload.expired')),
    upload_id    uuid        NOT NULL,
    bucket       text        NOT NULL,
    key          text        NOT NULL,
    -- data is the event's "data" object as it stood when the verdict committed.
    data         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    relayed_at   timestamptz,
    pending      text[],
    delivered_at timestamptz
);
-- The relay's queue: rows not relayed yet, in order.
CREATE INDEX outbox_unrelayed_idx ON outbox (id) WHERE relayed_at IS NULL;
-- The age of the oldest undelivered notification (intake_outbox_oldest_undelivered_seconds).
CREATE INDEX outbox_undelivered_idx ON outbox (created_at) WHERE delivered_at IS NULL;

-- Every outbox row wakes, at commit, whoever listens on "<schema>.intake_outbox": the relay, and the
-- API's GET /v1/uploads/{id}?wait= of that upload (the payload is the upload id), on any replica.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.intake_outbox', NEW.upload_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_notify();
