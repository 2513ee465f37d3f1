package cli

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/progress"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// JobsCmd lists, re-runs and deletes asynq tasks (archived ones above all, after a fix). Without
// --queue they act on intake's own queues only (intakeQueues), never on the other queues of the
// Redis: the app's verdict queue (INTAKE_NOTIFY_ASYNQ_QUEUE) and other applications' queues are
// reached by naming them with --queue.
type JobsCmd struct {
	config.Redis `embed:""`

	List   JobsListCmd   `cmd:"" help:"List tasks of a state as a table (id, type, queue, state, last error, next process at)."`
	Run    JobsRunCmd    `cmd:"" help:"Run tasks now: one (--id) or every task of the state (--all)."`
	Delete JobsDeleteCmd `cmd:"" help:"Delete tasks: one (--id) or every task of the state (--all, with --yes; --dry-run counts them)."`
}

// intakeQueues are intake's own asynq queues, those the jobs commands act on without --queue: the
// jobs role's (worker/tasks) and the webhook deliveries' (internal/webhook).
var intakeQueues = []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow, webhook.Queue}

// Task states the jobs commands accept.
const (
	stateArchived  = "archived"
	stateRetry     = "retry"
	stateScheduled = "scheduled"
	statePending   = "pending"
)

// queueFlag is --queue, shared by the jobs subcommands.
type queueFlag struct {
	Queue string `name:"queue" placeholder:"Q" help:"asynq queue, any (default: intake's own queues, intake-critical, intake-default, intake-low and intake-webhooks, never the app's verdict queue nor other applications' queues)."`
}

// jobsFlags are the flags of jobs list and jobs delete: the queue and a task state. jobs run has a
// --state of its own, without pending (pending tasks run anyway).
type jobsFlags struct {
	queueFlag `embed:""`
	State     string `name:"state" default:"archived" enum:"archived,retry,scheduled,pending" help:"Task state: archived, retry, scheduled or pending."`
}

