-- Batched upload intents (store.IntentWriter): many API requests' rows in one statement, so one
-- commit (one WAL flush) serves them all. The arrays are parallel (element i of each is row i, all
-- of the same length); set-returning functions in one select list advance in lock step.
-- A NULL multipart upload id is sent as an empty string (the generated []string cannot hold NULL
-- elements), and so is a NULL idempotency key; a NULL sha256, metadata or idempotency hash is a nil
-- element of the bytea[] or jsonb[] array; a NULL part size is sent as 0.

-- A row whose Idempotency-Key its owner already used (in the table, or earlier in the same batch)
-- is skipped, not an error: the rows inserted are fewer than sent, IntentsInserted tells which
-- (store.ErrIdempotencyKeyTaken for the others' callers), and the batch's other rows commit in the
-- same statement. (An error would fail the statement and split the whole batch, down to single
-- rows, for one client's retry; RETURNING the ids would decode one per row, six allocations per
-- request, to learn what the count tells in all but that case.)
-- name: IntentsInsertBatch :execrows
INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, size_declared,
                     sha256, multipart_upload_id, part_size, expires_at, metadata, idempotency_key,
                     idempotency_hash)
SELECT unnest(@ids::uuid[]), unnest(@owners::text[]), unnest(@buckets::text[]),
       unnest(@keys::text[]), unnest(@methods::text[]), unnest(@filenames::text[]),
       unnest(@content_types::text[]), unnest(@sizes::bigint[]), unnest(@sizes_declared::boolean[]),
       unnest(@sha256s::bytea[]), NULLIF(unnest(@multipart_upload_ids::text[]), ''),
       NULLIF(unnest(@part_sizes::bigint[]), 0), unnest(@expires_ats::timestamptz[]),
       unnest(@metadatas::jsonb[]), NULLIF(unnest(@idempotency_keys::text[]), ''),
       unnest(@idempotency_hashes::bytea[])
ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;

-- name: IntentsInserted :many
-- Which of ids are rows: after IntentsInsertBatch inserted fewer rows than it was sent (ids are
-- new UUIDs: a row of one of them is this batch's).
SELECT id FROM uploads WHERE id = ANY(@ids::uuid[]);
