package queue

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// sdkProtocol is the SDK client's own protocol (the one NewLean takes from its client).
var sdkProtocol = sqs.New(sqs.Options{Region: "us-east-1"}).Options().Protocol

// sdkDecode decodes body, a successful answer to op, into out with the SDK's own protocol decoder
// (as Lean's decode does).
func sdkDecode(op *smithy.OperationSchema, body []byte, out smithy.Deserializable) error {
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	return sdkProtocol.DeserializeResponse(context.Background(), op, sqs.TypeRegistry, &smithyhttp.Response{Response: resp}, out)
}

// agreesWithSDK reports whether scanned reads body, an answer to op, into an O; when it does, the
// SDK's decoder must read body without error into an equal O, or the test fails.
func agreesWithSDK[O any, P interface {
	*O
	smithy.Deserializable
}](t testing.TB, op *smithy.OperationSchema, body []byte) bool {
	t.Helper()
	got, want := P(new(O)), P(new(O))
	if !scanned(got, body) {
		return false
	}
	if err := sdkDecode(op, body, want); err != nil {
		t.Fatalf("read %+v from %q; the SDK refuses it: %v", got, body, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", body, got, want)
	}
	return true
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
		if !agreesWithSDK[sqs.ReceiveMessageOutput](t, opReceiveMessage, []byte(body)) {
			t.Fatalf("not read: %s", body)
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
			if err := sdkDecode(opReceiveMessage, body.Bytes(), &sqs.ReceiveMessageOutput{}); err != nil {
				b.Fatal(err)
			}
		}
	})
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
		if !agreesWithSDK[sqs.DeleteMessageBatchOutput](t, opDeleteMessageBatch, []byte(body)) {
			t.Fatalf("not read: %s", body)
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

// FuzzScanAnswers: whatever scanReceive or scanDeleteBatch reads, the SDK's decoder reads without
// error into the same output.
func FuzzScanAnswers(f *testing.F) {
	for _, body := range append(receiveAnswers, deleteAnswers...) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		agreesWithSDK[sqs.ReceiveMessageOutput](t, opReceiveMessage, []byte(body))
		agreesWithSDK[sqs.DeleteMessageBatchOutput](t, opDeleteMessageBatch, []byte(body))
	})
}
