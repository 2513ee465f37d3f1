package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/progress"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/redact"
	"github.com/intakehq/intake/internal/replay"
)

// ReplayCmd resends S3 event messages to intake's queue. Only `replay dlq` reads INTAKE_DLQ_URL.
type ReplayCmd struct {
	config.AWSRegion    `embed:""`
	config.SQSEndpoints `embed:""`
	config.Queue        `embed:"" set:"queue_url_help=Queue the events are sent to (the default of --to)."`

	DLQ     ReplayDLQCmd     `cmd:"" name:"dlq" help:"Move the messages the dead-letter queue holds when it starts back to the queue (send, then delete), then stop."`
	File    ReplayFileCmd    `cmd:"" help:"Send event bodies from a JSONL file (one body per line) to the queue."`
	Archive ReplayArchiveCmd `cmd:"" help:"Send archived event bodies from the events table to the queue."`
}

// stdin is what "intake replay file -" reads (tests replace it).
var stdin io.Reader = os.Stdin

// sendFlags are the flags every replay shares.
type sendFlags struct {
	To          string `name:"to" placeholder:"QUEUE_URL" help:"Target queue URL (default: INTAKE_QUEUE_URL)."`
	Rate        string `name:"rate" placeholder:"R/s" help:"Messages per second, e.g. 200 or 200/s or 6000/m (default: unlimited)."`
	Concurrency int    `name:"concurrency" default:"4" help:"Batches of up to 10 in flight at once (1..64)."`
	DryRun      bool   `name:"dry-run" help:"Count and show what would be sent; send and delete nothing."`
	JSON        bool   `name:"json" help:"Print the summary as JSON."`
}

// check refuses the values of the shared flags that cannot work (usage errors) and returns --rate.
func (f sendFlags) check() (float64, error) {
	var errs []error
	rate, err := replay.ParseRate(f.Rate)
	if err != nil {
		errs = append(errs, fmt.Errorf("--%w", err)) // rate "x": want …
	}
	if f.Concurrency < 1 || f.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("--concurrency: %d not in 1..64", f.Concurrency))
	}
	return rate, usage(errors.Join(errs...))
}

// ReplayDLQCmd moves messages from a dead-letter queue back.
type ReplayDLQCmd struct {
	config.DLQ `embed:"" set:"dlq_url_help=Dead-letter queue the messages are moved from (the default of --from)."`

	From       string        `name:"from" placeholder:"DLQ_URL" help:"Dead-letter queue URL (default: INTAKE_DLQ_URL)."`
	Max        int           `name:"max" placeholder:"N" help:"Move at most N messages (default: the messages present when the replay starts)."`
	Visibility time.Duration `name:"visibility" help:"How long received messages stay hidden while moved; a message whose send failed reappears after it (default 60s; with --dry-run 30s, at most 1m)."`
	Wait       time.Duration `name:"wait" default:"2s" help:"Long-poll wait; a receive that finds nothing for this long ends the replay (whole seconds, 1s..20s)."`
	Native     bool          `name:"native" help:"Use SQS's StartMessageMoveTask (AWS only; emulators lack it). Without --to, SQS moves each message back to the queue it came from (INTAKE_QUEUE_URL is not used); --max does not go with it."`
	Samples    int           `name:"samples" default:"5" help:"Bodies shown by --dry-run (0: none)."`
	sendFlags  `embed:""`
}

