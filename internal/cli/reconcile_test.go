package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// TestReconcileFixStoppedPrintsJSON: with --json, the report of a --fix that stopped part-way (Redis
// down: no inspection can be enqueued) is JSON on stdout too, as scripts that parse it expect; the
// error goes to stderr and the exit status is 1.
func TestReconcileFixStoppedPrintsJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO and PostgreSQL")
	}
	awsEnv(t)
	st := testkit.DB(t)
	s3c := testkit.S3()
	bucket := testkit.Bucket(t, s3c)
	_, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k/no-row"), Body: strings.NewReader("x")})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := ln.Addr().String()
	require.NoError(t, ln.Close())

	a := testkit.AWS()
	var stdout, stderr bytes.Buffer
	code := MainContext(testkit.Context(t), []string{"reconcile", "--bucket", bucket, "--fix", "--json",
		"--database-url", testkit.DatabaseURLFor(st.Schema), "--redis-url", "redis://" + down + "/0",
		"--s3-endpoint", a.S3Endpoint, "--aws-region", a.Region}, &stdout, &stderr)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	require.Contains(t, stderr.String(), "enqueue inspection of \"k/no-row\"")
	var rep struct {
		Missing []struct {
			Key string `json:"key"`
		} `json:"missing"`
		Fixed *struct {
			Enqueued int `json:"enqueued"`
		} `json:"fixed"`
		Complete *bool `json:"complete"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "stdout is JSON:\n%s", stdout.String())
	require.Len(t, rep.Missing, 1)
	require.Equal(t, "k/no-row", rep.Missing[0].Key)
	require.NotNil(t, rep.Fixed)
	require.Zero(t, rep.Fixed.Enqueued)
	require.NotNil(t, rep.Complete)
	require.False(t, *rep.Complete, "the report says the run stopped part-way")
}
