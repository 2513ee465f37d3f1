-- 0001_init: uploads (intents), objects (what landed), events (raw archive), multipart_aborts.

CREATE TABLE uploads (
    id                  uuid        PRIMARY KEY,
    owner               text        NOT NULL,
    bucket              text        NOT NULL,
    key                 text        NOT NULL,
    method              text        NOT NULL CHECK (method IN ('put', 'post', 'multipart')),
    filename            text        NOT NULL,
    content_type        text        NOT NULL,
    size                bigint      NOT NULL CHECK (size >= 0),
    sha256              bytea       CHECK (sha256 IS NULL OR length(sha256) = 32),
    multipart_upload_id text,
    status              text        NOT NULL DEFAULT 'pending'
                                    CHECK (status IN ('pending', 'completed', 'aborted', 'expired')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uploads_bucket_key_key UNIQUE (bucket, key)
);
-- Owner listings, newest first, cursor on (created_at, id).
CREATE INDEX uploads_owner_created_idx ON uploads (owner, created_at DESC, id DESC);
CREATE UNIQUE INDEX uploads_multipart_upload_id_idx ON uploads (multipart_upload_id)
    WHERE multipart_upload_id IS NOT NULL;
-- Pending intents by deadline (expiry, multipart sweeps of known uploads).
CREATE INDEX uploads_pending_expires_idx ON uploads (expires_at) WHERE status = 'pending';

CREATE TABLE objects (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    bucket        text        NOT NULL,
    key           text        NOT NULL,
    version_id    text,
    etag          text,
    size          bigint,
    content_type  text,
    sniffed_type  text,
    sha256        bytea       CHECK (sha256 IS NULL OR length(sha256) = 32),
    width         integer,
    height        integer,
    owner         text,
    upload_id     uuid        REFERENCES uploads (id) ON DELETE SET NULL,
    status        text        NOT NULL
                              CHECK (status IN ('pending', 'valid', 'rejected', 'deleted', 'missing')),
    reason        text,
    -- sequencer is stored normalized (upper-case hex right-padded to 64), so that a plain "C"
    -- collation comparison equals S3's rule (pad the shorter one, then compare).
    sequencer     text        COLLATE "C",
    event_time    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT objects_bucket_key_key UNIQUE (bucket, key)
);
CREATE INDEX objects_owner_created_idx ON objects (owner, created_at DESC, id DESC) WHERE owner IS NOT NULL;
CREATE INDEX objects_upload_id_idx ON objects (upload_id) WHERE upload_id IS NOT NULL;

CREATE TABLE events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    bucket      text,
    key         text,
    event_name  text,
    outcome     text        NOT NULL,
    body        text        NOT NULL
);
CREATE INDEX events_received_at_idx ON events (received_at);
CREATE INDEX events_bucket_key_idx ON events (bucket, key);

CREATE TABLE multipart_aborts (
    bucket      text        NOT NULL,
    key         text        NOT NULL,
    upload_id   text        NOT NULL,
    initiated   timestamptz,
    aborted_at  timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL CHECK (reason IN ('deadline', 'sweep', 'api')),
    outcome     text        NOT NULL CHECK (outcome IN ('aborted', 'gone')),
    PRIMARY KEY (bucket, upload_id)
);
CREATE INDEX multipart_aborts_aborted_at_idx ON multipart_aborts (aborted_at);