// Run moves the messages and prints a summary.
func (c *ReplayDLQCmd) Run(g *Globals) error {
	from := cmp.Or(c.From, g.Config.DLQURL)
	to := cmp.Or(c.To, g.Config.QueueURL)
	if c.Native && !c.DryRun {
		// Without --to, SQS's move task sends each message back to the queue it came from: the
		// task gets no DestinationArn. INTAKE_QUEUE_URL, set in every deployment, is not a --to.
		to = c.To
	}
	rate, err := c.check(from, to)
	if err != nil {
		return err
	}
	client, err := sqsClient(g)
	if err != nil {
		return err
	}
	o := replay.DLQOptions{
		From: from, To: to, Max: c.Max, Rate: rate, Concurrency: c.Concurrency,
		Visibility: c.Visibility, Wait: c.Wait, Samples: c.Samples, Log: g.Log,
	}
	switch {
	case c.DryRun:
		return c.dryRun(g, client, o)
	case c.Native:
		return c.native(g, client, o)
	}
	// What the dead-letter queue holds now is what this run moves (at most --max of it): its
	// progress total.
	var total int64 = -1
	if from != "" && to != "" && from != to {
		start, err := replay.StartDLQ(g.Ctx, client, from)
		if err != nil {
			return err
		}
		o.Start = &start
		total = int64(start.Budget(c.Max))
	}
	bar := newBar(g, c.JSON, "replay dlq", total, "msg")
	o.Progress = bar
	began := time.Now()
	res, runErr := replay.MoveDLQ(g.Ctx, client, o)
	bar.Finish()
	if res.Received == 0 && runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	s := &progress.Summary{Title: "replay dlq", Elapsed: time.Since(began)}
	s.Add("from", redact.URL(from)).Add("to", redact.URL(to)).Add("dlq_at_start", res.Start.Messages).
		Add("received", res.Received).Add("sent", res.Sent).Add("deleted", res.Deleted).
		Add("send_failed", res.SendFailed).Add("delete_failed", res.DeleteFailed).Add("skipped", res.Skipped).
		Add("unreached", res.Unreached)
	s.Add("messages_per_second", s.Rate(res.Sent))
	s.Add("dlq_visible_left", res.Left.Visible).Add("dlq_in_flight_left", res.Left.InFlight).Add("unaccounted", res.Unaccounted)
	if res.Skipped > 0 {
		s.Note("%d messages reached the dead-letter queue after the replay started (some may be replayed messages that failed again): left there; look at them with --dry-run before replaying them", res.Skipped)
	}
	if res.SkipLimit {
		s.Note("stopped early: the dead-letter queue kept returning messages the replay does not move (new ones, or ones it tried already) faster than it moved the others; messages present at the start may be left: run the replay again")
	}
	if res.SendFailed > 0 {
		s.Note("%d messages were not sent and stay in the dead-letter queue; they reappear after the visibility timeout: run the replay again", res.SendFailed)
	}
	if res.DeleteFailed > 0 {
		s.Note("%d messages were sent but not deleted; a later replay sends them again (the pipeline absorbs duplicates)", res.DeleteFailed)
	}
	if res.Left.InFlight > 0 {
		s.Note("%d messages of the dead-letter queue are in flight (received by someone, perhaps a stopped replay); they reappear after their visibility timeout", res.Left.InFlight)
	}
	for _, f := range res.Failures {
		// SQS's words may quote a receipt handle, which the logs mask too.
		s.Note("failure: %s", redact.String(f))
	}
	// MoveDLQ returns nil when stopped (the batches it received are finished): whether it was
	// interrupted is the command's context's to say.
	interrupted := g.Ctx.Err() != nil
	// Messages present at the start that the run never received and that the end check found left
	// (in flight the whole run, held by another reader, a stopped replay perhaps). Not moved, they
	// must not be taken for moved (`replay dlq && purge-queue`). A count at the start that was too
	// high is not counted (see replay.DLQResult.Unreached).
	unreached := res.Unreached > 0 && !interrupted && !res.SkipLimit
	if unreached {
		s.Note("%d messages present at the start were never received: in flight during the whole run (held by another reader, perhaps a stopped replay; %d in flight now); run the replay again after their visibility timeout", res.Unreached, res.Left.InFlight)
	}
	// Left behind although the run received its budget's worth: a message redriven into the
	// dead-letter queue during the run (its SentTimestamp, from its first send, is before the start)
	// took the place of one present at the start, which is left. Not "everything moved". Messages
	// that arrived during the run, even after its last receive, are skipped, not counted here.
	unaccounted := res.Unaccounted > 0 && !interrupted && !res.SkipLimit
	if unaccounted {
		s.Note("the dead-letter queue holds %d messages more than the run knowingly left: sent to it before the start and never received by the run (visible, or in flight held by another reader), so messages present at the start may be left (a message redriven into it during the run, sent before the start, was taken for one of them); see them with --dry-run, or run the replay again", res.Unaccounted)
	}
	leftUnknown := res.LeftUnknown && !interrupted && !res.SkipLimit
	if leftUnknown {
		s.Note("could not read what the dead-letter queue holds at the end: whether messages present at the start are left is unknown; see them with --dry-run")
	}
	if interrupted {
		s.Note("interrupted: received batches were finished; run again to move the rest")
		runErr = stoppedBy(runErr)
	}
	if err := writeSummary(g, s, c.JSON); err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	if interrupted {
		return exitError{exitInterrupted}
	}
	var errs []error
	if res.SendFailed+res.DeleteFailed > 0 {
		errs = append(errs, fmt.Errorf("%d messages not sent, %d not deleted", res.SendFailed, res.DeleteFailed))
	}
	if res.SkipLimit {
		// Not everything asked was done: `intake replay dlq && aws sqs purge-queue …` must not
		// purge what this run left.
		errs = append(errs, errors.New("stopped early: messages present at the start may be left in the dead-letter queue"))
	}
	if unreached {
		errs = append(errs, fmt.Errorf("%d messages present at the start were not moved", res.Unreached))
	}
	if unaccounted {
		errs = append(errs, fmt.Errorf("not everything moved: the dead-letter queue holds %d messages the run cannot account for", res.Unaccounted))
	}
	if leftUnknown {
		errs = append(errs, errors.New("not verified: the dead-letter queue's count at the end could not be read"))
	}
	return errors.Join(errs...)
}

