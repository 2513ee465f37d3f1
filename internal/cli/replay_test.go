package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/replay"
	"github.com/intakehq/intake/internal/testkit"
)

// sqsProxy is a reverse proxy in front of the local stack's SQS (kumo). hook sees every request
// first, with its action (AmazonSQS.ReceiveMessage, …) and body; it returns true when it answered
// the request itself.
type sqsProxy struct {
	URL  string
	hook func(action string, body []byte, w http.ResponseWriter, r *http.Request) bool
}

func newSQSProxy(t *testing.T, hook func(action string, body []byte, w http.ResponseWriter, r *http.Request) bool) *sqsProxy {
	t.Helper()
	kumo, err := url.Parse(testkit.AWS().SQSEndpoint)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(kumo)
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) } // a client that gave up
	p := &sqsProxy{hook: hook}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if p.hook(strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS."), body, w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// awsEnv gives in-process commands the local stack's credentials (not parallel-safe: t.Setenv).
func awsEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// cancelOn returns a hook that cancels the command's context at the first request for action, and
// lets that request through.
func cancelOn(action string, cancel context.CancelFunc) func(string, []byte, http.ResponseWriter, *http.Request) bool {
	var once sync.Once
	return func(a string, _ []byte, _ http.ResponseWriter, _ *http.Request) bool {
		if a == action {
			once.Do(cancel)
		}
		return false
	}
}

// TestReplayInterruptedExits130: replay dlq, its dry run and replay file stopped by SIGINT part-way
// (the command's context cancelled while they run) print the summary with the interrupted note and
// exit 130, although MoveDLQ and DryRunDLQ return no error when stopped: `intake replay dlq &&
// aws sqs purge-queue …` must not purge what was not moved.
func TestReplayInterruptedExits130(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	awsEnv(t)
	c := opsSQS()
	aws := testkit.AWS()

	t.Run("replay dlq", func(t *testing.T) {
		q := testkit.Queue(t, c, 3, 30*time.Second)
		opsFill(t, c, q.DLQURL, 25)
		ctx, cancel := context.WithCancel(testkit.Context(t))
		defer cancel()
		proxy := newSQSProxy(t, cancelOn("DeleteMessageBatch", cancel)) // while the first batch is moved
		var stdout, stderr bytes.Buffer
		code := MainContext(ctx, []string{"replay", "dlq", "--from", q.DLQURL, "--to", q.URL, "--concurrency", "1", "--wait", "1s",
			"--sqs-endpoint", proxy.URL, "--aws-region", aws.Region}, &stdout, &stderr)
		require.Equal(t, exitInterrupted, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		require.Contains(t, stdout.String(), "note: interrupted: received batches were finished; run again to move the rest")
		require.Equal(t, "10", summaryField(t, stdout.String(), "sent"), "the received batch was finished")
		require.Equal(t, "10", summaryField(t, stdout.String(), "deleted"))
		moved, _ := testkit.DrainQueue(t, c, q.URL)
		require.Len(t, moved, 10)
	})

	t.Run("replay dlq --dry-run", func(t *testing.T) {
		q := testkit.Queue(t, c, 3, 30*time.Second)
		opsFill(t, c, q.DLQURL, 25)
		for _, jsonOut := range []bool{false, true} {
			ctx, cancel := context.WithCancel(testkit.Context(t))
			proxy := newSQSProxy(t, cancelOn("ReceiveMessage", cancel))
			args := []string{"replay", "dlq", "--dry-run", "--from", q.DLQURL, "--to", q.URL, "--concurrency", "1", "--wait", "1s",
				"--visibility", "1s", "--sqs-endpoint", proxy.URL, "--aws-region", aws.Region}
			if jsonOut {
				args = append(args, "--json")
			}
			var stdout, stderr bytes.Buffer
			code := MainContext(ctx, args, &stdout, &stderr)
			cancel()
			require.Equal(t, exitInterrupted, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			if jsonOut {
				var out struct {
					Interrupted bool `json:"interrupted"`
				}
				require.NoError(t, json.Unmarshal(stdout.Bytes(), &out), stdout.String())
				require.True(t, out.Interrupted, stdout.String())
			} else {
				require.Contains(t, stdout.String(), "note: interrupted: the count is partial")
			}
		}
	})

	t.Run("replay file", func(t *testing.T) {
		q := testkit.Queue(t, c, 3, 30*time.Second)
		var lines []string
		for i := range 60 {
			lines = append(lines, opsBody(i))
		}
		file := filepath.Join(t.TempDir(), "events.jsonl")
		require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
		ctx, cancel := context.WithCancel(testkit.Context(t))
		defer cancel()
		proxy := newSQSProxy(t, cancelOn("SendMessageBatch", cancel))
		var stdout, stderr bytes.Buffer
		code := MainContext(ctx, []string{"replay", "file", file, "--to", q.URL, "--concurrency", "1",
			"--sqs-endpoint", proxy.URL, "--aws-region", aws.Region}, &stdout, &stderr)
		require.Equal(t, exitInterrupted, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		require.Contains(t, stdout.String(), "note: interrupted: run again to send the rest")
	})
}

// TestReplayFileBatchFailureIsNotAnInterruption: one batch fails for good (the queue refuses the
// whole call) while another is in flight: the replay stops the other with context.Canceled, but
// it was not interrupted: exit 1 with the batch's error, not 130; the bodies never sent count as
// failed.
func TestReplayFileBatchFailureIsNotAnInterruption(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	awsEnv(t)
	c := opsSQS()
	q := testkit.Queue(t, c, 3, 30*time.Second)
	var lines []string
	for i := range 60 {
		lines = append(lines, opsBody(i))
	}
	file := filepath.Join(t.TempDir(), "events.jsonl")
	require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	// With two workers, the batch of lines 1-10 is held in flight until the replay gives it up;
	// the batch of lines 11-20 is refused (a 400, not retried by the SDK) once the first is held.
	hold, fail := mustJSON(t, opsBody(0)), mustJSON(t, opsBody(10))
	holding := make(chan struct{})
	var once sync.Once
	proxy := newSQSProxy(t, func(action string, body []byte, w http.ResponseWriter, r *http.Request) bool {
		if action != "SendMessageBatch" {
			return false
		}
		switch {
		case bytes.Contains(body, hold):
			once.Do(func() { close(holding) })
			<-r.Context().Done() // the client gave up
			return true
		case bytes.Contains(body, fail):
			<-holding
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"com.amazonaws.sqs#InvalidParameterValue","message":"injected refusal"}`))
			return true
		}
		return false
	})
	var stdout, stderr bytes.Buffer
	code := MainContext(testkit.Context(t), []string{"replay", "file", file, "--to", q.URL, "--concurrency", "2",
		"--sqs-endpoint", proxy.URL, "--aws-region", testkit.AWS().Region}, &stdout, &stderr)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	require.Contains(t, stderr.String(), "injected refusal")
	require.NotContains(t, stderr.String(), "intake: interrupted")
	require.NotContains(t, stdout.String(), "interrupted")
	read, sent, failed := summaryField(t, stdout.String(), "read"), summaryField(t, stdout.String(), "sent"), summaryField(t, stdout.String(), "failed")
	require.Equal(t, "0", sent, stdout.String())
	require.Equal(t, read, failed, "every body read and not sent is counted as failed:\n%s", stdout.String())
}

// mustJSON returns s as it appears inside a JSON string (the request bodies quote the message
// bodies).
func mustJSON(t *testing.T, s string) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return b[1 : len(b)-1]
}

// TestReplayDLQWaitZero: --wait 0 would be a short poll (WaitTimeSeconds 0), which on SQS may find
// nothing while messages are there and end the replay early: refused, as any wait that is not a
// whole number of seconds in 1s..20s.
func TestReplayDLQWaitZero(t *testing.T) {
	awsEnv(t) // were the wait let through, the command would reach for credentials
	for _, wait := range []string{"0", "0s", "500ms", "1500ms", "21s"} {
		var stdout, stderr bytes.Buffer
		code := MainContext(context.Background(), []string{"replay", "dlq", "--from", "http://127.0.0.1:1/q-dlq", "--to", "http://127.0.0.1:1/q",
			"--wait", wait, "--aws-region", "us-east-1"}, &stdout, &stderr)
		require.Equal(t, 2, code, "--wait %s: a usage error\nstdout:\n%s\nstderr:\n%s", wait, stdout.String(), stderr.String())
		require.Contains(t, stderr.String(), "is not a whole number of seconds in 1s..20s", wait)
	}
	var help bytes.Buffer
	require.Equal(t, 0, MainContext(context.Background(), []string{"replay", "dlq", "--help"}, &help, io.Discard))
	require.Contains(t, strings.Join(strings.Fields(help.String()), " "), "(whole seconds, 1s..20s)")
}

// TestStoppedBy: an interrupted run drops the interruption, and keeps any real failure joined with
// it (a worker's AccessDenied, then Ctrl-C).
func TestStoppedBy(t *testing.T) {
	real := errors.New("delete: AccessDenied")
	for _, c := range []struct {
		name string
		in   error
		want error
	}{
		{"nothing", nil, nil},
		{"the interruption", context.Canceled, nil},
		{"wrapped interruption", fmt.Errorf("receive: %w", context.Canceled), nil},
		{"interruptions joined", errors.Join(context.Canceled, fmt.Errorf("rate limit: %w", context.Canceled)), nil},
		{"a real failure", real, real},
	} {
		require.Equal(t, c.want, stoppedBy(c.in), c.name)
	}
	got := stoppedBy(errors.Join(real, fmt.Errorf("send: %w", context.Canceled)))
	require.ErrorIs(t, got, real, "the real failure is kept")
	require.NotErrorIs(t, got, context.Canceled, "the interruption is dropped")
	wrapped := fmt.Errorf("move dlq: %w", errors.Join(real, context.Canceled))
	require.Equal(t, wrapped, stoppedBy(wrapped), "a failure under a wrapped join is kept")
}

// TestReplayDLQHeldMessagesExit1: messages present at the start but held by another reader the
// whole run (a stopped replay's, a console's "poll for messages") are not moved: the move says how
// many and exits 1, so that `intake replay dlq && aws sqs purge-queue …` does not purge them; the
// dry run, whose count is right for a move made now, notes them and exits 0. Before, the move
// exited 0.
func TestReplayDLQHeldMessagesExit1(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	awsEnv(t)
	c := opsSQS()
	region := testkit.AWS().Region
	q := testkit.Queue(t, c, 3, 30*time.Second)
	opsFill(t, c, q.DLQURL, 5)
	held, err := c.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{
		QueueUrl: awssdk.String(q.DLQURL), MaxNumberOfMessages: 2, VisibilityTimeout: 120,
	})
	require.NoError(t, err)
	require.Len(t, held.Messages, 2)
	run := func(extra ...string) (int, string, string) {
		args := append([]string{"replay", "dlq", "--from", q.DLQURL, "--to", q.URL, "--wait", "1s",
			"--sqs-endpoint", testkit.AWS().SQSEndpoint, "--aws-region", region}, extra...)
		var stdout, stderr bytes.Buffer
		code := MainContext(testkit.Context(t), args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	code, stdout, stderr := run("--dry-run")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stdout, "note: 2 of the 5 messages present at the start were not counted")
	require.Equal(t, "3", summaryField(t, stdout, "messages"))

	code, stdout, stderr = run()
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Equal(t, "3", summaryField(t, stdout, "sent"))
	require.Equal(t, "2", summaryField(t, stdout, "unreached"))
	require.Contains(t, stdout, "note: 2 messages present at the start were never received")
	require.Contains(t, stderr, "2 messages present at the start were not moved")
}

// TestReplayDLQStoppedEarlyExits1: the dead-letter queue keeps receiving new poison while the
// messages present at the start are held by another reader (a killed replay): replay dlq and its
// dry run stop at their bound of skipped receipts, having moved or counted none of those. That is
// not "everything asked was done": the summary says it stopped early and the exit code is 1, so
// that `intake replay dlq && aws sqs purge-queue …` does not purge them. Before, both exited 0
// (the dry run after its first receive, with a count of 0).
func TestReplayDLQStoppedEarlyExits1(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	awsEnv(t)
	c := opsSQS()
	region := testkit.AWS().Region
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"replay dlq", nil},
		{"replay dlq --dry-run", []string{"--dry-run"}},
		{"replay dlq --dry-run --json", []string{"--dry-run", "--json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := testkit.Queue(t, c, 3, 30*time.Second)
			opsFill(t, c, q.DLQURL, 5)
			held, err := c.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{
				QueueUrl: awssdk.String(q.DLQURL), MaxNumberOfMessages: 10, VisibilityTimeout: 120,
			})
			require.NoError(t, err)
			require.Len(t, held.Messages, 5)
			// A consumer dead-letters one more message before every receive of the replay.
			var fed, failed atomic.Int32
			proxy := newSQSProxy(t, func(action string, _ []byte, _ http.ResponseWriter, r *http.Request) bool {
				if action == "ReceiveMessage" {
					time.Sleep(2 * time.Millisecond) // SentTimestamp has milliseconds: later than the start
					if _, err := c.SendMessage(r.Context(), &sqs.SendMessageInput{
						QueueUrl: awssdk.String(q.DLQURL), MessageBody: awssdk.String(opsBody(1000 + int(fed.Add(1)))),
					}); err != nil {
						failed.Add(1)
					}
				}
				return false
			})
			args := append([]string{"replay", "dlq", "--from", q.DLQURL, "--to", q.URL, "--concurrency", "1", "--wait", "1s",
				"--sqs-endpoint", proxy.URL, "--aws-region", region}, tc.args...)
			var stdout, stderr bytes.Buffer
			code := MainContext(testkit.Context(t), args, &stdout, &stderr)
			require.Zero(t, failed.Load())
			require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			require.Contains(t, stderr.String(), "stopped early")
			switch {
			case slices.Contains(tc.args, "--json"):
				var out struct {
					Messages int  `json:"messages"`
					Partial  bool `json:"partial"`
				}
				require.NoError(t, json.Unmarshal(stdout.Bytes(), &out), stdout.String())
				require.True(t, out.Partial, stdout.String())
				require.Zero(t, out.Messages)
			case slices.Contains(tc.args, "--dry-run"):
				require.Contains(t, stdout.String(), "note: stopped early: the dead-letter queue kept returning messages the dry run cannot count")
				require.Equal(t, "0", summaryField(t, stdout.String(), "messages"))
			default:
				require.Contains(t, stdout.String(), "note: stopped early: the dead-letter queue kept returning messages the replay does not move")
				require.Equal(t, "0", summaryField(t, stdout.String(), "sent"))
			}
		})
	}
}

// TestReplayDLQDryRunVisibility: a dry run gives back what it received when it ends; should that
// fail, the messages stay hidden for the whole --visibility, so a dry run refuses more than a
// minute before it reads the queue. Before, --dry-run --visibility 2h was taken.
func TestReplayDLQDryRunVisibility(t *testing.T) {
	awsEnv(t) // were the visibility let through, the command would reach for credentials
	var stdout, stderr bytes.Buffer
	code := MainContext(context.Background(), []string{"replay", "dlq", "--dry-run", "--visibility", "2h",
		"--from", "http://127.0.0.1:1/q-dlq", "--to", "http://127.0.0.1:1/q", "--aws-region", "us-east-1"}, &stdout, &stderr)
	require.Equal(t, 2, code, "a usage error\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	require.Contains(t, stderr.String(), "--visibility 2h0m0s: a dry run holds messages at most 1m0s")
}

// redriveIntoDLQ creates a queue whose redrive policy sends to dlqURL after one receive, sends body
// to it and receives it once with a 1 s visibility: a message sent before the replay starts,
// still in that queue when the replay reads the dead-letter queue's count. The function returned
// moves it to dlqURL, as SQS's redrive does, keeping its SentTimestamp: it waits for the message's
// visibility to end and receives from the queue (kumo redrives on a receive).
func redriveIntoDLQ(t *testing.T, c *sqs.Client, dlqURL, body string) func(ctx context.Context) error {
	t.Helper()
	ctx := testkit.Context(t)
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: awssdk.String(dlqURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	require.NoError(t, err)
	live, _, err := queue.Ensure(ctx, c, queue.Spec{Name: testkit.Name("t-live-"), DLQARN: attrs.Attributes[string(types.QueueAttributeNameQueueArn)], MaxReceiveCount: 1})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: awssdk.String(live)})
	})
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: awssdk.String(live), MessageBody: awssdk.String(body)})
	require.NoError(t, err)
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: awssdk.String(live), MaxNumberOfMessages: 1, VisibilityTimeout: 1})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	return func(ctx context.Context) error {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			if _, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: awssdk.String(live), MaxNumberOfMessages: 1, WaitTimeSeconds: 1}); err != nil {
				return err
			}
			counts, err := replay.Counts(ctx, c, live)
			if err != nil {
				return err
			}
			if counts == (queue.Counts{}) {
				return nil
			}
		}
		return errors.New("the message was not redriven")
	}
}

// TestReplayDLQRedrivenDuringRunExits1: a message the redrive policy moves into the dead-letter
// queue during the replay keeps its SentTimestamp, from before the start: the replay takes it for
// one present at the start and moves it in that one's place, and the eleventh message present at
// the start (held by another reader meanwhile) is left, never received, although the replay
// received as many messages as the count it read at the start. What is left exceeds what the
// replay knows it left: the summary says so and the exit code is 1, so that `intake replay dlq &&
// aws sqs purge-queue …` does not purge that message. Before, the replay exited 0.
func TestReplayDLQRedrivenDuringRunExits1(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	awsEnv(t)
	c := opsSQS()
	q := testkit.Queue(t, c, 3, 30*time.Second)
	const n = 11
	opsFill(t, c, q.DLQURL, n)
	held, err := c.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{
		QueueUrl: awssdk.String(q.DLQURL), MaxNumberOfMessages: 1, VisibilityTimeout: 120,
	})
	require.NoError(t, err)
	require.Len(t, held.Messages, 1)
	redrive := redriveIntoDLQ(t, c, q.DLQURL, opsBody(500))
	var once sync.Once
	var redriveErr error
	proxy := newSQSProxy(t, func(action string, _ []byte, _ http.ResponseWriter, r *http.Request) bool {
		if action == "SendMessageBatch" { // between the replay's first receive and its second
			once.Do(func() { redriveErr = redrive(r.Context()) })
		}
		return false
	})
	var stdout, stderr bytes.Buffer
	code := MainContext(testkit.Context(t), []string{"replay", "dlq", "--from", q.DLQURL, "--to", q.URL, "--concurrency", "1", "--wait", "1s",
		"--sqs-endpoint", proxy.URL, "--aws-region", testkit.AWS().Region}, &stdout, &stderr)
	require.NoError(t, redriveErr)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	out := stdout.String()
	require.Equal(t, "11", summaryField(t, out, "dlq_at_start"))
	require.Equal(t, "11", summaryField(t, out, "sent"))
	require.Equal(t, "0", summaryField(t, out, "unreached"))
	require.Equal(t, "1", summaryField(t, out, "unaccounted"))
	require.Contains(t, out, "note: the dead-letter queue holds 1 messages more than the run knowingly left")
	require.Contains(t, stderr.String(), "not everything moved")

	// Every message present at the start was moved, but the one reported left.
	moved, _ := testkit.DrainQueue(t, c, q.URL)
	require.Len(t, moved, n)
	require.Contains(t, moved, opsBody(500))
	require.NotContains(t, moved, awssdk.ToString(held.Messages[0].Body))
	counts, err := replay.Counts(testkit.Context(t), c, q.DLQURL)
	require.NoError(t, err)
	require.Equal(t, 1, counts.Visible+counts.InFlight, "the message left is still in the dead-letter queue")
}

// deadLetterAgain does what intake's consumer does with n messages that fail for good: it receives
// them from url and sends them to dlqURL, naming the id it received in
// queue.AttrSourceMessageID, then deletes them from url.
func deadLetterAgain(ctx context.Context, c *sqs.Client, url, dlqURL string, n int) error {
	for got, tries := 0, 0; got < n; tries++ {
		if tries == 20 {
			return fmt.Errorf("dead-lettered %d of %d messages", got, n)
		}
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: awssdk.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return err
		}
		for _, m := range out.Messages {
			attrs := m.MessageAttributes
			if attrs == nil {
				attrs = map[string]types.MessageAttributeValue{}
			}
			attrs[queue.AttrSourceMessageID] = types.MessageAttributeValue{DataType: awssdk.String("String"), StringValue: m.MessageId}
			if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: awssdk.String(dlqURL), MessageBody: m.Body, MessageAttributes: attrs}); err != nil {
				return err
			}
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: awssdk.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return err
			}
			got++
		}
	}
	return nil
}

// TestReplayDLQArrivalsAfterLastReceiveExit0: messages that reach the dead-letter queue after the
// replay's last receive (its budget spent, it receives no more) are not messages present at the
// start that it left: a new message dead-lettered meanwhile, or the moved messages themselves,
// dead-lettered again by the consumer. The replay counts them as skipped, leaves them there, and
// exits 0. Before, it reported them as unaccounted and exited 1 ("not everything moved"), whereas
// the same messages, had a receive of the replay seen them, counted as skipped (exit 0): timing
// decided.
func TestReplayDLQArrivalsAfterLastReceiveExit0(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	awsEnv(t)
	c := opsSQS()
	const n = 20 // two batches
	for _, tc := range []struct {
		name    string
		arrived int
		inject  func(ctx context.Context, q testkit.Queues) error
	}{
		{"a new message", 1, func(ctx context.Context, q testkit.Queues) error {
			_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: awssdk.String(q.DLQURL), MessageBody: awssdk.String(opsBody(900))})
			return err
		}},
		{"the moved messages, failed again", n, func(ctx context.Context, q testkit.Queues) error {
			return deadLetterAgain(ctx, c, q.URL, q.DLQURL, n)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := testkit.Queue(t, c, 3, 30*time.Second)
			opsFill(t, c, q.DLQURL, n)
			// At the delete of the second and last batch: the replay received its last messages.
			var deletes atomic.Int32
			var mu sync.Mutex
			var injectErr error
			proxy := newSQSProxy(t, func(action string, _ []byte, _ http.ResponseWriter, r *http.Request) bool {
				if action == "DeleteMessageBatch" && deletes.Add(1) == n/10 {
					err := tc.inject(r.Context(), q)
					mu.Lock()
					injectErr = err
					mu.Unlock()
				}
				return false
			})
			var stdout, stderr bytes.Buffer
			code := MainContext(testkit.Context(t), []string{"replay", "dlq", "--from", q.DLQURL, "--to", q.URL, "--concurrency", "1", "--wait", "1s",
				"--sqs-endpoint", proxy.URL, "--aws-region", testkit.AWS().Region}, &stdout, &stderr)
			mu.Lock()
			require.NoError(t, injectErr)
			mu.Unlock()
			require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			out := stdout.String()
			require.Equal(t, "20", summaryField(t, out, "sent"))
			require.Equal(t, "20", summaryField(t, out, "deleted"))
			require.Equal(t, strconv.Itoa(tc.arrived), summaryField(t, out, "skipped"))
			require.Equal(t, "0", summaryField(t, out, "unreached"))
			require.Equal(t, "0", summaryField(t, out, "unaccounted"))
			require.Contains(t, out, fmt.Sprintf("note: %d messages reached the dead-letter queue after the replay started", tc.arrived))
			left, _ := testkit.DrainQueue(t, c, q.DLQURL)
			require.Len(t, left, tc.arrived, "left there, visible")
		})
	}
}

