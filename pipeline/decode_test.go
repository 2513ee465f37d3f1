package pipeline_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/pipeline"
)

// fixtureDir is the shared directory of real notification bodies.
var fixtureDir = filepath.Join("..", "..", "shared", "fixtures", "events")

// readFixtures returns every .json file under fixtureDir by its slash
// separated path relative to it. A missing directory fails the test.
func readFixtures(t testing.TB) map[string][]byte {
	t.Helper()
	info, err := os.Stat(fixtureDir)
	require.NoError(t, err, "fixture directory %s is missing", fixtureDir)
	require.True(t, info.IsDir(), "%s is not a directory", fixtureDir)
	files := map[string][]byte{}
	err = filepath.WalkDir(fixtureDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		rel, err := filepath.Rel(fixtureDir, path)
		if err != nil {
			return err
		}
		body, err := os.ReadFile(path)
		files[filepath.ToSlash(rel)] = body
		return err
	})
	require.NoError(t, err)
	require.NotEmpty(t, files, "no fixtures in %s", fixtureDir)
	return files
}

func utc(year int, month time.Month, day, hour, minute, sec, msec int) time.Time {
	return time.Date(year, month, day, hour, minute, sec, msec*int(time.Millisecond), time.UTC)
}

// minioAt is an event time on the day the MinIO fixtures were recorded.
func minioAt(hour, minute, sec, msec int) time.Time {
	return utc(2026, time.November, 25, hour, minute, sec, msec)
}

func minioEvent(ev pipeline.Event) []pipeline.Event {
	ev.Source, ev.Region = "minio:s3", "us-east-1"
	if ev.Bucket == "" {
		ev.Bucket = "minio-events"
	}
	return []pipeline.Event{ev}
}

// kumoEvent fills what every kumo fixture shares: source aws:s3 (despite the
// s3: prefix on names), one bucket, one second of event time, no sequencer.
func kumoEvent(ev pipeline.Event) []pipeline.Event {
	ev.Source, ev.Region, ev.Bucket = "aws:s3", "us-east-1", "kumo-events"
	ev.Time = utc(2026, time.November, 25, 1, 24, 18, 0)
	return []pipeline.Event{ev}
}

var awsPut = pipeline.Event{
	Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Source: "aws:s3", Region: "us-west-2",
	Bucket: "mybucket", Key: "HappyFace.jpg", Size: 1024, ETag: "d41d8cd98f00b204e9800998ecf8427e",
	VersionID: "096fKKXTRTtl3on89fVO.nfljtsv6qko", Sequencer: "0055AED6DCD90281E5",
	Time: time.Unix(0, 0).UTC(),
}

