// Package problem writes RFC 9457 problem details (application/problem+json), the error format of
// every intake HTTP endpoint that speaks JSON: the presign API, POST /v1/jobs and the S3 event
// ingress.
//
// # Kinds
//
// A [Kind] is one stable problem type: a slug (the part of the type URI after [Base]), a title that
// is the same for every occurrence, and an HTTP status. Slugs never change once published; clients
// switch on the type URI. The kinds that several endpoints return live here ([Unauthorized],
// [Forbidden], [InvalidJSON], [UnknownField], [RequestTooLarge], [UnsupportedMediaType],
// [AuthUnavailable]); kinds that
// one endpoint alone returns are declared in its package as Kind values.
//
// # Writing
//
// [Kind.With] makes a [Problem] with a detail for this occurrence; [Write] sends it with the
// problem's status, Cache-Control: no-store, for 401 a Bearer WWW-Authenticate challenge and,
// for a problem with a RetryAfter, Retry-After.
package problem
