package store

import (
	"context"
	"fmt"
	"time"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store/dbq"
)

// Multipart is internal/multipart's store: it runs the queries of queries/jobs.sql and speaks the
// package's types, so the generated ones stay here.
type Multipart struct {
	q *dbq.Queries
}

var _ multipart.Store = Multipart{}

// Multipart returns the multipart store over s's pool.
func (s *Store) Multipart() Multipart { return Multipart{q: s.Q} }

// BeginAbort implements multipart.Store.
func (m Multipart) BeginAbort(ctx context.Context, r multipart.AbortRecord) (string, error) {
	prior, err := m.q.BeginMultipartAbort(ctx, dbq.BeginMultipartAbortParams{
		Bucket: r.Bucket, Key: r.Key, UploadID: r.UploadID, Initiated: r.Initiated, Reason: r.Reason,
	})
	if err != nil {
		return "", fmt.Errorf("begin abort of upload %s: %w", r.UploadID, err)
	}
	return prior, nil
}

// BeginAborts implements multipart.Store.
func (m Multipart) BeginAborts(ctx context.Context, bucket, reason string, cs []multipart.Candidate) (map[string]string, error) {
	p := dbq.BeginMultipartAbortsParams{Bucket: bucket, Reason: reason,
		Keys: make([]string, len(cs)), UploadIds: make([]string, len(cs)), Initiated: make([]time.Time, len(cs))}
	for i, c := range cs {
		p.Keys[i], p.UploadIds[i], p.Initiated[i] = c.Key, c.UploadID, c.Initiated
	}
	rows, err := m.q.BeginMultipartAborts(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("begin %d aborts: %w", len(cs), err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.UploadID] = r.Prior
	}
	return out, nil
}

// PendingAborts implements multipart.Store.
func (m Multipart) PendingAborts(ctx context.Context, q multipart.PendingQuery) ([]multipart.PendingAbort, error) {
	rows, err := m.q.PendingMultipartAborts(ctx, dbq.PendingMultipartAbortsParams{
		Bucket: q.Bucket, Prefix: q.Prefix, StartedBefore: q.StartedBefore,
		AfterAbortedAt: q.AfterBegun, AfterUploadID: q.AfterUploadID, MaxRows: int32(q.Limit),
	})
	if err != nil {
		return nil, fmt.Errorf("list interrupted aborts: %w", err)
	}
	out := make([]multipart.PendingAbort, len(rows))
	for i, r := range rows {
		out[i] = multipart.PendingAbort{Key: r.Key, UploadID: r.UploadID, Initiated: r.Initiated, Reason: r.Reason, Begun: r.AbortedAt, Known: r.Known}
	}
	return out, nil
}

// RecordAbort implements multipart.Store.
func (m Multipart) RecordAbort(ctx context.Context, r multipart.AbortRecord) (string, error) {
	status, _, err := m.RecordAbortChanged(ctx, r)
	return status, err
}

// RecordAbortChanged implements multipart.AbortRecorder: changed is false when the row already
// held the outcome (another attempt, such as the deadline task racing a sweep, recorded it first),
// so that the abort is counted once.
func (m Multipart) RecordAbortChanged(ctx context.Context, r multipart.AbortRecord) (string, bool, error) {
	row, err := m.q.RecordMultipartAbort(ctx, dbq.RecordMultipartAbortParams{
		Bucket: r.Bucket, Key: r.Key, UploadID: r.UploadID, Initiated: r.Initiated,
		Reason: r.Reason, Outcome: r.Outcome,
		Settle: r.Object != multipart.ObjectUnknown, ObjectExists: r.Object == multipart.ObjectExists,
	})
	if err != nil {
		return "", false, fmt.Errorf("record abort of upload %s: %w", r.UploadID, err)
	}
	return row.IntentStatus, row.Recorded > 0, nil
}

var _ multipart.AbortRecorder = Multipart{}

// MarkCompleted implements multipart.Store.
func (m Multipart) MarkCompleted(ctx context.Context, bucket, uploadID string) (bool, error) {
	n, err := m.q.MultipartCompleted(ctx, dbq.MultipartCompletedParams{Bucket: bucket, UploadID: uploadID})
	if err != nil {
		return false, fmt.Errorf("mark upload %s completed: %w", uploadID, err)
	}
	return n > 0, nil
}

// Intents implements multipart.Store.
func (m Multipart) Intents(ctx context.Context, bucket string, uploadIDs []string) (map[string]multipart.Intent, error) {
	rows, err := m.q.MultipartIntents(ctx, dbq.MultipartIntentsParams{Bucket: bucket, UploadIds: uploadIDs})
	if err != nil {
		return nil, fmt.Errorf("look up %d upload ids: %w", len(uploadIDs), err)
	}
	out := make(map[string]multipart.Intent, len(rows))
	for _, r := range rows {
		out[r.UploadID] = multipart.Intent{ID: r.ID, Key: r.Key, UploadID: r.UploadID, Status: r.Status, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
	}
	return out, nil
}

// Overdue implements multipart.Store.
func (m Multipart) Overdue(ctx context.Context, q multipart.OverdueQuery) ([]multipart.Intent, error) {
	rows, err := m.q.OverdueMultipart(ctx, dbq.OverdueMultipartParams{
		Bucket: q.Bucket, Prefix: q.Prefix, Now: q.Now, AfterExpiresAt: q.AfterExpiresAt, AfterID: q.AfterID,
		MaxRows: int32(q.Limit),
	})
	if err != nil {
		return nil, fmt.Errorf("list overdue multipart uploads: %w", err)
	}
	out := make([]multipart.Intent, len(rows))
	for i, r := range rows {
		out[i] = multipart.Intent{ID: r.ID, Key: r.Key, UploadID: r.UploadID, Status: r.Status, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
	}
	return out, nil
}
