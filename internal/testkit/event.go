package testkit

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"
)

// S3Event returns the body of the ObjectCreated:Put notification AWS sends for an object (the key
// form-encoded, as S3 does), with sequencer seq. Tests send it to the queue the consumer reads,
// instead of waiting for a store's own notification.
func S3Event(bucket, key, etag string, size int64, seq int) string {
	rec := map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": Region,
		"eventTime": time.Now().UTC().Format(time.RFC3339Nano), "eventName": "ObjectCreated:Put",
		"s3": map[string]any{
			"s3SchemaVersion": "1.0", "configurationId": "intake",
			"bucket": map[string]any{"name": bucket, "arn": "arn:aws:s3:::" + bucket},
			"object": map[string]any{
				"key": url.QueryEscape(key), "size": size, "eTag": etag,
				"sequencer": fmt.Sprintf("%016X", 0x0055AED6DCD90281+seq),
			},
		},
	}
	body, _ := json.Marshal(map[string]any{"Records": []any{rec}})
	return string(body)
}
