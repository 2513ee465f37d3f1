package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/pipeline"
)

// Records is the pipeline's [pipeline.RecordStore] on PostgreSQL (queries in queries/objects.sql).
// Errors caused by an unreachable or restarting server wrap [pipeline.ErrUnavailable].
type Records struct {
	s *Store
}

var _ pipeline.RecordStore = (*Records)(nil)

// NewRecords returns the record store of s.
func NewRecords(s *Store) *Records { return &Records{s: s} }

// Intent returns the upload intent of (bucket, key), or nil when there is none.
func (r *Records) Intent(ctx context.Context, bucket, key string) (*pipeline.Intent, error) {
	row, err := r.s.Q.PipelineIntent(ctx, dbq.PipelineIntentParams{Bucket: bucket, Key: key})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(ctx, fmt.Sprintf("look up intent of %s/%s", bucket, key), err)
	}
	return &pipeline.Intent{
		ID: row.ID, Owner: row.Owner, Method: row.Method, ContentType: row.ContentType,
		Size: row.Size, SizeDeclared: row.SizeDeclared, SHA256: row.Sha256,
		MultipartUploadID: strOf(row.MultipartUploadID), Status: row.Status,
	}, nil
}

// Record upserts the object row if rec is newer than the stored one and completes
// rec.CompleteIntent, in one transaction, and returns the row as it stands.
func (r *Records) Record(ctx context.Context, rec pipeline.Record) (pipeline.Recorded, error) {
	p := recordParams(rec)
	row, err := r.s.Q.PipelineRecord(ctx, p)
	if errors.Is(err, pgx.ErrNoRows) {
		// The upsert waited for a concurrent insert of the key and left that row as it was; the
		// statement's snapshot predates it, so read it with a fresh one.
		var cur dbq.Object
		cur, err = r.s.Q.PipelineGetObject(ctx, dbq.PipelineGetObjectParams{Bucket: rec.Bucket, Key: rec.Key})
		row = dbq.PipelineRecordRow{Status: cur.Status, Reason: cur.Reason, Etag: cur.Etag, VersionID: cur.VersionID}
	}
	if err != nil {
		return pipeline.Recorded{}, classify(ctx, fmt.Sprintf("record %s/%s", rec.Bucket, rec.Key), err)
	}
	return pipeline.Recorded{
		Applied: row.Applied, Status: row.Status, Reason: strOf(row.Reason),
		ETag: strOf(row.Etag), VersionID: strOf(row.VersionID),
	}, nil
}

// Archive stores a raw message body in the events table.
func (r *Records) Archive(ctx context.Context, ev pipeline.ArchivedEvent) error {
	err := r.s.Q.PipelineArchiveEvent(ctx, dbq.PipelineArchiveEventParams{
		MessageID: ev.MessageID, Bucket: optString(ev.Bucket), Key: optString(ev.Key), EventName: optString(ev.EventName),
		Outcome: ev.Outcome, Body: ev.Body,
	})
	if err != nil {
		return classify(ctx, "archive message "+ev.MessageID, err)
	}
	return nil
}

func recordParams(rec pipeline.Record) dbq.PipelineRecordParams {
	p := dbq.PipelineRecordParams{
		Bucket: rec.Bucket, Key: rec.Key, Status: rec.Status, Reason: optString(rec.Reason),
		VersionID: optString(rec.VersionID), Etag: optString(rec.ETag), Size: rec.Size,
		ContentType: optString(rec.ContentType), SniffedType: optString(rec.SniffedType), Sha256: rec.SHA256,
		Owner: optString(rec.Owner), Sequencer: optString(rec.Sequencer), Observed: rec.Observed,
	}
	if rec.Width > 0 && rec.Height > 0 {
		w, h := int32(min(rec.Width, 1<<31-1)), int32(min(rec.Height, 1<<31-1))
		p.Width, p.Height = &w, &h
	}
	if rec.UploadID != uuid.Nil {
		id := rec.UploadID
		p.UploadID = &id
	}
	if !rec.EventTime.IsZero() {
		t := rec.EventTime
		p.EventTime = &t
	}
	if rec.CompleteIntent != uuid.Nil {
		id := rec.CompleteIntent
		p.CompleteIntent = &id
	}
	return p
}

// classify wraps err with what was being done, adding pipeline.ErrUnavailable when the cause is the
// database being unreachable rather than the statement.
func classify(ctx context.Context, what string, err error) error {
	if !errors.Is(ctx.Err(), context.Canceled) && Unavailable(err) {
		return fmt.Errorf("%s: %v: %w", what, err, pipeline.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Unavailable reports whether a pgx error means PostgreSQL cannot be reached or is not accepting
// work right now (connection refused or lost, timeouts, server shutting down or starting, too many
// connections), as opposed to an error in the statement.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // admin/crash shutdown, cannot connect now
			return true
		case pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// optString maps "" to NULL.
func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// strOf maps NULL to "".
func strOf(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
