package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/jobs"
)

// TestRunSweep is `intake sweep`: --dry-run prints the stale uploads and aborts none; the real run
// aborts exactly those and prints a summary.
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
	time.Sleep(1500 * time.Millisecond)
	fresh := create("in/d.bin")

	mp, err := jobs.NewMultipart(jobs.MultipartConfig{S3: client, Store: st.Q})
	require.NoError(t, err)
	opts := jobs.SweepOptions{Bucket: bucket, Prefix: "in/", OlderThan: time.Second, DryRun: true}

	var out bytes.Buffer
	rep, err := runSweep(ctx, mp, opts, &out)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Stale)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4, out.String())
	require.Contains(t, lines[0], "UPLOAD ID")
	require.Contains(t, out.String(), stale[0])
	require.Contains(t, out.String(), stale[1])
	require.NotContains(t, out.String(), outside)
	require.NotContains(t, out.String(), fresh)
	require.Contains(t, lines[3], "dry run: 2 of 4 open uploads would be aborted")
	require.Len(t, openIDs(t, client, bucket), 4, "the dry run aborted nothing")

	out.Reset()
	opts.DryRun = false
	rep, err = runSweep(ctx, mp, opts, &out)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Aborted)
	require.Contains(t, out.String(), "listed 4, stale 2, aborted 2, already gone 0, failed 0")
	require.ElementsMatch(t, []string{outside, fresh}, openIDs(t, client, bucket))
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
	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), "DATABASE_URL: required")
	require.Contains(t, stderr.String(), "INTAKE_BUCKET: required")
	require.Contains(t, stderr.String(), "--older-than: 10s is below 1m0s")
}
