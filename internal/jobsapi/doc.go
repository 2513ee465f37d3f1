// Package jobsapi serves POST /v1/jobs: operators and application backends that cannot import
// worker/tasks enqueue intake's tasks over HTTP.
//
// # Request
//
//	POST /v1/jobs
//	Authorization: Bearer <key or JWT>       (or X-API-Key: <key>; never the auth cookie)
//	Content-Type: application/json
//
//	{"type": "multipart:sweep", "payload": {"prefix": "uploads/", "older_than": "48h"}}
//
// type is one of multipart:abort, object:inspect, multipart:sweep; payload is that task's payload
// (worker/tasks), validated the same way the handlers validate it, with unknown fields refused. A
// payload without bucket targets intake's bucket, and only intake's buckets are accepted. An abort
// without deadline runs now, is recorded with reason "api", and has the task ID "api:<upload id>"
// so that it does not collide with the upload's own deadline task. A sweep's older_than may not be
// below one minute; its prefix defaults to the configured sweep's (Config.SweepPrefix,
// INTAKE_JOBS_SWEEP_PREFIX), and one that does not start with it is refused: an operator may
// narrow the sweep, never widen it to other applications' uploads in the bucket. A prefix with
// control characters is refused.
//
// One inspection per object at a time: an inspection has the task ID tasks.InspectTaskID, taken
// while it is queued, running or waiting for a retry; a repeat meanwhile answers 409
// inspection-queued. One that failed for good (archived) is replaced by the next request.
//
// # Who may do what
//
// Operators (a key of INTAKE_API_ADMIN_KEYS, or a JWT with INTAKE_API_JWT_ADMIN_SCOPE; see package
// auth) may enqueue any of the three on any key of intake's buckets. Tenants (a key of
// INTAKE_API_KEYS, or a JWT) act on their own uploads only, as PostgreSQL records them: an abort
// must name the bucket, key and S3 upload_id of one of their pending multipart uploads (what
// POST /v1/uploads returned), an inspection the key of one of their uploads; another tenant's upload
// answers 404 as an unknown one does, and a sweep, which takes every tenant's uploads, answers 403.
//
// # Responses
//
// 202 Accepted with {"id", "type", "queue", "state", "process_at"}; an abort that is already queued
// and still to run answers 202 with "duplicate": true. An earlier abort of the same upload that
// asynq keeps archived (it failed for good) or completed is replaced by the new one (with
// Config.Inspector). Errors are RFC 9457 application/problem+json: 401
// unauthorized, 403 forbidden (bucket, or a tenant's sweep), 404 not-found (not the tenant's upload),
// 409 upload-not-pending / inspection-queued, 400 invalid-json / unknown-field, 413 request-too-large,
// 415 unsupported-media-type, 422 unknown-task-type / invalid-task-payload, 503 queue-unavailable /
// database-unavailable.
//
// # Metrics
//
// With Config.Registerer (the daemon's registry), every request is counted in the API's series,
// intake_http_requests_total{route="POST /v1/jobs", code} and
// intake_http_request_duration_seconds{route}, beside the API's own routes (internal/api registers
// the same series; whichever registers first, the other shares its collectors): the API's request
// rate and 5xx ratio (the IntakeAPIErrors alert) include it.
package jobsapi
