// Package ingress serves POST /v1/events/s3: S3-compatible stores that cannot publish to SQS
// themselves (MinIO, Ceph) post their bucket notifications here through a webhook, and the handler
// forwards each body, unchanged, to the SQS queue the consumer reads.
//
// # Contract
//
//   - Authentication: "Authorization: Bearer <token>" (MinIO's webhook auth_token), compared in
//     constant time. Anything else is 401.
//   - The body is at most 1 MiB (413 beyond) and must be an event body pipeline.Decode accepts
//     (an S3 notification, MinIO's wrapper around one, the s3:TestEvent, an SNS envelope or an
//     EventBridge event). Anything else is 400 with the decode error: garbage is not forwarded.
//   - The body is sent to the queue as is; 200 with the SQS message id when the queue accepted it.
//   - 422 (event-rejected) when the queue refuses the body itself and would refuse it again: its
//     contents, or its size above the queue's MaximumMessageSize (which may be below 1 MiB: 256 KiB
//     on queues created before 2025 and on some emulators). SQS answers the latter with
//     InvalidParameterValue, which it also answers for its queue's own setup; the body is taken as
//     too long when SQS's message says so, else when it is longer than the queue's
//     MaximumMessageSize (read then, when the client can), else when it is over 256 KiB.
//   - 503 (with Retry-After) when SQS fails, so the sender keeps the event and retries (MinIO does
//     with a queue_dir).
//
// Errors are RFC 9457 problem details (application/problem+json). Requests are counted in
// intake_ingress_requests_total{outcome}.
package ingress
