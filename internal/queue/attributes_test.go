package queue

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRedrivePolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw     string
		want    *RedrivePolicy
		wantErr bool
	}{
		{"", nil, false},
		{`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:q-dlq","maxReceiveCount":"5"}`, &RedrivePolicy{"arn:aws:sqs:us-east-1:1:q-dlq", 5}, false},
		{`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:q-dlq","maxReceiveCount":3}`, &RedrivePolicy{"arn:aws:sqs:us-east-1:1:q-dlq", 3}, false},
		{`{"deadLetterTargetArn":"arn","maxReceiveCount":0}`, nil, true},
		{`{"maxReceiveCount":2}`, nil, true},
		{`not json`, nil, true},
	}
	for _, tt := range tests {
		got, err := ParseRedrivePolicy(tt.raw)
		if tt.wantErr {
			assert.Error(t, err, tt.raw)
			continue
		}
		require.NoError(t, err, tt.raw)
		assert.Equal(t, tt.want, got, tt.raw)
	}
	// What Ensure writes reads back.
	p := RedrivePolicy{DLQARN: "arn:aws:sqs:us-east-1:1:q-dlq", MaxReceiveCount: 5}
	got, err := ParseRedrivePolicy(redrivePolicyJSON(p))
	require.NoError(t, err)
	assert.Equal(t, &p, got)
}
