// Package jobsapi serves POST /v1/jobs: operators and application backends that cannot import
// worker/tasks enqueue intake's tasks over HTTP.
//
// # Request
//
//	POST /v1/jobs
//	Authorization: Bearer <API key>          (or X-API-Key: <API key>; keys from INTAKE_API_KEYS)
//	Content-Type: application/json
//
//	{"type": "multipart:sweep", "payload": {"prefix": "uploads/", "older_than": "48h"}}
//
// type is one of multipart:abort, object:inspect, multipart:sweep; payload is that task's payload
// (worker/tasks), validated the same way the handlers validate it, with unknown fields refused. A
// payload without bucket targets intake's bucket, and only intake's buckets are accepted. An abort
// without deadline runs now, is recorded with reason "api", and has the task ID "api:<upload id>"
// so that it does not collide with the upload's own deadline task. A sweep's older_than may not be
// below one minute.
//
// # Responses
//
// 202 Accepted with {"id", "type", "queue", "state", "process_at"}; an abort that is already queued
// answers 202 with "duplicate": true. Errors are RFC 9457 application/problem+json: 401
// unauthorized, 403 forbidden (bucket), 400 invalid-json / unknown-field, 413 request-too-large,
// 415 unsupported-media-type, 422 unknown-task-type / invalid-task-payload, 503 queue-unavailable.
package jobsapi
