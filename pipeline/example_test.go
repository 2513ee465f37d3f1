package pipeline_test

import (
	"errors"
	"fmt"

	"github.com/intakehq/intake/pipeline"
)

// Decode turns an SQS message body into events; keys are form-decoded and the kind tells what the
// Processor does with each event.
func ExampleDecode() {
	body := []byte(`{"Records":[{
		"eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-25T01:12:55.096Z",
		"eventName":"ObjectCreated:Put",
		"s3":{"bucket":{"name":"uploads"},
		      "object":{"key":"alice/my+photo%2B1.png","size":1234,"eTag":"\"7979a599\"","sequencer":"18EB24A6C331BBF0"}}}]}`)
	events, err := pipeline.Decode(body)
	if err != nil {
		panic(err)
	}
	for _, ev := range events {
		fmt.Printf("%s %s/%q size=%d etag=%s sequencer=%s\n", ev.Kind, ev.Bucket, ev.Key, ev.Size, ev.ETag, ev.Sequencer)
	}

	_, err = pipeline.Decode([]byte(`{"Records":[]}`))
	fmt.Println(errors.Is(err, pipeline.ErrPermanent), err)
	// Output:
	// created uploads/"alice/my photo+1.png" size=1234 etag=7979a599 sequencer=18EB24A6C331BBF0
	// true decode: no records: permanent failure
}