// check refuses the flags' values that cannot work (usage errors), before the queue is read, and
// returns --rate. from and to are the queues the run would use (the flags, else the settings).
func (c *ReplayDLQCmd) check(from, to string) (float64, error) {
	rate, err := c.sendFlags.check()
	var errs []error
	errs = append(errs, err)
	if c.Native && !c.DryRun && c.Max > 0 {
		errs = append(errs, errors.New("--max does not go with --native: SQS's move task moves every message"))
	}
	// The same queue on both sides would move messages from the dead-letter queue into itself. Given
	// on the command line, a usage error; by the settings alone, an invalid configuration (exit 1).
	var configErr error
	if from != "" && from == to {
		if c.From == "" && c.To == "" {
			configErr = fmt.Errorf("INTAKE_DLQ_URL and INTAKE_QUEUE_URL are the same queue %s", redact.URL(from))
		} else {
			errs = append(errs, fmt.Errorf("--from and --to are the same queue %s", redact.URL(from)))
		}
	}
	// 0 would be a short poll (replay.DLQOptions takes it for its default, but --wait 0 asks for
	// no wait).
	if err := replay.CheckWait(c.Wait); err != nil {
		errs = append(errs, fmt.Errorf("--%w", err))
	}
	if c.Max < 0 {
		errs = append(errs, fmt.Errorf("--max: %d is negative", c.Max))
	}
	if c.Samples < 0 {
		errs = append(errs, fmt.Errorf("--samples: %d is negative", c.Samples))
	}
	if c.Visibility != 0 && (c.Visibility < time.Second || c.Visibility > 12*time.Hour) {
		errs = append(errs, fmt.Errorf("--visibility: %s not in 1s..12h", c.Visibility))
	}
	// A dry run gives back what it received when it ends; should that fail, the messages stay
	// hidden for the whole visibility, which must therefore stay short (replay.DryRunDLQ refuses
	// more too).
	if c.DryRun && c.Visibility > replay.MaxDryRunVisibility {
		errs = append(errs, fmt.Errorf("--visibility %s: a dry run holds messages at most %s", c.Visibility, replay.MaxDryRunVisibility))
	}
	if err := usage(errors.Join(errs...)); err != nil {
		return rate, err
	}
	return rate, configErr
}

func (c *ReplayDLQCmd) dryRun(g *Globals, client *sqs.Client, o replay.DLQOptions) error {
	began := time.Now()
	res, err := replay.DryRunDLQ(g.Ctx, client, o)
	if err != nil && res.Messages == 0 {
		return err
	}
	// DryRunDLQ returns nil when stopped: the count is then partial.
	interrupted := g.Ctx.Err() != nil
	if interrupted {
		err = stoppedBy(err)
	}
	if err == nil && interrupted {
		err = exitError{exitInterrupted}
	}
	if err == nil && res.Partial {
		// The count is a lower bound: a script must not take it for what a move would move.
		err = fmt.Errorf("dry run stopped early: the count (%d messages) may be short", res.Messages)
	}
	if c.JSON {
		out := struct {
			Title string `json:"title"`
			From  string `json:"from"`
			replay.DryRunResult
			Interrupted bool `json:"interrupted,omitempty"`
		}{"replay dlq (dry run)", redact.URL(o.From), res, interrupted}
		if encErr := json.NewEncoder(g.Stdout).Encode(out); encErr != nil {
			return fmt.Errorf("write summary: %w", encErr)
		}
		return err
	}
	s := &progress.Summary{Title: "replay dlq (dry run: nothing sent or deleted)", Elapsed: time.Since(began)}
	s.Add("from", redact.URL(o.From)).Add("would_send_to", redact.URL(o.To)).Add("present_at_start", res.Present).Add("messages", res.Messages).Add("bytes", res.Bytes).Add("returned", res.Returned)
	if res.Skipped > 0 {
		s.Note("%d messages arrived after the start; a move would leave them too", res.Skipped)
	}
	if res.Expired > 0 {
		s.Note("%d messages were visible again already when the dry run gave them back (it lasted longer than --visibility); counted as returned", res.Expired)
	}
	if res.NotReturned > 0 {
		s.Note("%d messages could not be made visible at once; they reappear after the visibility timeout", res.NotReturned)
	}
	if res.Partial {
		s.Note("stopped early: the dead-letter queue kept returning messages the dry run cannot count (new ones, or ones counted already); the count may be short")
	}
	if res.Unreached > 0 && !res.Partial && !interrupted {
		s.Note("%d of the %d messages present at the start were not counted: in flight or removed; a move now would leave them too until their visibility timeout ends", res.Unreached, res.Present)
	}
	if interrupted {
		s.Note("interrupted: the count is partial (what was received was made visible again); run again to count them all")
	}
	if werr := s.WriteText(g.Stdout); werr != nil {
		return werr
	}
	for i, sm := range res.Samples {
		fmt.Fprintf(g.Stdout, "sample %d: message %s (receives %s, attributes %s)\n  %s\n",
			i+1, sm.MessageID, sm.ReceiveCount, strings.Join(sm.Attributes, ","), sm.Body)
	}
	return err
}