// fixtureEvents is what Decode must return for each fixture file.
var fixtureEvents = map[string][]pipeline.Event{
	"aws/put.json":             {awsPut},
	"aws/sns-wrapped-put.json": {awsPut},
	"aws/test-event.json": {{
		Kind: pipeline.KindTest, Name: "TestEvent", Bucket: "bucketname",
		Time: utc(2014, time.October, 13, 15, 57, 2, 89),
	}},
	"aws/eventbridge-object-created.json": {{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:PutObject", Source: "aws.s3", Region: "ca-central-1",
		Bucket: "DOC-EXAMPLE-BUCKET1", Key: "example-key", Size: 5, ETag: "b1946ac92492d2347c6235b4d2611184",
		VersionID: "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", Sequencer: "617f08299329d189",
		Time: utc(2021, time.November, 12, 0, 0, 0, 0),
	}},

	"minio/001-s3_ObjectCreated_Put.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Key: "sdk/plain.bin", Size: 1000,
		ETag: "7979a59957a3d71a0888b7779daedf72", Sequencer: "18EB24A6C331BBF0",
		Time: minioAt(1, 12, 55, 96), ContentType: "application/octet-stream",
	}),
	"minio/002-s3_ObjectCreated_Put.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Key: "presigned/put.txt", Size: 20,
		ETag: "70552518d72698fb9789ceae4d3d0dc5", Sequencer: "18EB24A6C38C6B6C",
		Time: minioAt(1, 12, 55, 102), ContentType: "text/plain",
	}),
	"minio/003-s3_ObjectCreated_Put.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Key: "presigned/len.bin", Size: 100,
		ETag: "962c3adf552d9d1ecbb79ac3e9c29f73", Sequencer: "18EB24A6C3E442C7",
		Time: minioAt(1, 12, 55, 108), ContentType: "binary/octet-stream",
	}),
	"minio/004-s3_ObjectCreated_Put.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Key: "presigned/sum.bin", Size: 256,
		ETag: "374dbf3da386b9c50bfb5d3a6b7fd19b", Sequencer: "18EB24A6C41C37EB",
		Time: minioAt(1, 12, 55, 112), ContentType: "binary/octet-stream",
	}),
	"minio/005-s3_ObjectCreated_Post.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:Post", Key: "post/upload.bin", Size: 500,
		ETag: "af5fd2763001682a07be5c6d3a82dbfd", Sequencer: "18EB24A6C4768948",
		Time: minioAt(1, 12, 55, 118), ContentType: "application/octet-stream",
	}),
	"minio/006-s3_ObjectCreated_CompleteMultipartUpload.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:CompleteMultipartUpload", Key: "mp/big.bin", Size: 5244114,
		ETag: "464b281054a7846f69c71527455a0924-2", Sequencer: "18EB24A6CAD25485",
		Time: minioAt(1, 12, 55, 224), ContentType: "application/octet-stream",
	}),
	"minio/007-s3_ObjectCreated_Copy.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:Copy", Key: "copy/of-put.txt", Size: 20,
		ETag: "70552518d72698fb9789ceae4d3d0dc5", Sequencer: "18EB24A6CD806525",
		Time: minioAt(1, 12, 55, 272), ContentType: "text/plain",
	}),
	"minio/008-s3_ObjectRemoved_Delete.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindRemoved, Name: "ObjectRemoved:Delete", Key: "copy/of-put.txt",
		Sequencer: "18EB24A6CE2945F7", Time: minioAt(1, 12, 55, 280),
	}),
	"minio/009-s3_ObjectCreated_PutTagging.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindTagging, Name: "ObjectCreated:PutTagging", Key: "copy/of-put.txt", Size: 20,
		ETag: "70552518d72698fb9789ceae4d3d0dc5", Sequencer: "18EB24A6CD806525",
		Time: minioAt(1, 12, 55, 276), ContentType: "text/plain",
	}),
	"minio/010-s3_ObjectCreated_Put.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Key: "sum/ok.bin", Size: 4096,
		ETag: "847d30515ee9d4dbddeebd2625bdf0fc", Sequencer: "18EB24A6CE7FEEAF",
		Time: minioAt(1, 12, 55, 286), ContentType: "application/octet-stream",
	}),
	// The object name itself contains "%20": the record key is "%2520".
	"minio/011-s3_ObjectCreated_CompleteMultipartUpload.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:CompleteMultipartUpload", Bucket: "mc-events",
		Key: "dir/with%20space/a+b.txt", Size: 6, ETag: "6a6d8d4533507d490ab007dfe8314ab7-1",
		Sequencer: "18EB257F55E2C736", Time: minioAt(1, 28, 25, 271), ContentType: "text/plain",
	}),
	"minio/012-s3_ObjectCreated_Put.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Bucket: "mc-events",
		Key: "dir/with space/a+b é.txt", Size: 3, ETag: "764efa883dda1e11db47671c4a3bbd9e",
		Sequencer: "18EB2580618170C8", Time: minioAt(1, 28, 29, 761), ContentType: "text/plain",
	}),
	"minio/013-s3_ObjectRemoved_Delete.json": minioEvent(pipeline.Event{
		Kind: pipeline.KindRemoved, Name: "ObjectRemoved:Delete", Bucket: "mc-events",
		Key: "dir/with space/a+b é.txt", Sequencer: "18EB258064B20C7A", Time: minioAt(1, 28, 29, 812),
	}),

	"kumo/001.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "sdk/plain.bin", Size: 1000, ETag: "c2a7faa379df5d52f8341ee8faa14813"}),
	"kumo/002.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "presigned/put.txt", Size: 20, ETag: "70552518d72698fb9789ceae4d3d0dc5"}),
	"kumo/003.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "presigned/put.txt", Size: 10, ETag: "b50a88e1cc27b2a1359cb66d38a189b7"}),
	"kumo/004.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "presigned/len.bin", Size: 100, ETag: "2e6a103fe343960512018b6b754b5c79"}),
	"kumo/005.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "presigned/len.bin", Size: 50, ETag: "4d47a6744f69e8e7fbd69950fbee2aa3"}),
	"kumo/006.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "presigned/sum.bin", Size: 256, ETag: "31a868cbbb3e43cbfe25874e3d6da837"}),
	"kumo/007.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "presigned/sum.bin", Size: 256, ETag: "c7e4a8f1cb7672e8141b3590afd89d37"}),
	"kumo/008.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "presigned/sum.bin", Size: 256, ETag: "31a868cbbb3e43cbfe25874e3d6da837"}),
	"kumo/009.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Post",
		Key: "post/upload.bin", Size: 500, ETag: "bced6df9a7a385a41605ef67cb88d1e5"}),
	"kumo/010.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:CompleteMultipartUpload",
		Key: "mp/big.bin", Size: 5244114, ETag: "9a98ce8512a2ddc72f9a1c15a50f29aa-2"}),
	"kumo/011.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Copy",
		Key: "copy/of-put.txt", Size: 10, ETag: "b50a88e1cc27b2a1359cb66d38a189b7"}),
	"kumo/012.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "sum/ok.bin", Size: 4096, ETag: "38b228cc6e668e9f01cae9f67974a649"}),
	"kumo/013.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "sum/bad.bin", Size: 4096, ETag: "38b228cc6e668e9f01cae9f67974a649"}),
	"kumo/014.json": kumoEvent(pipeline.Event{Kind: pipeline.KindCreated, Name: "ObjectCreated:Put",
		Key: "sum/badmd5.bin", Size: 4096, ETag: "38b228cc6e668e9f01cae9f67974a649"}),
}

