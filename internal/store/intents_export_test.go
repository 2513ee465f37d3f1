package store

// Queued returns how many rows wait in the writer's queue (tests wait on it to know that rows will
// go into the same batch).
func (w *IntentWriter) Queued() int { return w.batch.queued() }

// Closing reports whether Close has been called.
func (w *IntentWriter) Closing() bool { return w.batch.closing() }

// Queued returns how many lookups and records wait for a committer (zero when unbatched).
func (r *Records) Queued() (lookups, records int) {
	if r.lookups == nil {
		return 0, 0
	}
	return r.lookups.queued(), r.records.queued()
}