// open returns an Inspector on the configured Redis and the queues to act on: --queue, else those
// of intakeQueues that exist in Redis.
func (f queueFlag) open(g *Globals) (*asynq.Inspector, []string, error) {
	opt, err := parseRedisURL(g.Config.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	insp := asynq.NewInspector(opt)
	all, err := insp.Queues()
	if err != nil {
		_ = insp.Close()
		return nil, nil, fmt.Errorf("list asynq queues: %w", err)
	}
	if f.Queue != "" {
		// A queue exists in Redis once a task was enqueued to it, and no longer after Redis lost
		// its data: a named queue that does not exist holds no task (the runbooks' "is it
		// empty?" asks it), which is not an error. (asynq's bulk calls answer a missing queue with
		// an error its ErrQueueNotFound does not match.)
		if !slices.Contains(all, f.Queue) {
			if !slices.Contains(intakeQueues, f.Queue) && f.Queue != g.Config.NotifyAsynqQueue {
				_ = insp.Close()
				return nil, nil, fmt.Errorf("queue %q is not one of intake's (%s) and does not exist in Redis, which holds: %s",
					f.Queue, strings.Join(intakeQueues, ", "), cmp.Or(strings.Join(all, ", "), "no queue"))
			}
			g.Log.Warn("the queue does not exist in Redis (nothing was enqueued to it yet, or Redis lost its data): it holds no task", "queue", f.Queue)
			return insp, nil, nil
		}
		return insp, []string{f.Queue}, nil
	}
	var queues []string
	for _, q := range intakeQueues {
		if slices.Contains(all, q) {
			queues = append(queues, q)
		}
	}
	return insp, queues, nil
}

// scope names the queues the command acts on, for messages.
func (f queueFlag) scope() string {
	if f.Queue != "" {
		return "queue " + f.Queue
	}
	return "intake's queues (" + strings.Join(intakeQueues, ", ") + ")"
}

// JobsListCmd lists tasks.
type JobsListCmd struct {
	jobsFlags `embed:""`
	Limit     int  `name:"limit" default:"100" help:"Print at most this many tasks per queue (0: all)."`
	JSON      bool `name:"json" help:"Print JSON lines instead of a table."`
}

// jobRow is one listed task.
type jobRow struct {
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	Queue         string    `json:"queue"`
	State         string    `json:"state"`
	LastError     string    `json:"last_error,omitempty"`
	LastFailedAt  time.Time `json:"last_failed_at,omitzero"`
	Retried       int       `json:"retried"`
	MaxRetry      int       `json:"max_retry"`
	NextProcessAt time.Time `json:"next_process_at,omitzero"`
	Payload       string    `json:"payload"`
}

// Run prints the table.
func (c *JobsListCmd) Run(g *Globals) error {
	insp, queues, err := c.open(g)
	if err != nil {
		return err
	}
	defer insp.Close()
	// No progress here: the table is the output (and one page per queue takes milliseconds).
	var rows []jobRow
	for _, q := range queues {
		if g.Ctx.Err() != nil {
			break
		}
		got, err := listTasks(insp, q, c.State, c.Limit)
		if err != nil {
			return err
		}
		rows = append(rows, got...)
	}
	if c.JSON {
		enc := json.NewEncoder(g.Stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("write task: %w", err)
			}
		}
		return interrupted(g)
	}
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tQUEUE\tSTATE\tLAST ERROR\tNEXT PROCESS AT")
	for _, r := range rows {
		next := "-"
		if !r.NextProcessAt.IsZero() {
			next = r.NextProcessAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Type, r.Queue, r.State, oneLine(r.LastError, 60), next)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	fmt.Fprintf(g.Stdout, "%d %s tasks in %d queues\n", len(rows), c.State, len(queues))
	return interrupted(g)
}

// interrupted is exitError{exitInterrupted} when the command's context ended (SIGINT/SIGTERM)
// before it was done, else nil.
func interrupted(g *Globals) error {
	if g.Ctx.Err() != nil {
		return exitError{exitInterrupted}
	}
	return nil
}

// listTasks pages through one queue's tasks of a state (limit 0: all).
func listTasks(insp *asynq.Inspector, queue, state string, limit int) ([]jobRow, error) {
	list := map[string]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		stateArchived: insp.ListArchivedTasks, stateRetry: insp.ListRetryTasks,
		stateScheduled: insp.ListScheduledTasks, statePending: insp.ListPendingTasks,
	}[state]
	if list == nil {
		return nil, fmt.Errorf("unknown state %q", state)
	}
	const pageSize = 100
	var rows []jobRow
	for page := 1; ; page++ {
		infos, err := list(queue, asynq.PageSize(pageSize), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil, fmt.Errorf("queue %q not found", queue)
		}
		if err != nil {
			return nil, fmt.Errorf("list %s tasks of queue %s: %w", state, queue, err)
		}
		for _, t := range infos {
			if limit > 0 && len(rows) >= limit {
				return rows, nil
			}
			rows = append(rows, jobRow{
				ID: t.ID, Type: t.Type, Queue: t.Queue, State: t.State.String(), LastError: t.LastErr,
				LastFailedAt: t.LastFailedAt, Retried: t.Retried, MaxRetry: t.MaxRetry,
				NextProcessAt: t.NextProcessAt, Payload: string(t.Payload),
			})
		}
		if len(infos) < pageSize {
			return rows, nil
		}
	}
}

// oneLine flattens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// taskSelector picks one task (--id) or all of a state (--all).
type taskSelector struct {
	ID  string `name:"id" placeholder:"ID" help:"The task's id (searched in intake's queues unless --queue is given)."`
	All bool   `name:"all" help:"Every task of --state in the queue(s)."`
}

func (s taskSelector) validate() error {
	if (s.ID == "") == !s.All {
		return usage(errors.New("give exactly one of --id ID or --all"))
	}
	return nil
}

// findTask returns the queue that holds task id.
func findTask(insp *asynq.Inspector, queues []string, id string) (string, error) {
	for _, q := range queues {
		if _, err := insp.GetTaskInfo(q, id); err == nil {
			return q, nil
		} else if !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			return "", fmt.Errorf("look up task %s in queue %s: %w", id, q, err)
		}
	}
	return "", fmt.Errorf("task %s not found in queues %s", id, strings.Join(queues, ", "))
}

// JobsRunCmd runs tasks now.
type JobsRunCmd struct {
	queueFlag `embed:""`
	// State leaves out pending: pending tasks already run as soon as a worker is free.
	State        string `name:"state" default:"archived" enum:"archived,retry,scheduled" help:"Task state: archived, retry or scheduled (pending tasks already run as soon as a worker is free)."`
	taskSelector `embed:""`
}