func TestDecodeFixtures(t *testing.T) {
	t.Parallel()
	files := readFixtures(t)

	// Every fixture has an expectation and every expectation a fixture.
	names := slices.Sorted(maps.Keys(files))
	want := slices.Sorted(maps.Keys(fixtureEvents))
	require.Equal(t, want, names, "fixture files and expectations differ")

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := pipeline.Decode(files[name])
			require.NoError(t, err)
			require.Equal(t, fixtureEvents[name], got)
		})
	}
}

// decodeFixture decodes one fixture that holds a single event.
func decodeFixture(t *testing.T, name string) pipeline.Event {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(fixtureDir, filepath.FromSlash(name)))
	require.NoError(t, err)
	events, err := pipeline.Decode(body)
	require.NoError(t, err)
	require.Len(t, events, 1)
	return events[0]
}

func TestDecodeFormEncodedKey(t *testing.T) {
	t.Parallel()
	const key = "dir/with space/a+b é.txt"
	put := decodeFixture(t, "minio/012-s3_ObjectCreated_Put.json")
	del := decodeFixture(t, "minio/013-s3_ObjectRemoved_Delete.json")
	require.Equal(t, key, put.Key)
	require.Equal(t, key, del.Key)

	tests := []struct{ raw, want string }{
		{"plain.txt", "plain.txt"},
		{"a+b", "a b"},
		{"a%2Bb", "a+b"},
		{"dir%2Ffile", "dir/file"},
		{"dir/file", "dir/file"},
		{"%C3%A9t%C3%A9", "été"},
		{"with%2520space", "with%20space"},
		{"dir%2Fwith+space%2Fa%2Bb+%C3%A9.txt", key},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			t.Parallel()
			events, err := pipeline.Decode(recordBody(t, "ObjectCreated:Put", tt.raw))
			require.NoError(t, err)
			require.Equal(t, tt.want, events[0].Key)
		})
	}
}

