package queue

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// sdkProtocol is the SDK client's own protocol (the one NewLean takes from its client).
var sdkProtocol = sqs.New(sqs.Options{Region: "us-east-1"}).Options().Protocol

// sdkReceive decodes body, a ReceiveMessage answer, with the SDK's own protocol decoder (as Lean's
// decode does).
func sdkReceive(t testing.TB, body []byte) (*sqs.ReceiveMessageOutput, error) {
	t.Helper()
	if sdkProtocol == nil {
		t.Fatal("the SDK client has no protocol")
	}
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	out := &sqs.ReceiveMessageOutput{}
	err := sdkProtocol.DeserializeResponse(context.Background(), opReceiveMessage, sqs.TypeRegistry, &smithyhttp.Response{Response: resp}, out)
	return out, err
}

// receiveAnswers are ReceiveMessage answers in the form SQS and kumo send: the S3 event bodies
// escaped as JSON strings, system attributes, message attributes of every data type, non-ASCII
// text raw and escaped, white space between tokens.
var receiveAnswers = []string{
	`{"Messages":[{"MessageId":"5fea7756-0ea4-451a-a703-a558b933e274","ReceiptHandle":"MbZj6wDWli+JvwwJaBV+3dcjk2YW2vA3+STFFljTM8tJJg6HRG6PYSasuWXPJB+Cw","MD5OfBody":"fafb00f5732ab283681e124bf8747ed1","Body":"{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\",\"s3\":{\"bucket\":{\"name\":\"uploads\"},\"object\":{\"key\":\"a/b%20c.png\",\"size\":1024,\"eTag\":\"d41d8cd98f00b204e9800998ecf8427e\",\"sequencer\":\"0055AED6DCD90281E5\"}}}]}","Attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1700000000000"}}]}`,
	`{"Messages":[{"MessageId":"a","ReceiptHandle":"h1","MD5OfBody":"x","Body":"héllo <&> \u2028 \\ \"q\" \u00e9\n\t","Attributes":{"ApproximateReceiveCount":"3","SentTimestamp":"1","ApproximateFirstReceiveTimestamp":"2","SenderId":"AIDA","MessageGroupId":"g"},"MD5OfMessageAttributes":"y","MessageAttributes":{"kind":{"DataType":"String","StringValue":"zeichen-ä \"q\""},"blob":{"DataType":"Binary","BinaryValue":"AAEC/v8D"},"n.int":{"StringValue":"-3","DataType":"Number.int"}}},` +
		` {"Body":"second","MessageId":"b","ReceiptHandle":"h2"}]}`,
	" {\n  \"Messages\" : [ { \"MessageId\" : \"c\" , \"Body\" : \"\" } ] \n} \n",
}

// TestScanReceive: every answer of the plain form is read, into what the SDK's decoder gives, and
// the forms scanReceive leaves to the SDK are left to it.
func TestScanReceive(t *testing.T) {
	for _, body := range receiveAnswers {
		got, ok := scanReceive([]byte(body))
		if !ok {
			t.Fatalf("not read: %s", body)
		}
		want, err := sdkReceive(t, []byte(body))
		if err != nil {
			t.Fatalf("the SDK refuses %s: %v", body, err)
		}
		if !reflect.DeepEqual(got, want.Messages) {
			t.Errorf("%s:\n got %+v\nwant %+v", body, got, want.Messages)
		}
	}
	for _, tc := range []struct{ why, body string }{
		{"no message", `{"Messages":[]}`},
		{"no list", `{}`},
		{"an empty answer", ``},
		{"another top-level member", `{"Messages":[{"MessageId":"a"}],"Next":1}`},
		{"an unknown message member", `{"Messages":[{"MessageId":"a","Extra":"x"}]}`},
		{"a member twice", `{"Messages":[{"MessageId":"a","MessageId":"b"}]}`},
		{"an escaped name", `{"Messages":[{"Message\u0049d":"a"}]}`},
		{"a name in another case", `{"Messages":[{"messageId":"a"}]}`},
		{"null", `{"Messages":[{"MessageId":null}]}`},
		{"a number", `{"Messages":[{"MessageId":1}]}`},
		{"an empty message", `{"Messages":[{}]}`},
		{"empty attributes", `{"Messages":[{"MessageId":"a","Attributes":{}}]}`},
		{"an attribute twice", `{"Messages":[{"Attributes":{"SentTimestamp":"1","SentTimestamp":"2"}}]}`},
		{"list values", `{"Messages":[{"MessageAttributes":{"k":{"DataType":"String","StringListValues":["a"]}}}]}`},
		{"bad base64", `{"Messages":[{"MessageAttributes":{"k":{"DataType":"Binary","BinaryValue":"AAE"}}}]}`},
		{"an escaped surrogate pair", `{"Messages":[{"Body":"\ud83d\ude00"}]}`},
		{"invalid UTF-8", "{\"Messages\":[{\"Body\":\"\xff\"}]}"},
		{"trailing data", `{"Messages":[{"MessageId":"a"}]} {}`},
		{"a trailing comma", `{"Messages":[{"MessageId":"a"},]}`},
		{"unterminated", `{"Messages":[{"MessageId":"a"}`},
	} {
		if got, ok := scanReceive([]byte(tc.body)); ok {
			t.Errorf("%s: read %+v from %s; want it left to the SDK", tc.why, got, tc.body)
		}
	}
}

