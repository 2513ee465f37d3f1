package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// TestRunSweep is `intake sweep`: --dry-run prints the stale uploads and aborts none; the real run
// aborts exactly those and prints a summary; --json prints the report. intake's own upload, as old
// as the stale ones but before its deadline, is kept throughout.
func TestRunSweep(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO and PostgreSQL")
	}
	ctx := testkit.Context(t)
	client := testkit.S3()
	bucket := testkit.Bucket(t, client)
	st := testkit.DB(t)
	create := func(key string) string {
		out, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		require.NoError(t, err)
		return aws.ToString(out.UploadId)
	}
	stale := []string{create("in/a.bin"), create("in/b.bin")}
	outside := create("out/c.bin")
	ours := create("in/ours.bin")
	_, err := testkit.CreateUpload(ctx, st.Pool, dbq.Upload{
		ID: uuid.New(), Owner: "alice", Bucket: bucket, Key: "in/ours.bin", Method: "multipart", Filename: "ours.bin",
		ContentType: "application/octet-stream", MultipartUploadID: aws.String(ours), ExpiresAt: time.Now().Add(time.Hour),
	})
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond)
	fresh := create("in/d.bin")

	mp, err := multipart.New(multipart.Config{S3: client, Store: st.Multipart()})
	require.NoError(t, err)
	opts := multipart.SweepOptions{Bucket: bucket, Prefix: "in/", OlderThan: time.Second, DryRun: true}

	var out bytes.Buffer
	rep, err := runSweep(ctx, mp, opts, &out)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Stale)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 5, out.String())
	require.Contains(t, lines[0], "UPLOAD ID")
	require.Contains(t, out.String(), stale[0])
	require.Contains(t, out.String(), stale[1])
	require.NotContains(t, out.String(), outside)
	require.NotContains(t, out.String(), fresh)
	require.NotContains(t, out.String(), ours)
	// The summary last, then its notes (the operator commands' habit). Before, the notes came first.
	require.Contains(t, lines[3], "dry run: 2 of 5 open uploads would be aborted")
	require.Equal(t, "note: 1 of intake's uploads are older than the cutoff but before their deadline: kept", lines[4])
	require.Len(t, openIDs(t, client, bucket), 5, "the dry run aborted nothing")

	out.Reset()
	opts.DryRun = false
	rep, err = runSweepJSON(ctx, mp, opts, &out)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Aborted)
	var report struct {
		Bucket, Prefix          string
		Listed, Stale, Aborted  int
		Protected, Gone, Failed int
		DryRun                  bool `json:"dry_run"`
		Candidates              []struct {
			Key      string
			UploadID string `json:"upload_id"`
		}
		TookSeconds float64 `json:"took_seconds"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &report), out.String())
	require.Equal(t, bucket, report.Bucket)
	require.Equal(t, "in/", report.Prefix)
	require.Equal(t, []int{5, 2, 2, 1, 0, 0}, []int{report.Listed, report.Stale, report.Aborted, report.Protected, report.Gone, report.Failed})
	require.False(t, report.DryRun)
	require.Len(t, report.Candidates, 2)
	require.ElementsMatch(t, stale, []string{report.Candidates[0].UploadID, report.Candidates[1].UploadID})
	require.ElementsMatch(t, []string{outside, ours, fresh}, openIDs(t, client, bucket))

	out.Reset()
	rep, err = runSweep(ctx, mp, opts, &out)
	require.NoError(t, err)
	require.Zero(t, rep.Stale)
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, out.String())
	require.Contains(t, lines[0], "listed 3, stale 0, aborted 0, already gone 0, failed 0")
	require.Equal(t, "note: 1 of intake's uploads are older than the cutoff but before their deadline: kept", lines[1])
}

func openIDs(t *testing.T, client *s3.Client, bucket string) []string {
	t.Helper()
	out, err := client.ListMultipartUploads(testkit.Context(t), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	var ids []string
	for _, u := range out.Uploads {
		ids = append(ids, aws.ToString(u.UploadId))
	}
	return ids
}

func TestSweepCmdValidates(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("INTAKE_BUCKET", "")
	var stdout, stderr bytes.Buffer
	code := MainContext(t.Context(), []string{"sweep", "--older-than", "10s"}, &stdout, &stderr)
	require.Equal(t, 2, code, "a flag out of range: a usage error")
	require.Contains(t, stderr.String(), "DATABASE_URL: required")
	require.Contains(t, stderr.String(), "INTAKE_BUCKET: required")
	require.Contains(t, stderr.String(), "--older-than: 10s is below 1m0s")
}