// TestReplayDLQNativeWithoutTo: --native without --to leaves the task's DestinationArn unset, so
// that SQS moves each message back to the queue it came from, although INTAKE_QUEUE_URL is set (as
// in every deployment); with --to, the task goes there. Before, INTAKE_QUEUE_URL was taken for
// --to and every message went to intake's queue. kumo lacks message move tasks: the proxy answers
// those calls, and kumo the others (the queues' ARNs).
func TestReplayDLQNativeWithoutTo(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	awsEnv(t)
	c := opsSQS()
	q := testkit.Queue(t, c, 3, 30*time.Second)
	other := testkit.Queue(t, c, 3, 30*time.Second)
	t.Setenv("INTAKE_QUEUE_URL", q.URL)
	for _, tc := range []struct {
		name    string
		args    []string
		wantDst bool
	}{
		{"without --to", nil, false},
		{"with --to", []string{"--to", other.URL}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var start map[string]any
			proxy := newSQSProxy(t, func(action string, body []byte, w http.ResponseWriter, _ *http.Request) bool {
				w.Header().Set("Content-Type", "application/x-amz-json-1.0")
				switch action {
				case "StartMessageMoveTask":
					mu.Lock()
					defer mu.Unlock()
					if err := json.Unmarshal(body, &start); err != nil {
						start = map[string]any{"unreadable": err.Error()}
					}
					_, _ = w.Write([]byte(`{"TaskHandle":"task-1"}`))
					return true
				case "ListMessageMoveTasks":
					mu.Lock()
					defer mu.Unlock()
					if start == nil {
						_, _ = w.Write([]byte(`{"Results":[]}`))
					} else {
						_, _ = w.Write([]byte(`{"Results":[{"Status":"COMPLETED","StartedTimestamp":2000,"ApproximateNumberOfMessagesMoved":3,"ApproximateNumberOfMessagesToMove":3}]}`))
					}
					return true
				}
				return false
			})
			args := append([]string{"replay", "dlq", "--native", "--from", q.DLQURL,
				"--sqs-endpoint", proxy.URL, "--aws-region", testkit.AWS().Region}, tc.args...)
			var stdout, stderr bytes.Buffer
			code := MainContext(testkit.Context(t), args, &stdout, &stderr)
			require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			mu.Lock()
			defer mu.Unlock()
			require.NotNil(t, start, "the task was started")
			require.Contains(t, start["SourceArn"], ":"+q.DLQURL[strings.LastIndex(q.DLQURL, "/")+1:])
			dst, ok := start["DestinationArn"]
			if !tc.wantDst {
				require.False(t, ok, "no DestinationArn: SQS moves each message back to its source (request %v)", start)
				require.Contains(t, stdout.String(), "(original source queues)")
				return
			}
			require.True(t, ok, "request %v", start)
			require.Contains(t, dst, ":"+other.URL[strings.LastIndex(other.URL, "/")+1:])
		})
	}
}