// Run moves the selected tasks to pending.
func (c *JobsRunCmd) Run(g *Globals) error {
	if err := c.validate(); err != nil {
		return err
	}
	f := jobsFlags{queueFlag: c.queueFlag, State: c.State}
	return applyTasks(g, f, c.taskSelector, "jobs run", "run", func(insp *asynq.Inspector, q string) (int, error) {
		switch c.State {
		case stateRetry:
			return insp.RunAllRetryTasks(q)
		case stateScheduled:
			return insp.RunAllScheduledTasks(q)
		default:
			return insp.RunAllArchivedTasks(q)
		}
	}, func(insp *asynq.Inspector, q, id string) error { return insp.RunTask(q, id) })
}

// JobsDeleteCmd deletes tasks.
type JobsDeleteCmd struct {
	jobsFlags    `embed:""`
	taskSelector `embed:""`
	Yes          bool `name:"yes" help:"Confirm --all: delete every task of --state in the queue(s)."`
	DryRun       bool `name:"dry-run" help:"Count what would be deleted; delete nothing."`
}

// Run deletes the selected tasks. --all needs --yes (or --dry-run, which only counts).
func (c *JobsDeleteCmd) Run(g *Globals) error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.DryRun {
		return applyTasks(g, c.jobsFlags, c.taskSelector, "jobs delete (dry run)", "would_delete", func(insp *asynq.Inspector, q string) (int, error) {
			info, err := insp.GetQueueInfo(q)
			if err != nil {
				return 0, err
			}
			return stateCount(info, c.State), nil
		}, func(*asynq.Inspector, string, string) error { return nil })
	}
	if c.All && !c.Yes {
		return usagef("jobs delete --all deletes every %s task of %s: add --yes to delete them, or --dry-run to count them first; nothing was deleted", c.State, c.scope())
	}
	return applyTasks(g, c.jobsFlags, c.taskSelector, "jobs delete", "deleted", func(insp *asynq.Inspector, q string) (int, error) {
		switch c.State {
		case stateRetry:
			return insp.DeleteAllRetryTasks(q)
		case stateScheduled:
			return insp.DeleteAllScheduledTasks(q)
		case statePending:
			return insp.DeleteAllPendingTasks(q)
		default:
			return insp.DeleteAllArchivedTasks(q)
		}
	}, func(insp *asynq.Inspector, q, id string) error { return insp.DeleteTask(q, id) })
}

// stateCount is how many tasks of state the queue holds.
func stateCount(info *asynq.QueueInfo, state string) int {
	switch state {
	case stateRetry:
		return info.Retry
	case stateScheduled:
		return info.Scheduled
	case statePending:
		return info.Pending
	default:
		return info.Archived
	}
}

// applyTasks runs all (per queue, for f.State) or one (by id) and prints a summary.
func applyTasks(g *Globals, f jobsFlags, sel taskSelector, title, verb string,
	all func(*asynq.Inspector, string) (int, error), one func(*asynq.Inspector, string, string) error,
) error {
	insp, queues, err := f.open(g)
	if err != nil {
		return err
	}
	defer insp.Close()
	began := time.Now()
	s := &progress.Summary{Title: title}
	if sel.ID != "" {
		q, err := findTask(insp, queues, sel.ID)
		if err != nil {
			return err
		}
		if err := one(insp, q, sel.ID); err != nil {
			return fmt.Errorf("%s task %s in queue %s: %w", title, sel.ID, q, err)
		}
		s.Elapsed = time.Since(began)
		s.Add("task", sel.ID).Add("queue", q).Add(verb, 1)
		return s.WriteText(g.Stdout)
	}
	bar := newBar(g, false, title, int64(len(queues)), "queues")
	total := 0
	var errs []error
	for _, q := range queues {
		if g.Ctx.Err() != nil {
			errs = append(errs, g.Ctx.Err())
			break
		}
		n, err := all(insp, q)
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			errs = append(errs, fmt.Errorf("%s %s tasks of queue %s: %w", title, f.State, q, err))
		}
		if n > 0 {
			s.Add(q, n)
		}
		total += n
		bar.Add(1)
	}
	bar.Finish()
	s.Elapsed = time.Since(began)
	s.Add("state", f.State).Add("queues", len(queues)).Add(verb, total)
	if err := s.WriteText(g.Stdout); err != nil {
		return err
	}
	return errors.Join(errs...)
}
