package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// TestCountOpenMultipartFreesAtTheDeadline: APICountOpenMultipart counts an owner's multipart
// uploads that are pending and before their deadline, up to max_rows: one past its deadline frees
// its slot at once, whether or not its abort has settled it yet (Redis lost the task, the sweep has
// not run), as INTAKE_API_MAX_OPEN_MULTIPART promises. Other owners', other methods' and settled
// uploads never count. The count reads the partial index of open uploads alone (an index-only
// scan), so that uploads past their deadline awaiting their abort cost it nothing.
func TestCountOpenMultipartFreesAtTheDeadline(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := context.Background()
	insert := func(owner, method, status string, expires time.Time) {
		t.Helper()
		id := uuid.New()
		arg := dbq.APICreateUploadParams{
			ID: id, Owner: owner, Bucket: "b", Key: fmt.Sprintf("uploads/%s/%s/f.bin", owner, id), Method: method, Filename: "f.bin",
			ContentType: "application/octet-stream", Size: 1, SizeDeclared: true, ExpiresAt: expires,
		}
		if method == "multipart" {
			mp := "mp-" + id.String()
			arg.MultipartUploadID = &mp
		}
		require.NoError(t, st.Q.APICreateUpload(ctx, arg))
		if status != "pending" {
			_, err := st.Pool.Exec(ctx, "UPDATE uploads SET status = $1 WHERE id = $2", status, id)
			require.NoError(t, err)
		}
	}
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Second)
	for range 3 {
		insert("alice", "multipart", "pending", future)
	}
	for range 4 {
		insert("alice", "multipart", "pending", past) // past the deadline, abort not yet settled
	}
	insert("alice", "multipart", "completed", future)
	insert("alice", "multipart", "aborted", past)
	insert("alice", "put", "pending", future)
	insert("bob", "multipart", "pending", future)

	count := func(owner string, maxRows int32) int32 {
		t.Helper()
		n, err := st.Q.APICountOpenMultipart(ctx, dbq.APICountOpenMultipartParams{Owner: owner, MaxRows: maxRows})
		require.NoError(t, err)
		return n
	}
	require.EqualValues(t, 3, count("alice", 1000), "uploads past their deadline free their slot")
	require.EqualValues(t, 2, count("alice", 2), "counted up to max_rows")
	require.EqualValues(t, 1, count("bob", 1000))
	require.EqualValues(t, 0, count("carol", 1000))

	// The plan the planner would use were the table large: the partial index, without the rows.
	tx, err := st.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
	require.NoError(t, err)
	rows, err := tx.Query(ctx, "EXPLAIN (COSTS OFF) SELECT count(*)::int AS open FROM (SELECT 1 FROM uploads "+
		"WHERE owner = $1 AND method = 'multipart' AND status = 'pending' AND expires_at > now() LIMIT $2) AS o", "alice", 1000)
	require.NoError(t, err)
	var plan []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan = append(plan, line)
	}
	require.NoError(t, rows.Err())
	require.Contains(t, strings.Join(plan, "\n"), "Index Only Scan using uploads_open_multipart_owner_expires_idx", strings.Join(plan, "\n"))
}