func (c *ReplayDLQCmd) native(g *Globals, client *sqs.Client, o replay.DLQOptions) error {
	bar := newBar(g, c.JSON, "replay dlq (native)", -1, "msg")
	o.Progress = bar
	began := time.Now()
	res, err := replay.MoveNative(g.Ctx, client, o, 2*time.Second)
	bar.Finish()
	if res.TaskHandle == "" && err != nil {
		return err
	}
	s := &progress.Summary{Title: "replay dlq (native move task)", Elapsed: time.Since(began)}
	s.Add("from", redact.URL(o.From)).Add("to", cmp.Or(redact.URL(o.To), "(original source queues)")).
		Add("task_handle", res.TaskHandle).Add("status", res.Status).Add("moved", res.Moved).Add("to_move", res.ToMove)
	if res.FailureReason != "" {
		s.Note("failure: %s", res.FailureReason)
	}
	if werr := writeSummary(g, s, c.JSON); werr != nil {
		return werr
	}
	return err
}

// ReplayFileCmd sends bodies from a JSONL file.
type ReplayFileCmd struct {
	Path      string `arg:"" name:"events.jsonl" help:"JSONL file, one S3 event body per line (a raw JSON body or a JSON string); - reads standard input."`
	sendFlags `embed:""`
}

// Run sends the file's bodies.
func (c *ReplayFileCmd) Run(g *Globals) error {
	if _, err := c.sendFlags.check(); err != nil {
		return err
	}
	var r io.Reader = stdin
	name := "standard input"
	if c.Path != "-" {
		f, err := os.Open(c.Path)
		if err != nil {
			return fmt.Errorf("open events file: %w", err)
		}
		defer f.Close()
		r, name = f, c.Path
	}
	return resend(g, "replay file "+name, replay.FileSource(r), c.sendFlags, -1)
}

// ReplayArchiveCmd sends archived bodies from the events table.
type ReplayArchiveCmd struct {
	config.Database `embed:""`

	Since     string `name:"since" required:"" placeholder:"T" help:"First received_at included: RFC 3339 (2025-01-02T15:04:05Z), a date (2025-01-02, UTC) or a duration ago (24h)."`
	Until     string `name:"until" placeholder:"T" help:"First received_at excluded (same forms; default: now)."`
	KeyPrefix string `name:"key-prefix" placeholder:"P" help:"Only events whose object key starts with P."`
	Outcome   string `name:"outcome" help:"Only events archived with exactly this outcome."`
	sendFlags `embed:""`
}

