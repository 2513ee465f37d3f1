package pipeline_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/pipeline"
)

// TestEventBridgeLifecycleExpirationOfAVersion: EventBridge sends every S3 event (a rule cannot
// select some); a lifecycle rule expiring a noncurrent version sends Object Deleted with reason
// "Lifecycle Expiration". It is named as S3's own notification names it
// (LifecycleExpiration:Delete, :DeleteMarkerCreated) and, as that one, does not make intake read
// and hash the key's current object again; a DeleteObject of a version still does. Before, it was
// "ObjectRemoved:Lifecycle Expiration", and each expired version cost a full read and hash.
func TestEventBridgeLifecycleExpirationOfAVersion(t *testing.T) {
	t.Parallel()
	body := func(reason, deletion string) []byte {
		return []byte(`{"version":"0","detail-type":"Object Deleted","source":"aws.s3","time":"2026-01-01T00:00:00Z",` +
			`"region":"us-east-1","detail":{"version":"0","bucket":{"name":"b"},"object":{"key":"uploads/k",` +
			`"version-id":"old","sequencer":"0055AED6DCD90281E5"},"reason":"` + reason + `","deletion-type":"` + deletion + `"}}`)
	}
	for _, tt := range []struct {
		reason, deletion, name string
		reinspect              bool
	}{
		{"Lifecycle Expiration", "Permanently Deleted", "LifecycleExpiration:Delete", false},
		{"Lifecycle Expiration", "Delete Marker Created", "LifecycleExpiration:DeleteMarkerCreated", false},
		{"DeleteObject", "Permanently Deleted", "ObjectRemoved:DeleteObject", true},
	} {
		evs, err := pipeline.Decode(body(tt.reason, tt.deletion))
		require.NoError(t, err, tt.reason)
		require.Len(t, evs, 1)
		require.Equal(t, pipeline.KindRemoved, evs[0].Kind, tt.reason)
		require.Equal(t, tt.name, evs[0].Name)
		require.Equal(t, "old", evs[0].VersionID)
		require.Equal(t, tt.reinspect, pipeline.ReinspectAfterRemoval(evs[0]), tt.name)
	}
}

// TestEventBridgeOtherEventsWithoutAnObject: a rule on source aws.s3 also forwards events that
// name no object (CloudTrail's "AWS API Call via CloudTrail"); they are events intake does not act
// on, acknowledged, not malformed messages for the dead-letter queue. One naming a bucket keeps it,
// so that a foreign bucket is still refused. Before, each was dead-lettered ("missing bucket name").
func TestEventBridgeOtherEventsWithoutAnObject(t *testing.T) {
	t.Parallel()
	evs, err := pipeline.Decode([]byte(`{"version":"0","detail-type":"AWS API Call via CloudTrail","source":"aws.s3",` +
		`"time":"2026-01-01T00:00:00Z","region":"us-east-1","detail":{"eventSource":"s3.amazonaws.com",` +
		`"eventName":"PutObject","requestParameters":{"bucketName":"b","key":"uploads/k"}}}`))
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, pipeline.KindUnknown, evs[0].Kind)
	require.Equal(t, "AWS API Call via CloudTrail", evs[0].Name)
	require.Empty(t, evs[0].Bucket)

	evs, err = pipeline.Decode([]byte(`{"detail-type":"Object Restore Completed","source":"aws.s3",` +
		`"detail":{"bucket":{"name":"elsewhere"},"object":{}}}`))
	require.NoError(t, err)
	require.Equal(t, pipeline.KindUnknown, evs[0].Kind)
	require.Equal(t, "elsewhere", evs[0].Bucket, "kept: the processor refuses a foreign bucket")

	// An event intake acts on still needs its object.
	_, err = pipeline.Decode([]byte(`{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{}}}`))
	require.Error(t, err)
}

// TestProcessEventBridgeEventsIntakeDoesNotActOn: processed, the CloudTrail event is acknowledged
// (nothing looked at, nothing recorded), while one that names a foreign bucket is still refused.
func TestProcessEventBridgeEventsIntakeDoesNotActOn(t *testing.T) {
	t.Parallel()
	records := &archiveRecords{}
	p, err := pipeline.NewProcessor(pipeline.ProcessorConfig{Objects: nopObjects{}, Records: records, Buckets: []string{"mine"}, Archive: true})
	require.NoError(t, err)
	require.NoError(t, p.Process(context.Background(), "m1", []byte(`{"detail-type":"AWS API Call via CloudTrail",`+
		`"source":"aws.s3","detail":{"eventName":"PutObject","requestParameters":{"bucketName":"mine","key":"k"}}}`)))
	require.Equal(t, []string{"unknown:ignored"}, records.outcomes())

	err = p.Process(context.Background(), "m2", []byte(`{"detail-type":"Object Restore Completed","source":"aws.s3",`+
		`"detail":{"bucket":{"name":"elsewhere"},"object":{"key":"k"}}}`))
	require.ErrorIs(t, err, pipeline.ErrPermanent)
	var r *pipeline.Refusal
	require.True(t, errors.As(err, &r))
	require.Equal(t, pipeline.ReasonForeignBucket, r.DeadLetterReason())
}