// FuzzScanReceive: whatever scanReceive reads, the SDK's decoder reads without error into the same
// messages.
func FuzzScanReceive(f *testing.F) {
	for _, body := range receiveAnswers {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got, ok := scanReceive([]byte(body))
		if !ok {
			return
		}
		want, err := sdkReceive(t, []byte(body))
		if err != nil {
			t.Fatalf("scanReceive read %+v from %q; the SDK refuses it: %v", got, body, err)
		}
		if !reflect.DeepEqual(got, want.Messages) {
			t.Fatalf("%q:\n got %+v\nwant %+v", body, got, want.Messages)
		}
	})
}

// BenchmarkScanReceive compares scanReceive with the SDK's decoder on an answer of ten S3 events.
func BenchmarkScanReceive(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"Messages":[`)
	for i := range 10 {
		if i > 0 {
			body.WriteByte(',')
		}
		one := receiveAnswers[0]
		body.WriteString(one[len(`{"Messages":[`) : len(one)-2])
	}
	body.WriteString(`]}`)
	if _, ok := scanReceive(body.Bytes()); !ok {
		b.Fatal("not read")
	}
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			scanReceive(body.Bytes())
		}
	})
	b.Run("sdk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sdkReceive(b, body.Bytes()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// sdkDeleteBatch decodes body, a DeleteMessageBatch answer, with the SDK's own protocol decoder.
func sdkDeleteBatch(t testing.TB, body []byte) (*sqs.DeleteMessageBatchOutput, error) {
	t.Helper()
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	out := &sqs.DeleteMessageBatchOutput{}
	err := sdkProtocol.DeserializeResponse(context.Background(), opDeleteMessageBatch, sqs.TypeRegistry, &smithyhttp.Response{Response: resp}, out)
	return out, err
}

// deleteAnswers are DeleteMessageBatch answers in the forms SQS and kumo send.
var deleteAnswers = []string{
	`{"Successful":[{"Id":"0"},{"Id":"1"},{"Id":"2"}],"Failed":[]}`,
	`{"Failed":[],"Successful":[{"Id":"9"}]}`,
	`{"Successful":[{"Id":"0"}]}`,
	` { "Successful" : [ ] } `,
	`{"Successful":[{"Id":"\u0030"}]}`,
}

// TestScanDeleteBatch: every answer of the plain form is read into what the SDK's decoder gives
// (empty lists as empty slices), and the forms scanDeleteBatch leaves to the SDK are left to it.
func TestScanDeleteBatch(t *testing.T) {
	for _, body := range deleteAnswers {
		got, ok := scanDeleteBatch([]byte(body))
		if !ok {
			t.Fatalf("not read: %s", body)
		}
		want, err := sdkDeleteBatch(t, []byte(body))
		if err != nil {
			t.Fatalf("the SDK refuses %s: %v", body, err)
		}
		if !reflect.DeepEqual(got.Successful, want.Successful) || !reflect.DeepEqual(got.Failed, want.Failed) {
			t.Errorf("%s:\n got %+v %+v\nwant %+v %+v", body, got.Successful, got.Failed, want.Successful, want.Failed)
		}
	}
	for _, tc := range []struct{ why, body string }{
		{"failed entries", `{"Successful":[],"Failed":[{"Id":"0","SenderFault":true,"Code":"ReceiptHandleIsInvalid","Message":"x"}]}`},
		{"no list", `{}`},
		{"another member", `{"Successful":[],"Next":[]}`},
		{"a list twice", `{"Successful":[],"Successful":[]}`},
		{"an entry with more", `{"Successful":[{"Id":"0","X":"y"}]}`},
		{"an entry without an id", `{"Successful":[{}]}`},
		{"a null id", `{"Successful":[{"Id":null}]}`},
		{"a trailing comma", `{"Successful":[{"Id":"0"},]}`},
		{"a leading comma", `{"Successful":[,{"Id":"0"}]}`},
		{"trailing data", `{"Successful":[]}x`},
		{"not an object", `[]`},
	} {
		if got, ok := scanDeleteBatch([]byte(tc.body)); ok {
			t.Errorf("%s: read %+v from %s; want it left to the SDK", tc.why, got, tc.body)
		}
	}
}

// FuzzScanDeleteBatch: whatever scanDeleteBatch reads, the SDK's decoder reads without error into
// the same entries.
func FuzzScanDeleteBatch(f *testing.F) {
	for _, body := range deleteAnswers {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got, ok := scanDeleteBatch([]byte(body))
		if !ok {
			return
		}
		want, err := sdkDeleteBatch(t, []byte(body))
		if err != nil {
			t.Fatalf("scanDeleteBatch read %+v from %q; the SDK refuses it: %v", got, body, err)
		}
		if !reflect.DeepEqual(got.Successful, want.Successful) || !reflect.DeepEqual(got.Failed, want.Failed) {
			t.Fatalf("%q:\n got %+v %+v\nwant %+v %+v", body, got.Successful, got.Failed, want.Successful, want.Failed)
		}
	})
}