// record is a minimal S3 notification record.
func record(name, key string) map[string]any {
	return map[string]any{
		"eventSource": "aws:s3",
		"awsRegion":   "eu-west-1",
		"eventTime":   "2024-05-06T07:08:09.123Z",
		"eventName":   name,
		"s3": map[string]any{
			"bucket": map[string]any{"name": "b"},
			"object": map[string]any{"key": key, "size": 7, "eTag": "e", "sequencer": "0A"},
		},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func recordBody(t testing.TB, name, key string) []byte {
	t.Helper()
	return mustJSON(t, map[string]any{"Records": []any{record(name, key)}})
}

func TestDecodeKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want pipeline.Kind
	}{
		{"ObjectCreated:Put", pipeline.KindCreated},
		{"ObjectCreated:Post", pipeline.KindCreated},
		{"ObjectCreated:Copy", pipeline.KindCreated},
		{"ObjectCreated:CompleteMultipartUpload", pipeline.KindCreated},
		{"ObjectCreated:PutTagging", pipeline.KindTagging},
		{"ObjectCreated:DeleteTagging", pipeline.KindTagging},
		{"ObjectCreated:PutRetention", pipeline.KindACL},
		{"ObjectCreated:PutLegalHold", pipeline.KindACL},
		{"ObjectRemoved:Delete", pipeline.KindRemoved},
		{"ObjectRemoved:DeleteMarkerCreated", pipeline.KindRemoved},
		{"ObjectRemoved:NoOP", pipeline.KindUnknown}, // MinIO: a delete of a key it does not have removed nothing
		{"ObjectRemoved:DeleteAllVersions", pipeline.KindRemoved},
		{"ObjectRemoved:DeleteTagging", pipeline.KindTagging},
		{"LifecycleExpiration:Delete", pipeline.KindRemoved},
		{"LifecycleExpiration:DeleteMarkerCreated", pipeline.KindRemoved},
		{"ObjectTagging:Put", pipeline.KindTagging},
		{"ObjectTagging:Delete", pipeline.KindTagging},
		{"ObjectAcl:Put", pipeline.KindACL},
		{"ObjectRestore:Post", pipeline.KindUnknown},
		{"ObjectRestore:Completed", pipeline.KindUnknown},
		{"Replication:OperationFailedReplication", pipeline.KindUnknown},
		{"LifecycleTransition", pipeline.KindUnknown},
		{"IntelligentTiering", pipeline.KindUnknown},
		{"ObjectAccessed:Get", pipeline.KindUnknown},
		{"objectcreated:put", pipeline.KindUnknown},
		{"", pipeline.KindUnknown},
	}
	for _, tt := range tests {
		for _, prefix := range []string{"", "s3:"} {
			t.Run(prefix+tt.name, func(t *testing.T) {
				t.Parallel()
				events, err := pipeline.Decode(recordBody(t, prefix+tt.name, "k"))
				require.NoError(t, err)
				require.Len(t, events, 1)
				require.Equal(t, tt.want, events[0].Kind)
				require.Equal(t, tt.name, events[0].Name)
			})
		}
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "unknown", pipeline.KindUnknown.String())
	require.Equal(t, "created", pipeline.KindCreated.String())
	require.Equal(t, "removed", pipeline.KindRemoved.String())
	require.Equal(t, "tagging", pipeline.KindTagging.String())
	require.Equal(t, "acl", pipeline.KindACL.String())
	require.Equal(t, "test", pipeline.KindTest.String())
	require.Equal(t, "Kind(42)", pipeline.Kind(42).String())
	require.Equal(t, "Kind(-1)", pipeline.Kind(-1).String())
}

