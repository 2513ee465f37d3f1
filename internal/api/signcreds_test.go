package api

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"
)

// unreachableCredentials is a credentials provider whose source does not answer (the instance
// metadata service or STS down).
type unreachableCredentials struct{}

func (unreachableCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("ec2imds: GetMetadata: dial tcp 169.254.169.254:80: connect: connection refused")
}

// TestSigningCredentialsUnavailable: when intake cannot get the credentials it signs with, every
// route that signs answers 503 credentials-unavailable with Retry-After (a client retries), not a
// 500, without the provider's words, and records nothing.
func TestSigningCredentialsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{presignCreds: unreachableCredentials{}})
	// A multipart upload is created with the server's S3 client (its own credentials): its parts
	// are then signed with the unreachable ones.
	s, _, mp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "m.bin", "content_type": "application/octet-stream", "size": 10, "method": "multipart"})
	require.Equal(t, http.StatusCreated, s, mp)

	for _, c := range []attack{
		{attacker: "a presigned PUT", method: "POST", path: "/v1/uploads", body: map[string]any{"filename": "a.txt", "content_type": "text/plain", "size": 3}},
		{attacker: "a POST policy", method: "POST", path: "/v1/uploads", body: map[string]any{"filename": "a.txt", "content_type": "text/plain", "size": 3, "method": "post"}},
		{attacker: "part URLs", method: "POST", path: "/v1/uploads/" + mp["id"].(string) + "/parts", body: map[string]any{"part_numbers": []int{1}}},
	} {
		t.Run(c.attacker, func(t *testing.T) {
			c.as = asKey(aliceKey)
			before := b.effects(t)
			status, h, out := b.send(t, c)
			require.Equal(t, http.StatusServiceUnavailable, status, out)
			require.Equal(t, ProblemBase+"credentials-unavailable", out["type"])
			require.Equal(t, "5", h.Get("Retry-After"))
			require.NotContains(t, out["detail"], "169.254", "the provider's words stay in the log")
			require.Equal(t, before, b.effects(t), "nothing recorded, nothing signed")
		})
	}
}
