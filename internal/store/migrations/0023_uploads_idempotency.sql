-- 0023_uploads_idempotency: POST /v1/uploads's Idempotency-Key. A client that retries a request
-- whose answer it did not get (a timeout, a dropped connection) sends the same key again and gets
-- the intent the first request created, not a second one (a second multipart upload in S3, counted
-- against the owner's open uploads). idempotency_key is the client's key (the API bounds it),
-- unique per owner (0024's index); idempotency_hash is the SHA-256 of the request's parameters, so
-- that the key sent with another request is refused instead of answered with the first one's
-- intent. Nullable, no default, no check: added without rewriting or scanning the table.
ALTER TABLE uploads ADD COLUMN idempotency_key text, ADD COLUMN idempotency_hash bytea;
