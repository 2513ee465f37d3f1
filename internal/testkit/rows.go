package testkit

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/intakehq/intake/internal/store/dbq"
)

// The rows tests write and read directly, with plain SQL scanned into the generated model types:
// intake's query set (internal/store/queries) holds only what intake itself runs. db is a store's
// pool (store.Store.Pool) or a transaction. Reads return pgx.ErrNoRows, wrapped, when nothing
// matches.

// CreateUpload inserts the intent u and returns its row. It writes u's id, owner, bucket, key,
// method, filename, content type, size, sha256, multipart upload id and expiry; the other columns
// take their defaults (status pending, size declared, no part size, no metadata, timestamps now),
// and setting them in u is refused rather than ignored.
func CreateUpload(ctx context.Context, db dbq.DBTX, u dbq.Upload) (dbq.Upload, error) {
	if u.Status != "" || u.SizeDeclared || u.PartSize != nil || u.Metadata != nil || !u.CreatedAt.IsZero() || !u.UpdatedAt.IsZero() {
		return dbq.Upload{}, errors.New("testkit: create upload: status, size_declared, part_size, metadata and timestamps take their defaults; update them after")
	}
	return one[dbq.Upload](ctx, db, "create upload",
		`INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, sha256, multipart_upload_id, expires_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`,
		u.ID, u.Owner, u.Bucket, u.Key, u.Method, u.Filename, u.ContentType, u.Size, u.Sha256, u.MultipartUploadID, u.ExpiresAt)
}

// GetUpload returns the upload intent with this id.
func GetUpload(ctx context.Context, db dbq.DBTX, id uuid.UUID) (dbq.Upload, error) {
	return one[dbq.Upload](ctx, db, "get upload", `SELECT * FROM uploads WHERE id = $1`, id)
}

// GetUploadByKey returns the upload intent of bucket and key.
func GetUploadByKey(ctx context.Context, db dbq.DBTX, bucket, key string) (dbq.Upload, error) {
	return one[dbq.Upload](ctx, db, "get upload by key", `SELECT * FROM uploads WHERE bucket = $1 AND key = $2`, bucket, key)
}

// GetObject returns the objects row of bucket and key.
func GetObject(ctx context.Context, db dbq.DBTX, bucket, key string) (dbq.Object, error) {
	return one[dbq.Object](ctx, db, "get object", `SELECT * FROM objects WHERE bucket = $1 AND key = $2`, bucket, key)
}

// ListObjects returns every objects row of bucket, by key.
func ListObjects(ctx context.Context, db dbq.DBTX, bucket string) ([]dbq.Object, error) {
	return all[dbq.Object](ctx, db, "list objects", `SELECT * FROM objects WHERE bucket = $1 ORDER BY key`, bucket)
}

// ListMultipartAborts returns the recorded aborts of bucket, oldest first.
func ListMultipartAborts(ctx context.Context, db dbq.DBTX, bucket string) ([]dbq.MultipartAbort, error) {
	return all[dbq.MultipartAbort](ctx, db, "list multipart aborts",
		`SELECT * FROM multipart_aborts WHERE bucket = $1 ORDER BY aborted_at, upload_id`, bucket)
}

// ListOutbox returns every notification (outbox row) of upload id, oldest first.
func ListOutbox(ctx context.Context, db dbq.DBTX, uploadID uuid.UUID) ([]dbq.Outbox, error) {
	return all[dbq.Outbox](ctx, db, "list outbox", `SELECT * FROM outbox WHERE upload_id = $1 ORDER BY id`, uploadID)
}

// one runs a query of one row and scans it into T by column name.
func one[T any](ctx context.Context, db dbq.DBTX, what, sql string, args ...any) (T, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("testkit: %s: %w", what, err)
	}
	v, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[T])
	if err != nil {
		return v, fmt.Errorf("testkit: %s: %w", what, err)
	}
	return v, nil
}

// all runs a query and scans its rows into T by column name.
func all[T any](ctx context.Context, db dbq.DBTX, what, sql string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("testkit: %s: %w", what, err)
	}
	v, err := pgx.CollectRows(rows, pgx.RowToStructByName[T])
	if err != nil {
		return nil, fmt.Errorf("testkit: %s: %w", what, err)
	}
	return v, nil
}