func TestDecodeShapes(t *testing.T) {
	t.Parallel()
	second := record("s3:ObjectRemoved:Delete", "other")
	second["s3"].(map[string]any)["object"] = map[string]any{"key": "other", "eTag": `"quoted"`}
	testEvent := `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2014-10-13T15:57:02.089Z","Bucket":"bucketname"}`

	tests := []struct {
		name string
		body []byte
		want []pipeline.Event
	}{
		{
			name: "two records in order, quoted etag",
			body: mustJSON(t, map[string]any{"Records": []any{record("ObjectCreated:Put", "dir%2Fa"), second}}),
			want: []pipeline.Event{
				{
					Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Source: "aws:s3", Region: "eu-west-1",
					Bucket: "b", Key: "dir/a", Size: 7, ETag: "e", Sequencer: "0A",
					Time: utc(2024, time.May, 6, 7, 8, 9, 123),
				},
				{
					Kind: pipeline.KindRemoved, Name: "ObjectRemoved:Delete", Source: "aws:s3", Region: "eu-west-1",
					Bucket: "b", Key: "other", ETag: "quoted", Time: utc(2024, time.May, 6, 7, 8, 9, 123),
				},
			},
		},
		{
			name: "time with offset is converted to UTC, absent fields stay zero",
			body: []byte(`{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"2024-05-06T09:08:09+02:00",
				"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`),
			want: []pipeline.Event{{
				Kind: pipeline.KindCreated, Name: "ObjectCreated:Put", Bucket: "b", Key: "k",
				Time: utc(2024, time.May, 6, 7, 8, 9, 0),
			}},
		},
		{
			name: "unknown event name is not an error",
			body: recordBody(t, "s3:ObjectRestore:Completed", "k"),
			want: []pipeline.Event{{
				Kind: pipeline.KindUnknown, Name: "ObjectRestore:Completed", Source: "aws:s3", Region: "eu-west-1",
				Bucket: "b", Key: "k", Size: 7, ETag: "e", Sequencer: "0A", Time: utc(2024, time.May, 6, 7, 8, 9, 123),
			}},
		},
		{
			name: "test event inside SNS",
			body: mustJSON(t, map[string]any{"Type": "Notification", "Message": testEvent}),
			want: []pipeline.Event{{
				Kind: pipeline.KindTest, Name: "TestEvent", Bucket: "bucketname",
				Time: utc(2014, time.October, 13, 15, 57, 2, 89),
			}},
		},
		{
			name: "test event without bucket or time",
			body: []byte(`{"Service":"Amazon S3","Event":"s3:TestEvent"}`),
			want: []pipeline.Event{{Kind: pipeline.KindTest, Name: "TestEvent"}},
		},
		{
			// EventBridge's keys are not form-encoded: "a+b%2Fc" is the key's own name, which an S3
			// notification would send as "a%2Bb%252Fc". Decoded, it named another object.
			name: "EventBridge Object Deleted",
			body: []byte(`{"detail-type":"Object Deleted","source":"aws.s3","region":"us-east-1","time":"2021-11-12T00:00:00Z",
				"detail":{"bucket":{"name":"B"},"object":{"key":"a+b%2Fc","sequencer":"617F0837B476E463"},
				"reason":"DeleteObject","deletion-type":"Permanently Deleted"}}`),
			want: []pipeline.Event{{
				Kind: pipeline.KindRemoved, Name: "ObjectRemoved:DeleteObject", Source: "aws.s3", Region: "us-east-1",
				Bucket: "B", Key: "a+b%2Fc", Sequencer: "617F0837B476E463", Time: utc(2021, time.November, 12, 0, 0, 0, 0),
			}},
		},
		{
			name: "EventBridge other detail type is unknown",
			body: []byte(`{"detail-type":"Object Tags Added","source":"aws.s3","region":"us-east-1","time":"2021-11-12T00:00:00Z",
				"detail":{"bucket":{"name":"B"},"object":{"key":"k","etag":"e","version-id":"v"}}}`),
			want: []pipeline.Event{{
				Kind: pipeline.KindUnknown, Name: "Object Tags Added", Source: "aws.s3", Region: "us-east-1",
				Bucket: "B", Key: "k", ETag: "e", VersionID: "v", Time: utc(2021, time.November, 12, 0, 0, 0, 0),
			}},
		},
		{
			name: "EventBridge without reason",
			body: []byte(`{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"B"},"object":{"key":"k"}}}`),
			want: []pipeline.Event{{Kind: pipeline.KindCreated, Name: "ObjectCreated", Source: "aws.s3", Bucket: "B", Key: "k"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := pipeline.Decode(tt.body)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// negativeBodies are bodies Decode must refuse as permanent failures.
var negativeBodies = map[string]string{
	"empty body":                  ``,
	"whitespace":                  " \n",
	"truncated JSON":              `{"Records":[`,
	"trailing garbage":            `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]} x`,
	"JSON null":                   `null`,
	"JSON array":                  `[]`,
	"JSON string":                 `"Records"`,
	"empty object":                `{}`,
	"unrecognized object":         `{"hello":"world"}`,
	"Records empty":               `{"Records":[]}`,
	"Records null":                `{"Records":null}`,
	"Records not an array":        `{"Records":{}}`,
	"record null":                 `{"Records":[null]}`,
	"record without bucket":       `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}`,
	"record without key":          `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"size":1}}}]}`,
	"second record bad":           `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}},{"s3":{"bucket":{"name":"b"}}}]}`,
	"bad percent escape":          `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"a%zzb"}}}]}`,
	"truncated percent escape":    `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"a%2"}}}]}`,
	"key not UTF-8":               `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"a%FFb"}}}]}`,
	"key with NUL":                `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"a%00b"}}}]}`,
	"bad event time":              `{"Records":[{"eventTime":"yesterday","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`,
	"size as string":              `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"12"}}}]}`,
	"size fractional":             `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":1.5}}}]}`,
	"negative size":               `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":-1}}}]}`,
	"eventName not a string":      `{"Records":[{"eventName":1,"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`,
	"SNS non-JSON Message":        `{"Type":"Notification","Message":"not json"}`,
	"SNS empty Message":           `{"Type":"Notification","Message":""}`,
	"SNS Message not a string":    `{"Type":"Notification","Message":{"Records":[]}}`,
	"SNS subscription":            `{"Type":"SubscriptionConfirmation","Message":"You have chosen to subscribe"}`,
	"SNS inner body bad":          `{"Type":"Notification","Message":"{\"Records\":[]}"}`,
	"SNS inside SNS":              `{"Type":"Notification","Message":"{\"Type\":\"Notification\",\"Message\":\"{\\\"Event\\\":\\\"s3:TestEvent\\\"}\"}"}`,
	"test event bad time":         `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"13/10/2014"}`,
	"other top-level Event":       `{"Service":"Amazon S3","Event":"s3:SomethingElse"}`,
	"EventBridge no detail":       `{"detail-type":"Object Created","source":"aws.s3"}`,
	"EventBridge null detail":     `{"detail-type":"Object Created","source":"aws.s3","detail":null}`,
	"EventBridge no bucket":       `{"detail-type":"Object Created","source":"aws.s3","detail":{"object":{"key":"k"}}}`,
	"EventBridge no key":          `{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{}}}`,
	"EventBridge bad key":         `{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"a\u0000b"}}}`,
	"EventBridge bad time":        `{"detail-type":"Object Created","source":"aws.s3","time":"now","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`,
	"EventBridge wrong source":    `{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}`,
	"EventBridge detail an array": `{"detail-type":"Object Created","source":"aws.s3","detail":[]}`,
	// Bodies no S3 sends: retrying them would only repeat the work they ask for.
	"key over 1024 bytes":               `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"` + strings.Repeat("k", pipeline.MaxKeyLen+1) + `"}}}]}`,
	"escaped key over 1024 bytes":       `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"` + strings.Repeat("%C3%A9", pipeline.MaxKeyLen/2+1) + `"}}}]}`,
	"version id over 1024 bytes":        `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","versionId":"` + strings.Repeat("v", pipeline.MaxVersionIDLen+1) + `"}}}]}`,
	"version id with a newline":         `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","versionId":"v1\nforged: yes"}}}]}`,
	"version id with a C1 control":      `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","versionId":"v1\u0085"}}}]}`,
	"EventBridge key over 1024 bytes":   `{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"` + strings.Repeat("k", pipeline.MaxKeyLen+1) + `"}}}`,
	"EventBridge version id with a TAB": `{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"k","version-id":"v\t1"}}}`,
	"more records than MaxRecords":      recordsBody(pipeline.MaxRecords + 1),
}

// recordsBody is an S3 notification of n minimal records.
func recordsBody(n int) string {
	one := `{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}`
	return `{"Records":[` + strings.TrimSuffix(strings.Repeat(one+",", n), ",") + `]}`
}

// TestDecodeRefusesManyRecordsCheaply: a body of empty records ({} is 3 bytes, a decoded record
// 168) is refused past MaxRecords before the records are decoded, on every path (the scan, the
// slow path a case-variant name forces, an SNS envelope): decoding them all first cost about 56
// times the body, twice, so that a few dozen such messages in flight could exhaust the consumer's
// memory. Not parallel: it reads the process's allocation counter.
func TestDecodeRefusesManyRecordsCheaply(t *testing.T) {
	records := strings.TrimSuffix(strings.Repeat("{},", 256<<10/3), ",")
	inner := `{"Records":[` + records + `]}`
	sns, err := json.Marshal(map[string]string{"Type": "Notification", "Message": inner})
	require.NoError(t, err)
	for name, body := range map[string]string{
		"S3 notification":       inner,
		"escaped name":          `{"Rec\u006frds":[` + records + `]}`, // the scan gives up on it
		"SNS envelope":          string(sns),
		"records of records":    `{"Records":[` + strings.TrimSuffix(strings.Repeat(`[{"a":"],"}],`, 256<<10/14), ",") + `]}`,
		"one record past limit": recordsBody(pipeline.MaxRecords + 1),
	} {
		for _, fast := range []bool{true, false} {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := pipeline.DecodeWith([]byte(body), fast)
			runtime.ReadMemStats(&after)
			require.ErrorIs(t, err, pipeline.ErrPermanent, name)
			require.ErrorContains(t, err, fmt.Sprintf("more than %d records", pipeline.MaxRecords), name)
			alloc := after.TotalAlloc - before.TotalAlloc
			require.Less(t, alloc, uint64(8*len(body)+64<<10), "%s (fast %v): %d bytes allocated for a %d-byte body", name, fast, alloc, len(body))
		}
	}
}

// TestDecodeErrorsQuoteLittle: an error quotes at most a few hundred bytes of what the body chose
// (errors are logged on every receive and the ingress answers with them).
func TestDecodeErrorsQuoteLittle(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("Z", 250_000)
	for name, body := range map[string]string{
		"event time":     `{"Records":[{"eventTime":"` + long + `","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`,
		"key escape":     `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"%zz` + long + `"}}}]}`,
		"SNS type":       `{"Type":"` + long + `","Message":"{}"}`,
		"test event":     `{"Service":"Amazon S3","Event":"` + long + `"}`,
		"EventBridge":    `{"detail-type":"Object Created","source":"` + long + `","detail":{}}`,
		"multibyte runs": `{"Records":[{"eventTime":"` + strings.Repeat("é", 200_000) + `","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`,
	} {
		_, err := pipeline.Decode([]byte(body))
		require.ErrorIs(t, err, pipeline.ErrPermanent, name)
		require.Less(t, len(err.Error()), 1024, "%s: %.200s", name, err.Error())
		require.True(t, utf8.ValidString(err.Error()), name)
	}
}

// TestDecodeLimits: what is within the limits decodes (the refusals are in negativeBodies).
func TestDecodeLimits(t *testing.T) {
	t.Parallel()
	events, err := pipeline.Decode([]byte(recordsBody(pipeline.MaxRecords)))
	require.NoError(t, err)
	require.Len(t, events, pipeline.MaxRecords)

	key := strings.Repeat("é", pipeline.MaxKeyLen/2) // 1024 bytes, decoded
	version := strings.Repeat("v", pipeline.MaxVersionIDLen)
	for _, fast := range []bool{true, false} {
		events, err := pipeline.DecodeWith(mustJSON(t, map[string]any{"Records": []any{map[string]any{
			"eventName": "ObjectRemoved:Delete",
			"s3": map[string]any{"bucket": map[string]any{"name": "b"}, "object": map[string]any{
				"key": strings.Repeat("%C3%A9", pipeline.MaxKeyLen/2), "versionId": version}},
		}}}), fast)
		require.NoError(t, err)
		require.Equal(t, key, events[0].Key)
		require.Equal(t, version, events[0].VersionID)
	}
	events, err = pipeline.Decode([]byte(`{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","versionId":"3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"}}}]}`))
	require.NoError(t, err, "AWS's version ids (base64-like) are accepted")
	require.Equal(t, "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo", events[0].VersionID)
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for name, body := range negativeBodies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			events, err := pipeline.Decode([]byte(body))
			require.ErrorIs(t, err, pipeline.ErrPermanent)
			require.True(t, strings.HasPrefix(err.Error(), "decode: "), err.Error())
			require.Nil(t, events)
		})
	}
}

// TestDecodeDropsImplausibleSequencers: a sequencer no S3 sends (longer than MaxPlausibleSequencer
// digits, or not hexadecimal) does not refuse the body, which would dead-letter every event of it:
// it is dropped, and the event decodes as if it had none (the Processor counts it; see
// TestProcessDistrust). Plausible ones are kept as sent.
func TestDecodeDropsImplausibleSequencers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, seq, want string
	}{
		{"empty", "", ""},
		{"AWS's", "0055AED6DCD90281E5", "0055AED6DCD90281E5"},
		{"lower-case", "617f08299329d189", "617f08299329d189"},
		{"MaxPlausibleSequencer digits", strings.Repeat("F", pipeline.MaxPlausibleSequencer), strings.Repeat("F", pipeline.MaxPlausibleSequencer)},
		{"one digit too many", strings.Repeat("F", pipeline.MaxPlausibleSequencer+1), ""},
		{"64 digits", strings.Repeat("F", 64), ""},
		{"65 digits", strings.Repeat("A", 65), ""},
		{"far too long", strings.Repeat("0", 100_000), ""},
		{"non-hex", "0055XYZ", ""},
		{"a space", "0055 AED6", ""},
		{"multibyte", "0055é", ""},
		{"a sign", "-1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s3 := mustJSON(t, map[string]any{"Records": []any{
				map[string]any{"eventName": "ObjectCreated:Put", "eventTime": "2024-05-06T07:08:09Z",
					"s3": map[string]any{"bucket": map[string]any{"name": "b"}, "object": map[string]any{"key": "k", "sequencer": tt.seq}}},
				map[string]any{"eventName": "ObjectRemoved:Delete",
					"s3": map[string]any{"bucket": map[string]any{"name": "b"}, "object": map[string]any{"key": "k2", "sequencer": "0B"}}},
			}})
			sns := mustJSON(t, map[string]any{"Type": "Notification", "Message": string(s3)})
			eventBridge := mustJSON(t, map[string]any{"detail-type": "Object Created", "source": "aws.s3",
				"detail": map[string]any{"bucket": map[string]any{"name": "b"}, "object": map[string]any{"key": "k", "sequencer": tt.seq}}})
			for shape, body := range map[string][]byte{"S3": s3, "SNS": sns, "EventBridge": eventBridge} {
				for _, fast := range []bool{true, false} {
					events, err := pipeline.DecodeWith(body, fast)
					require.NoError(t, err, "%s (fast %v)", shape, fast)
					require.Equal(t, tt.want, events[0].Sequencer, "%s (fast %v)", shape, fast)
					require.Equal(t, pipeline.KindCreated, events[0].Kind, shape)
					require.Equal(t, "k", events[0].Key, shape)
					if shape != "EventBridge" {
						require.Len(t, events, 2, "the body's other events are untouched")
						require.Equal(t, "0B", events[1].Sequencer, shape)
						require.True(t, utc(2024, time.May, 6, 7, 8, 9, 0).Equal(events[0].Time), shape)
					}
				}
				events, err := pipeline.Decode(body)
				require.NoError(t, err, shape)
				require.Equal(t, tt.want, events[0].Sequencer, shape)
			}
		})
	}
}

