// Package api is intake's presign API: it hands out presigned S3 uploads that the validation
// pipeline will accept, records each as an intent in PostgreSQL, and lets owners list and download
// their objects. `intake run` (role api) mounts it on the shared HTTP server.
//
// # Routes
//
//	POST   /v1/uploads                 create an intent: presigned PUT, POST policy or multipart upload
//	GET    /v1/uploads/{id}[?wait=30s] the intent and, once the object landed, its verdict (long poll)
//	POST   /v1/uploads/{id}/parts      presign part uploads (multipart)
//	GET    /v1/uploads/{id}/parts      list the parts S3 holds (every page)
//	POST   /v1/uploads/{id}/complete   complete a multipart upload
//	DELETE /v1/uploads/{id}            abort a multipart upload
//	GET    /v1/objects                 the caller's objects, newest first, cursor pagination;
//	                                   filters ?status=, ?upload_id=, ?prefix=
//	GET    /v1/objects/{id}            one object
//	GET    /v1/objects/{id}/download   presigned GET, for valid objects only (409 otherwise)
//	GET    /openapi.json               the OpenAPI 3 document of every route of the public listener
//
// Uppy's @uppy/aws-s3 client (given companionEndpoint) is served on the same service with
// Companion's shapes: GET /s3/params, POST /s3/multipart, GET /s3/multipart/{uploadId},
// GET /s3/multipart/{uploadId}/{partNumber}, GET /s3/multipart/{uploadId}/batch,
// POST /s3/multipart/{uploadId}/complete and DELETE /s3/multipart/{uploadId}. Their errors are
// {"error": "..."}; every /v1 error is an RFC 9457 problem (application/problem+json) whose type is a
// stable URI under ProblemBase.
//
// Requests mean one thing: a JSON member given twice, or named in another case than its field's, is
// refused (400), as is a query parameter given twice; HEAD, which ServeMux routes to GET patterns,
// is refused (405) on the GET routes that create or sign something (the download, /s3/params and
// Uppy's part signing).
//
// # Authentication and ownership
//
// Package auth decides who calls: a tenant's static API key (X-API-Key, or Authorization: Bearer
// <key>) or a bearer JWT (HS256 shared secret, or RS256/ES256 keys from a JWKS URL; exp, iss and
// aud required). The key's owner or the token's subject is the owner. Operator keys
// (INTAKE_API_ADMIN_KEYS) act for no tenant and are refused with 403. Browser clients that cannot add
// a header may send the JWT in the INTAKE_API_AUTH_COOKIE cookie; browsers attach it to requests any
// site can trigger, GET included, so such a request must show it comes from intake's origin (scheme
// included), a listed one or a script (Sec-Fetch-Site: same-origin, a trusted Origin, or
// X-Requested-With / Uppy-Versions; see crossSite), else 403; a request carrying the cookie more
// than once (one planted by a sibling subdomain for a narrower path) is refused with 401. Only the
// owner may see or touch an upload or object: anyone else gets 404, as does a malformed id. INTAKE_API_INSECURE_DEV_AUTH accepts requests without credentials as owner
// "dev" (development only, loopback only; logged as a warning at start).
//
// # What is signed
//
// Keys are generated server-side as {prefix}/{owner}/{id}/{sanitized name}, where id is the intent's
// UUIDv7; file names with separators, "." or "..", control or format characters, invalid UTF-8 or over
// 255 bytes are refused. Declared uploads are checked against the same pipeline.Policy the consumer
// enforces (rule for the key; size and type) before anything is signed. A PUT signs Content-Type and
// Content-Length, and x-amz-checksum-sha256 when the client declares sha256 (hex). A POST policy binds
// the key, the exact Content-Type and content-length-range [size, size]. Uppy's routes do not send a
// size unless the client adds one (POST /s3/multipart's size or metadata.size): their intents are
// recorded with size_declared = false and bound by the policy's max_size instead. Expiry defaults to
// INTAKE_API_PRESIGN_EXPIRY; above INTAKE_API_MAX_PRESIGN_EXPIRY is refused; every URL is also capped
// at the expiry of the credentials that sign it (temporary STS/IRSA credentials), and the expiry
// returned is the real one. Part URLs are also capped at their upload's deadline.
//
// # Presigning cost
//
// PUT, GET and UploadPart URLs come from sigv4.Signer, a lean SigV4 query-string presigner that
// produces the SDK's exact URL (tested byte for byte) with one allocation and about 1.5 µs of CPU,
// instead of the SDK's ~55 µs and 375 allocations. POST policies use the SDK's PresignPostObject.
//
// # Status and metadata
//
// An intent may carry metadata: the app's own JSON object (at most 2 KiB of compact JSON with its
// numbers in plain decimal, as PostgreSQL renders them; no NUL characters, no exponent beyond
// ±1000), stored
// with it, returned by GET /v1/uploads/{id} and in every notification of the upload (webhooks and
// the verdict task), so that the app can correlate without a table of its own. GET
// /v1/uploads/{id}?wait=30s answers as soon as the verdict is committed, or when the wait (at most
// MaxWait) ends: it subscribes to a Waiter (the outbox Listener, PostgreSQL LISTEN/NOTIFY) before
// reading, so a verdict committed by any replica in between is not missed, and reads the database
// again on every wake-up. "done" tells whether the verdict (or an abort or expiry) is in.
//
// # Multipart uploads
//
// Creating one records the S3 upload id (and a declared part_size) in the intent and asks the
// DeadlineAborter to abort it at the multipart deadline. If that fails (Redis down) the upload is
// still created: its expires_at in PostgreSQL makes the sweep abort it after the deadline. The rest
// of its life is internal/multipart's, shared with the jobs and `intake sweep`:
//
//   - the upload is bound to its declared size (or the policy's max_size): part numbers beyond
//     the parts it takes are refused, part URLs sign their Content-Length when the client declared
//     part_size, and complete lists every part, checks the named ones and refuses, aborting the
//     upload, parts that sum to more (422 too-large);
//   - complete marks the intent completed only after S3 completed it; abort settles the intent by
//     the object at the key, so a DELETE that loses the race to a complete answers 409 and leaves
//     the intent completed (internal/multipart, "States"); a complete or a listing that loses the
//     race to an abort (or to another complete) answers 409 too, while the intent exists;
//   - a complete request is answered within CompleteBudget of its start, below the listener's write
//     timeout; a completion S3 has not finished by then goes on, and the answer (502) says so;
//   - an abort, once begun, finishes whether or not its client stays;
//   - JSON bodies are capped at 64 KiB, complete's at 2.5 MB (10,000 parts with long ETags); a part
//     list is counted before it is decoded, and refused past 10,000 parts.
//
// S3 calls run under INTAKE_API_S3_TIMEOUT each.
package api
