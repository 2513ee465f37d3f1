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
// are merged: memory stays flat whatever the bucket's size. Rows changed after the run started
// are not judged (an event processed during the listing may legitimately disagree with it), nor
// are objects written after it (LastModified; their events may still be on their way). A listing
// cut short (an error, or the context ending) fails the run: what it did not list is not gone.
//
// # Fixing
//
// With Fix, missing and stale objects get an object:inspect task (worker/tasks), so intake's own
// pipeline records them the usual way. An inspection is an observation of S3 made now: it replaces
// whatever the row said before (pipeline/doc.go, "Order and idempotency"), including a row marked
// deleted while the object exists, so that a second run after the tasks ran reports nothing. Gone
// rows are checked once more with HeadObject and, when the object is really absent, marked missing
// with reason 'reconcile', as an observation stamped with the database's time read before the HEADs
// (only if the row has not changed since the run started, nor been observed since).
//
// # Rate
//
// Options.Rate bounds the objects listed per second (each page is paid for before the next is
// requested) and the HEADs of the fix. The periodic reconcile (worker/jobs, objects:reconcile)
// sets it; `intake reconcile` runs unbounded.
package reconcile