// TestQuotedKeepsCharactersWhole: what an error quotes of a long value is cut at the start of a
// character, never inside one (which %q would show as a stray \xc3), whatever the character's width.
func TestQuotedKeepsCharactersWhole(t *testing.T) {
	t.Parallel()
	for _, r := range []string{"é", "€", "😀"} {
		for pad := 250; pad <= 257; pad++ {
			s := strings.Repeat("a", pad) + r + strings.Repeat("b", 100)
			q := pipeline.Quoted(s)
			require.NotContains(t, q, `\x`, "pad %d, %q: %s", pad, r, q)
			quoted, rest, ok := strings.Cut(q, "…")
			require.True(t, ok, q)
			require.Equal(t, fmt.Sprintf(" (%d bytes)", len(s)), rest)
			unq, err := strconv.Unquote(quoted)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(s, unq), "a prefix of the value")
			require.True(t, utf8.ValidString(unq))
			require.GreaterOrEqual(t, len(unq), 256-utf8.UTFMax+1, "cut near the limit")
			require.LessOrEqual(t, len(unq), 256)
		}
	}
	require.Equal(t, strconv.Quote("short é"), pipeline.Quoted("short é"))
	// The same through Decode: an error quoting a long event time.
	_, err := pipeline.Decode([]byte(`{"Records":[{"eventTime":"` + strings.Repeat("a", 255) + "é" + strings.Repeat("b", 100) + `","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`))
	require.ErrorIs(t, err, pipeline.ErrPermanent)
	require.NotContains(t, err.Error(), `\x`, err.Error())
}
