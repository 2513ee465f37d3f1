package pipeline_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/pipeline"
)

// scanBodies are S3 notifications the scan must leave to encoding/json (scanned: false), or read
// exactly as it does (true). Each names why.
var scanBodies = []struct {
	name    string
	body    string
	scanned bool
}{
	{"plain", `{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"2024-01-01T00:00:00Z","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":12,"sequencer":"00AB"}}}]}`, true},
	{"white space everywhere", " \t\n{ \"Records\" : [ { \"s3\" : { \"object\" : { \"size\" : 0 , \"key\" : \"k\" } , \"bucket\" : { \"name\" : \"b\" } } } ] }\r\n", true},
	{"unknown members of every kind skipped", `{"x":[1,-2.5e+3,true,false,null,{"a":"\u00e9\"\\\/\b\f\n\r\t"}],"Records":[{"userIdentity":{"principalId":"A"},"s3":{"bucket":{"name":"b","arn":"a"},"object":{"key":"k","userMetadata":{"k":"v"}}}}]}`, true},
	{"two records", `{"Records":[{"s3":{"bucket":{"name":"a"},"object":{"key":"1"}}},{"s3":{"bucket":{"name":"b"},"object":{"key":"2"}}}]}`, true},
	{"UTF-8 in a value", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"été"}}}]}`, true},
	{"largest size read", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":999999999999999999}}}]}`, true},

	{"escape in a value read", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"a\u0062"}}}]}`, false},
	{"escape in a name", `{"Records":[{"s3":{"bucket":{"n\u0061me":"b"},"object":{"key":"k"}}}]}`, false},
	{"name in another case", `{"Records":[{"EventName":"x","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, false},
	{"Records in another case too", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}],"records":[]}`, false},
	{"non-ASCII name that folds", "{\"Records\":[{\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"\u212aey\":\"k\"}}}]}", false},
	{"name twice", `{"Records":[{"s3":{"bucket":{"name":"b","name":"c"},"object":{"key":"k"}}}]}`, false},
	{"object twice (merged by encoding/json)", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"},"object":{"size":1}}}]}`, false},
	{"Records twice", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}],"Records":[{}]}`, false},
	{"null value", `{"Records":[{"eventName":null,"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, false},
	{"null record", `{"Records":[null]}`, false},
	{"no records", `{"Records":[]}`, false},
	{"size fractional", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":1.0}}}]}`, false},
	{"size exponent", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":1e3}}}]}`, false},
	{"size negative", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":-1}}}]}`, false},
	{"size 19 digits", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":1000000000000000000}}}]}`, false},
	{"size a string", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"1"}}}]}`, false},
	{"invalid UTF-8 in a value read", "{\"Records\":[{\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"a\xffb\"}}}]}", false},
	{"control character in a string", "{\"Records\":[{\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"a\tb\"}}}]}", false},
	{"bad escape in a skipped string", `{"x":"\q","Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, false},
	{`short \u escape`, `{"x":"\u12","Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, false},
	{"leading zero in a skipped number", `{"x":01,"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, false},
	{"bad literal", `{"x":nul,"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, false},
	{"trailing comma", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}],}`, false},
	{"trailing garbage", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]} x`, false},
	{"truncated", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]`, false},
	{"too deep", `{"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `,"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, false},
}

// TestScanRecords: the scan reads the plain bodies exactly as encoding/json does and leaves every
// other one to it; Decode gives the same events and errors either way.
func TestScanRecords(t *testing.T) {
	for _, c := range scanBodies {
		t.Run(c.name, func(t *testing.T) {
			scanned, err := pipeline.ScanRecordsAgrees([]byte(c.body))
			require.NoError(t, err)
			require.Equal(t, c.scanned, scanned)
			fast, fastErr := pipeline.DecodeWith([]byte(c.body), true)
			slow, slowErr := pipeline.DecodeWith([]byte(c.body), false)
			require.Equal(t, slowErr == nil, fastErr == nil, "fast %v, slow %v", fastErr, slowErr)
			require.Equal(t, slow, fast)
		})
	}
}

// TestScanRecordsReadsTheFixtures: every real S3 notification in the fixtures is read by the scan
// (else it would not pay), exactly as encoding/json reads it.
func TestScanRecordsReadsTheFixtures(t *testing.T) {
	n := 0
	for name, body := range readFixtures(t) {
		if !bytes.HasPrefix(bytes.TrimSpace(body), []byte(`{`)) || !bytes.Contains(body, []byte(`"Records"`)) || bytes.Contains(body, []byte(`"Type"`)) {
			continue // not an S3 notification at the top (EventBridge, SNS, test event)
		}
		scanned, err := pipeline.ScanRecordsAgrees(body)
		require.NoError(t, err, name)
		require.True(t, scanned, "%s: the scan left a real notification to encoding/json", name)
		n++
	}
	require.Greater(t, n, 20, "fixtures read")
}

// FuzzScanRecords: whatever the scan reads, encoding/json reads the same way.
func FuzzScanRecords(f *testing.F) {
	for _, body := range readFixtures(f) {
		f.Add(body)
	}
	for _, c := range scanBodies {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := pipeline.ScanRecordsAgrees(body); err != nil {
			t.Fatal(err)
		}
	})
}
