package tasks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/intakehq/intake/worker/tasks"
)

// handleVerdict is an app's handler of intake's verdicts: register it on the app's own asynq
// server, which serves the queue named by INTAKE_NOTIFY_ASYNQ_QUEUE.
func handleVerdict(ctx context.Context, t *asynq.Task) error {
	v, err := tasks.ParseUploadVerdict(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry) // never valid: do not retry
	}
	switch v.Type {
	case tasks.EventUploadValid:
		fmt.Printf("upload %s is valid: %d bytes of %s, order %s\n", v.Data.UploadID, *v.Data.Size, v.Data.SniffedType, v.Data.Metadata)
	case tasks.EventUploadRejected:
		fmt.Printf("upload %s rejected: %s\n", v.Data.UploadID, v.Data.Reason)
	case tasks.EventUploadDeleted, tasks.EventUploadAborted, tasks.EventUploadExpired:
		fmt.Printf("upload %s: %s\n", v.Data.UploadID, v.Type)
	default:
		// A type a later intake added (v.Known() is false): acknowledge it. Failing would only
		// have it retried, and archived, without ever being handled.
	}
	return nil // a redelivery of the same v.ID must do no harm: verdicts arrive at least once
}

// An app that runs asynq receives every verdict as an "intake:upload.verdict" task on its own queue
// (INTAKE_NOTIFY_ASYNQ_QUEUE=app-uploads) and handles it like any of its tasks.
func ExampleParseUploadVerdict() {
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeUploadVerdict, handleVerdict)
	// In the app: srv := asynq.NewServer(redis, asynq.Config{Queues: map[string]int{"app-uploads": 1}})
	// and srv.Run(mux). Here, three tasks as intake enqueues them, the last of a type added later:
	for _, payload := range []string{
		`{"id":"0196f1c2-7b7e-7c6a-9d51-3c1f0e2a9b10","type":"upload.valid","timestamp":"2026-05-01T10:00:00Z",` +
			`"data":{"upload_id":"0196f1c0-0000-7000-8000-000000000001","owner":"alice","bucket":"uploads","key":"uploads/alice/0196f1c0/cat.png",` +
			`"status":"valid","size":1024,"sniffed_type":"image/png","metadata":{"order":"A-17"}}}`,
		`{"id":"0196f1c2-7b7e-7c6a-9d51-3c1f0e2a9b11","type":"upload.rejected","timestamp":"2026-05-01T10:00:01Z",` +
			`"data":{"upload_id":"0196f1c0-0000-7000-8000-000000000002","owner":"alice","bucket":"uploads","key":"uploads/alice/0196f1c0/x.png",` +
			`"status":"rejected","reason":"sniff_mismatch"}}`,
		`{"id":"0196f1c2-7b7e-7c6a-9d51-3c1f0e2a9b12","type":"upload.someday","timestamp":"2026-05-01T10:00:02Z",` +
			`"data":{"upload_id":"0196f1c0-0000-7000-8000-000000000003","owner":"alice","bucket":"uploads","key":"uploads/alice/0196f1c0/y.png"}}`,
	} {
		task, err := tasks.NewUploadVerdictTask("app-uploads", []byte(payload))
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := mux.ProcessTask(context.Background(), task); err != nil {
			fmt.Println(err)
		}
	}
	// Output:
	// upload 0196f1c0-0000-7000-8000-000000000001 is valid: 1024 bytes of image/png, order {"order":"A-17"}
	// upload 0196f1c0-0000-7000-8000-000000000002 rejected: sniff_mismatch
}

// A webhook receiver in Go (the README's), verifying intake's signature with the Standard Webhooks
// library and decoding the body with ParseUploadVerdict. The example posts it a notification signed
// as intake does, with nothing but the standard library: "v1," and the base64 of HMAC-SHA256, keyed
// with the base64 after the secret's "whsec_", over "<webhook-id>.<webhook-timestamp>.<body>".
func Example_webhookReceiver() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwDR5rEYrKv2E=" // INTAKE_WEBHOOK_SECRET

	// README:begin
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		log.Fatal(err)
	}
	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		v, err := tasks.ParseUploadVerdict(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Println(v.Type, v.Data.UploadID, string(v.Data.Metadata)) // de-duplicate on v.ID
		w.WriteHeader(http.StatusNoContent)
	})
	// README:end

	srv := httptest.NewServer(receiver)
	defer srv.Close()
	body := `{"id":"0196f1c2-7b7e-7c6a-9d51-3c1f0e2a9b10","type":"upload.valid","timestamp":"2026-05-01T10:00:00Z",` +
		`"data":{"upload_id":"0196f1c0-0000-7000-8000-000000000001","owner":"alice","bucket":"uploads","key":"k","status":"valid","metadata":{"order":"A-17"}}}`
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		log.Fatal(err)
	}
	id, ts := "0196f1c2-7b7e-7c6a-9d51-3c1f0e2a9b10", strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + body))
	signed := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range []string{signed, "v1,forged"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", ts)
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// upload.valid 0196f1c0-0000-7000-8000-000000000001 {"order":"A-17"}
	// 204
	// 401
}
