package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/outbox"
)

// OutboxCmd shows the notification outbox's deliveries and sends given-up ones again. Only
// redeliver reads Redis.
type OutboxCmd struct {
	config.Database `embed:""`

	Status    OutboxStatusCmd    `cmd:"" help:"Print the relay's backlog and the given-up webhook deliveries by endpoint."`
	Redeliver OutboxRedeliverCmd `cmd:"" help:"Send given-up webhook deliveries again, with a fresh retry schedule (--stuck-for: also deliveries whose tasks were lost)."`
	Discard   OutboxDiscardCmd   `cmd:"" help:"Drop given-up webhook deliveries without sending them (an endpoint removed for good): --endpoint NAME, or --all-endpoints."`
}

// OutboxStatusCmd prints the outbox's status.
type OutboxStatusCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

// Run prints the status.
func (c *OutboxStatusCmd) Run(g *Globals) error {
	st, err := openCheckedStore(g)
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := outbox.ReadStatus(g.Ctx, st.Pool)
	if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(g.Stdout).Encode(s)
	}
	return writeOutboxStatus(g.Stdout, s)
}

func writeOutboxStatus(w io.Writer, s outbox.Status) error {
	fmt.Fprintf(w, "unrelayed notifications: %d\n", s.Unrelayed)
	fmt.Fprintf(w, "oldest notification with a delivery in progress: %s\n", time.Duration(s.OldestUndeliveredSeconds*float64(time.Second)).Round(time.Second))
	if len(s.GaveUp) == 0 {
		fmt.Fprintln(w, "given-up deliveries: none")
		return nil
	}
	fmt.Fprintln(w, "given-up deliveries (intake outbox redeliver sends them again):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tNOTIFICATIONS\tOLDEST")
	for _, r := range s.GaveUp {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", r.Endpoint, r.Notifications, r.Oldest.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// OutboxRedeliverCmd sends given-up deliveries again.
type OutboxRedeliverCmd struct {
	config.Redis `embed:"" set:"redis_url_help=Redis URL of asynq (the deliveries are enqueued there)."`

	Endpoint string        `name:"endpoint" placeholder:"NAME" help:"Only deliveries to this endpoint (default: every endpoint)."`
	StuckFor time.Duration `name:"stuck-for" placeholder:"D" help:"Also send again the deliveries still pending of notifications relayed longer ago than D (their tasks were lost: Redis lost its data). Deliveries still being retried are then sent twice, under the same webhook-id (0: off)."`
	Timeout  time.Duration `name:"timeout" env:"INTAKE_WEBHOOK_TIMEOUT" default:"10s" help:"Timeout of one webhook attempt (the tasks' own timeout derives from it)."`
	DryRun   bool          `name:"dry-run" help:"Count what would be sent; send and change nothing."`
	JSON     bool          `name:"json" help:"Print the result as JSON."`
}

// Run redelivers.
func (c *OutboxRedeliverCmd) Run(g *Globals) error {
	if c.StuckFor < 0 || c.Timeout <= 0 {
		return usagef("invalid configuration:\n--stuck-for must not be negative and --timeout must be positive")
	}
	redisOpt, err := parseRedisURL(g.Config.RedisURL)
	if err != nil {
		return err
	}
	st, err := openCheckedStore(g)
	if err != nil {
		return err
	}
	defer st.Close()
	client := asynq.NewClient(redisOpt)
	defer client.Close()
	insp := asynq.NewInspector(redisOpt)
	defer insp.Close()
	o := outbox.RedeliverOptions{Tasks: insp, Endpoint: c.Endpoint, AttemptTimeout: c.Timeout, DryRun: c.DryRun}
	if c.StuckFor > 0 {
		o.StuckBefore = time.Now().Add(-c.StuckFor)
	}
	bar := newBar(g, c.JSON, "redeliver", -1, "notifications")
	o.Progress = bar.Add
	res, err := outbox.Redeliver(g.Ctx, st.Pool, client, o)
	bar.Finish()
	if c.JSON {
		// One JSON object on stdout, failed or not: what was sent before the error, and the error.
		out := struct {
			outbox.RedeliverResult
			Error string `json:"error,omitempty"`
		}{RedeliverResult: res}
		if err != nil {
			out.Error = err.Error()
		}
		if werr := json.NewEncoder(g.Stdout).Encode(out); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		if res.Notifications > 0 && !c.JSON {
			fmt.Fprintf(g.Stdout, "before the error: ")
			_ = writeRedeliver(g.Stdout, res)
		}
		return err
	}
	g.Log.Info("outbox redeliver", "notifications", res.Notifications, "deliveries", res.Deliveries, "dry_run", c.DryRun)
	if c.JSON {
		return nil
	}
	return writeRedeliver(g.Stdout, res)
}

func writeRedeliver(w io.Writer, res outbox.RedeliverResult) error {
	verb := "sent again"
	if res.DryRun {
		verb = "would send again"
	}
	fmt.Fprintf(w, "%s the deliveries of %d notifications\n", verb, res.Notifications)
	for _, ep := range slices.Sorted(maps.Keys(res.Deliveries)) {
		fmt.Fprintf(w, "  %s: %d\n", ep, res.Deliveries[ep])
	}
	return nil
}

// OutboxDiscardCmd drops given-up deliveries: those of one endpoint (--endpoint), or of every
// endpoint when asked for in so many words (--all-endpoints).
type OutboxDiscardCmd struct {
	Endpoint     string `name:"endpoint" placeholder:"NAME" help:"Drop the given-up deliveries to this endpoint."`
	AllEndpoints bool   `name:"all-endpoints" help:"Drop the given-up deliveries to every endpoint."`
}

// Run discards.
func (c *OutboxDiscardCmd) Run(g *Globals) error {
	if (c.Endpoint == "") == !c.AllEndpoints {
		return usage(errors.New("give --endpoint NAME to drop the given-up deliveries to one endpoint, or --all-endpoints to drop every endpoint's (`intake outbox status` lists them); nothing was dropped"))
	}
	st, err := openCheckedStore(g)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := outbox.Discard(g.Ctx, st.Pool, c.Endpoint)
	if err != nil {
		return err
	}
	g.Log.Info("outbox discard", "notifications", n, "endpoint", c.Endpoint)
	fmt.Fprintf(g.Stdout, "dropped the given-up deliveries of %d notifications\n", n)
	return nil
}
