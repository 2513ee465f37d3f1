// Package reconcile compares a bucket with intake's objects table and, when asked, repairs the
// difference: it is what `intake reconcile` runs after lost events, an outage, or a restore.
//
// # What it finds
//
//   - missing: an object is in the bucket but has no row;
//   - stale: the row's etag differs from the object's, or the row says deleted/missing while the
//     object exists;
//   - gone: the row says pending, valid or rejected but the object is not in the bucket.
//
// # How
//
// The bucket is listed with ListObjectsV2 (pages of 1000, in byte order of key) while the rows
// are read in the same order (keyset pages over the index of migration 0005), and the two streams
// are merged. Rows changed after the run started are not judged (an event processed during the
// listing may legitimately disagree with it), nor are objects written after it (LastModified; their
// events may still be on their way). A row is gone only once the listing has passed its key (listed
// a greater one, or ended without an error): a listing cut short (an error, or the context ending)
// fails the run, and what it did not list is not gone.
//
// Memory stays flat whatever the bucket's size and however many differences there are: a few pages
// of each stream, at most 500 gone rows awaiting their HEAD, and in the Report the counts plus a
// sample, the first SampleSize (1,000) keys of each kind. Options.Sink receives every difference as
// it is found; JSONReport (`intake reconcile --json`) spools them to a temporary file.
//
// # Fixing
//
// The fix is applied as the comparison goes, not after it: a run that stops part-way (an error,
// a timeout, a process killed) keeps what it repaired until then, and the next one starts from a
// bucket closer to the table. With Fix, missing and stale objects get an object:inspect task
// (worker/tasks) as they are found, so intake's own pipeline records them the usual way. An
// inspection is an observation of S3 made now: it replaces whatever the row said before
// (pipeline/doc.go, "Order and idempotency"), including a row marked deleted while the object
// exists, so that a second run after the tasks ran reports nothing. Gone
// rows are checked once more with HeadObject, 500 at a time, and, when the object is really absent
// (and HeadBucket finds the bucket), marked missing with reason 'reconcile', as an observation
// stamped with the database's time read before those HEADs (only if the row has not changed since
// the run started, nor been observed since). A HEAD that fails for its key alone (a 403, a 400) is
// counted (Fixed.HeadFailed), logged and skipped; a retryable failure (an outage) stops the run,
// after the rows already confirmed are marked.
//
// # Rate
//
// Options.Rate bounds the objects listed per second (each page is paid for before the next is
// requested) and the HEADs of the fix. The periodic reconcile (worker/jobs, objects:reconcile)
// sets it; `intake reconcile` runs unbounded.
package reconcile