// TestReplayDLQDryRunJSON: the dry run's JSON names the count read at the start present_at_start,
// as the text summary and the README do (it was "present"), and --samples 0 shows no body (it
// showed five).
func TestReplayDLQDryRunJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	awsEnv(t)
	c := opsSQS()
	q := testkit.Queue(t, c, 3, 30*time.Second)
	opsFill(t, c, q.DLQURL, 7)
	run := func(extra ...string) string {
		args := append([]string{"replay", "dlq", "--dry-run", "--from", q.DLQURL, "--to", q.URL, "--wait", "1s",
			"--sqs-endpoint", testkit.AWS().SQSEndpoint, "--aws-region", testkit.AWS().Region}, extra...)
		var stdout, stderr bytes.Buffer
		code := MainContext(testkit.Context(t), args, &stdout, &stderr)
		require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		return stdout.String()
	}

	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(run("--json")), &out))
	require.EqualValues(t, 7, out["present_at_start"], "%v", out)
	require.NotContains(t, out, "present")
	require.EqualValues(t, 7, out["messages"])
	require.Len(t, out["samples"], 5, "the default")

	var none map[string]any
	require.NoError(t, json.Unmarshal([]byte(run("--json", "--samples", "0")), &none))
	require.Empty(t, none["samples"])
	text := run("--samples", "0")
	require.Equal(t, "7", summaryField(t, text, "present_at_start"))
	require.NotContains(t, text, "sample 1:")
	require.Contains(t, run("--samples", "2"), "sample 2:")
}
