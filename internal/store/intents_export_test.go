package store

// Queued returns how many rows wait in the writer's queue (tests wait on it to know that rows will
// go into the same batch).
func (w *IntentWriter) Queued() int { return len(w.reqs) }

// Closing reports whether Close has been called.
func (w *IntentWriter) Closing() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.closed
}
