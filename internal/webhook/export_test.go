package webhook

import "time"

// NominalDelay is nominalDelay (the retry delay without jitter).
var NominalDelay = nominalDelay

// RetryAfterValue is retryAfter (the delay a Retry-After value asks for).
var RetryAfterValue = retryAfter

// MaxDelay is the retry schedule's longest delay.
const MaxDelay = maxDelay

// ParseDeliver is parseDeliver.
var ParseDeliver = parseDeliver

// TaskID is taskID (the ID NewDeliverTask gives the task of items).
var TaskID = taskID

// ByUpload is byUpload (a task's items grouped by upload, in order).
var ByUpload = byUpload

// Rounds is rounds (how many attempts one after the other a run of a task makes at most).
var Rounds = rounds

// Share is share (each endpoint's share of the workers), for tests with a clock of their own.
type Share = share

// NewShare is newShare.
var NewShare = newShare

// Admit is share.admit.
func (s *Share) Admit(endpoint, task string, force bool) (func(), error) {
	return s.admit(endpoint, task, force)
}

// Waiting is how many deferred tasks of endpoint s remembers.
func (s *Share) Waiting(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.waiting[endpoint]; w != nil {
		return len(w.forget)
	}
	return 0
}

// Observe is share.observe.
func (s *Share) Observe(endpoint, result string, took time.Duration) {
	s.observe(endpoint, result, took)
}
