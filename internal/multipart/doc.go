// Package multipart is intake's one implementation of what happens to an S3 multipart upload after
// its creation: listing its parts, completing it within a size bound, aborting it and recording
// the abort, and sweeping a bucket's stale uploads. The API's /v1 and Uppy routes, the jobs'
// multipart:abort and multipart:sweep handlers and `intake sweep` all call one [Service]; its
// PostgreSQL side is the small [Store] interface (internal/store.Multipart), its S3 side [S3API].
//
// # Part numbers and sizes
//
// [CheckPartNumbers] is the one validator of part numbers (1..10,000, none twice). A [Plan] binds
// an upload to its size: with a declared part size every part URL signs its Content-Length (the
// last part the rest), and part numbers beyond the parts the size takes are refused; without one,
// part numbers beyond size/5 MiB (S3's minimum part size, the last part aside) are refused.
//
// # Complete
//
// [Service.Complete] lists every part S3 holds (all pages), checks that each named part was
// uploaded with the ETag the client names, and sums their sizes. Above the declared size, or the
// policy's max_size when none was declared, it aborts the upload (reason too_large) and refuses
// with a [TooLargeError]. Since S3 only joins parts whose ETag matches, the parts it joins are the
// ones counted. Only after S3 answers does it mark the intent completed.
//
// # States
//
// An intent's status follows S3, whatever the order in which a complete and an abort of the same
// upload run (a client racing its own DELETE, the deadline task, the sweep):
//
//   - complete marks the intent completed only after S3 completed the upload, and then also when a
//     racing abort had already marked it aborted (pending, expired or aborted → completed);
//   - abort does not trust S3's answer to the abort alone: S3 may report an abort of an upload that
//     completed moments before as done (AWS does, for a while), or as NoSuchUpload ("gone"), and a
//     complete in flight may land either side of it. After the abort it looks at the key (HEAD):
//     an object there means the upload completed (intake's keys are unique per intent) and the
//     intent becomes completed; no object means it becomes aborted (from pending or expired only,
//     so it never overrides a completion recorded since). The outcome recorded in
//     multipart_aborts is what S3 answered: "aborted" or "gone" (see below for a resumed abort);
//   - the consumer's ObjectCreated event for the key completes the intent as well (pending,
//     expired or aborted → completed), which covers an abort that looked at the key a moment
//     before a racing complete made the object visible.
//
// One rule for "gone", then, wherever the abort comes from: the object at the key decides. Uploads
// intake did not create (found only by the sweep's listing) have no intent and are not looked at.
// An object found there also means the upload's event, which would have cancelled the abort, is
// late or was never sent: with [AbortRequest.Inspect] (the jobs' abort and sweep tasks pass the
// pipeline) [Service.Abort] has the object inspected once the outcome is recorded, the one place
// that does it for both.
//
// # Aborts are recorded before they are sent
//
// [Service.Abort] writes its multipart_aborts row with outcome "aborting" before it calls S3, and
// settles it to "aborted" or "gone" once S3 has answered (the sweep writes the rows of a listing
// page in one statement). When PostgreSQL cannot take that first row, nothing is sent. A process killed between S3's answer and the record leaves the row
// "aborting": without it, an upload intake did not create would be aborted and never recorded (S3
// no longer lists it, so no sweep finds it again). The next attempt (a retried task, or the sweep's
// third pass over rows older than [ResumeAfter]) sees the row and knows the abort may have been
// sent: an upload S3 no longer knows is then recorded "aborted", not "gone" (unless an object
// stands at the key of one of intake's uploads: the client completed it). Two attempts racing
// on one upload reconcile the same way: "aborted" replaces "gone", never the reverse. An intent
// with an abort still "aborting" does not expire.
//
// # Sweep and deadlines
//
// [Service.Sweep] lists every open upload of the bucket (MinIO lists nothing for a folder prefix, so
// the prefix is applied client-side unless [Config.ServerSidePrefix]). For each listing page it asks
// PostgreSQL which uploads are intake's: those are aborted once their deadline (the expires_at
// promised to the client) and the grace after it (worker/tasks.AbortGrace, two minutes) have
// passed, never before, whatever their age; uploads intake did not
// create are aborted when initiated before now-OlderThan (one whose initiation the store leaves
// unset, or gives after the sweep's start, has no age to judge and is kept). The listing is
// followed for at most [MaxListPages] pages, and refused when its markers go back. Then it aborts, by upload id, intake's
// uploads past their deadline that the listing did not show and no abort was recorded for: the
// delayed abort task was never scheduled (Redis was down when the upload was created) or the store
// lists no uploads at all. So PostgreSQL's deadline, not Redis, guarantees that every upload intake
// created is aborted within one sweep period of its deadline and grace. Last, it resumes the aborts
// begun more than [ResumeAfter] ago and never recorded (above).
//
// The grace is what a complete the API accepted just before the deadline needs to finish: the API
// refuses a complete only from the deadline on, and [Service.Complete] ends within
// [MaxCompleteDuration] (its ListParts pages and CompleteMultipartUpload), less than the grace; a
// part upload to a URL signed up to the deadline may also still be sending its bytes. The deadline
// task keeps it too: [Service.Abort] with ReasonDeadline refuses, with a [NotDueError], to abort
// one of intake's uploads before the expires_at PostgreSQL holds for it plus the grace, whatever
// deadline the task carries (whoever wrote it into Redis). An abort for the owner or an operator
// (ReasonAPI) is not held to it: POST /v1/jobs checks the owner, and Redis access is an operator's.
//
// # PostgreSQL calls
//
// Each PostgreSQL call of an abort or a sweep is bounded by [Config.StoreTimeout] (default
// [StoreTimeout], 30 s): a PostgreSQL that stops answering fails it with an [ErrStore] error,
// which the jobs retry, instead of holding the task until its own timeout.
//
// # Metrics
//
//   - intake_multipart_aborted_total{reason}: uploads S3 aborted, by reason (deadline, sweep, api,
//     too_large); uploads found gone are not counted, and an abort two attempts race on is
//     counted once, by the attempt whose record settled it (with a Store that is an
//     [AbortRecorder]).
//   - intake_bytes_reclaimed_total: the part sizes of the aborted uploads (when ListParts worked).
//   - intake_sweep_last_success_timestamp_seconds: end of the last sweep that aborted everything
//     it should have, among those covering the configured scope ([Config.SweepBucket] and
//     SweepPrefix; a whole bucket when unset): an operator's sweep of a narrower prefix does not
//     set it.
package multipart