// Run sends the selected archived bodies.
func (c *ReplayArchiveCmd) Run(g *Globals) error {
	now := time.Now()
	since, err := parseTime(c.Since, now)
	if err != nil {
		return usagef("--since: %w", err)
	}
	until := now
	if c.Until != "" {
		if until, err = parseTime(c.Until, now); err != nil {
			return usagef("--until: %w", err)
		}
	}
	if !until.After(since) {
		return usagef("--until %s is not after --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	if _, err := c.sendFlags.check(); err != nil {
		return err
	}
	st, err := openCheckedStore(g)
	if err != nil {
		return err
	}
	defer st.Close()
	src := replay.ArchiveSource(st.Q, replay.ArchiveFilter{Since: since, Until: until, KeyPrefix: c.KeyPrefix, Outcome: c.Outcome})
	return resend(g, "replay archive", src, c.sendFlags, -1)
}

// resend runs replay.Resend with a progress bar and prints the summary.
func resend(g *Globals, title string, src replay.Source, f sendFlags, total int64) error {
	rate, err := f.check()
	if err != nil {
		return err
	}
	to := cmp.Or(f.To, g.Config.QueueURL)
	var client replay.SQSAPI
	if !f.DryRun {
		c, err := sqsClient(g)
		if err != nil {
			return err
		}
		client = c
	}
	bar := newBar(g, f.JSON, title, total, "msg")
	began := time.Now()
	res, runErr := replay.Resend(g.Ctx, client, src, replay.ResendOptions{
		To: to, Rate: rate, Concurrency: f.Concurrency, DryRun: f.DryRun, Progress: bar, Log: g.Log,
	})
	bar.Finish()
	if res.Read == 0 && runErr != nil {
		return runErr
	}
	if f.DryRun {
		title += " (dry run: nothing sent)"
	}
	s := &progress.Summary{Title: title, Elapsed: time.Since(began)}
	s.Add("to", redact.URL(to)).Add("read", res.Read).Add("sent", res.Sent).Add("failed", res.Failed).Add("skipped_duplicates", res.Skipped)
	if f.DryRun {
		s.Add("would_send", res.Read-res.Failed-res.Skipped)
	} else {
		s.Add("messages_per_second", s.Rate(res.Sent))
	}
	for _, fl := range res.Failures {
		s.Note("failed: %s", redact.String(fl))
	}
	// Whether it was interrupted is the command's context's to say: a batch that failed stops the
	// other workers with context.Canceled too.
	interrupted := g.Ctx.Err() != nil
	if interrupted {
		s.Note("interrupted: run again to send the rest (bodies already sent are sent again; the pipeline absorbs duplicates)")
		runErr = stoppedBy(runErr)
	}
	if err := writeSummary(g, s, f.JSON); err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	if interrupted {
		return exitError{exitInterrupted}
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d bodies not sent", res.Failed)
	}
	return nil
}

// stoppedBy returns err of a run whose command was interrupted without the interruption itself
// (context.Canceled, which the summary and exit status 130 report): nil when that was all, else the
// other errors (a worker's real failure joined with the others' cancellation).
func stoppedBy(err error) error {
	if err == nil || errors.Is(err, context.Canceled) && !hasOtherThanCanceled(err) {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var rest []error
		for _, e := range joined.Unwrap() {
			if e := stoppedBy(e); e != nil {
				rest = append(rest, e)
			}
		}
		return errors.Join(rest...)
	}
	return err
}

// hasOtherThanCanceled reports whether err, a tree of joined errors, holds a leaf that is not
// context.Canceled.
func hasOtherThanCanceled(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if hasOtherThanCanceled(e) {
				return true
			}
		}
		return false
	}
	if err == context.Canceled {
		return false
	}
	if inner := errors.Unwrap(err); inner != nil {
		return hasOtherThanCanceled(inner)
	}
	return true
}

// sqsClient builds an SQS client from the configuration (LoadAWS installs objstore.HTTPClient,
// without which a fast answer can be lost after the server acted).
func sqsClient(g *Globals) (*sqs.Client, error) {
	awsCfg, err := objstore.LoadAWS(g.Ctx, g.Config.AWS, g.Log)
	if err != nil {
		return nil, err
	}
	return queue.NewClient(awsCfg, g.Config.AWS), nil
}

// newBar returns a progress bar on stdout, or on stderr when stdout carries JSON.
func newBar(g *Globals, jsonOut bool, desc string, total int64, unit string) *progress.Bar {
	w := g.Stdout
	if jsonOut {
		w = os.Stderr
	}
	return progress.New(w, progress.Options{Description: desc, Total: total, Unit: unit})
}

// writeSummary prints s as text or JSON.
func writeSummary(g *Globals, s *progress.Summary, jsonOut bool) error {
	if !jsonOut {
		return s.WriteText(g.Stdout)
	}
	if err := json.NewEncoder(g.Stdout).Encode(s); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// parseTime reads RFC 3339, "2006-01-02T15:04:05" (UTC), "2006-01-02" (UTC) or a duration before now.
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time, a date (2006-01-02) nor a duration (24h)", s)
}
