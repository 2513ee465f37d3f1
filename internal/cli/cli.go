// Package cli holds intake's command line: the kong command tree, configuration loading and the
// wiring of each subcommand. cmd/intake only calls Main.
package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/redis/go-redis/v9"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/redact"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/pipeline"
)

// Version is set at build time with -ldflags "-X github.com/intakehq/intake/internal/cli.Version=v1.2.3".
var Version = "dev"

// CLI is the command tree. The log flags and --version are global; `run` takes every setting of
// the daemon, and each operator command only the sections of the configuration it uses (so that
// `intake replay dlq --help` lists what replay needs, not the daemon's forty flags).
type CLI struct {
	config.Logging `embed:""`
	ShowVersion    kong.VersionFlag `name:"version" help:"Print the version and exit."`

	Run     RunCmd     `cmd:"" help:"Run the daemon (all roles, or those in --roles)."`
	Migrate MigrateCmd `cmd:"" help:"Apply or inspect database migrations."`
	Version VersionCmd `cmd:"" help:"Print the version."`

	Replay    ReplayCmd    `cmd:"" help:"Resend S3 events to the queue: from the dead-letter queue, a JSONL file or the events archive."`
	Reconcile ReconcileCmd `cmd:"" help:"Compare the bucket (--bucket) with the objects table; --fix repairs the difference."`
	Jobs      JobsCmd      `cmd:"" help:"List, run and delete asynq tasks (archived ones after a fix)."`
	Sweep     SweepCmd     `cmd:"" help:"Abort the bucket's stale multipart uploads once (--dry-run lists them)."`
	Outbox    OutboxCmd    `cmd:"" help:"Show webhook deliveries given up, send them again (redeliver) or drop them (discard)."`
}

// config assembles the configuration of command (kong's command path, e.g. "replay dlq") from the
// sections that command takes; the others stay zero.
func (c *CLI) config(command string) config.Config {
	var cfg config.Config
	name, _, _ := strings.Cut(command, " ")
	switch name {
	case "run":
		cfg = c.Run.Config
	case "migrate":
		cfg.Database = c.Migrate.Database
	case "replay":
		cfg.AWS.AWSRegion, cfg.AWS.SQSEndpoints = c.Replay.AWSRegion, c.Replay.SQSEndpoints
		cfg.QueueURL, cfg.DLQ, cfg.Database = c.Replay.QueueURL, c.Replay.DLQ.DLQ, c.Replay.Archive.Database
	case "reconcile":
		cfg.Database, cfg.Redis, cfg.S3Bucket = c.Reconcile.Database, c.Reconcile.Redis, c.Reconcile.S3Bucket
		cfg.AWS.AWSRegion, cfg.AWS.S3Endpoints = c.Reconcile.AWSRegion, c.Reconcile.S3Client.Endpoints()
	case "sweep":
		cfg.Database, cfg.Redis, cfg.S3Bucket = c.Sweep.Database, c.Sweep.Redis, c.Sweep.S3Bucket
		cfg.AWS.AWSRegion, cfg.AWS.S3Endpoints = c.Sweep.AWSRegion, c.Sweep.S3Client.Endpoints()
	case "jobs":
		cfg.Redis = c.Jobs.Redis
	case "outbox":
		cfg.Database, cfg.Redis = c.Outbox.Database, c.Outbox.Redeliver.Redis
	}
	cfg.Logging = c.Logging
	return cfg
}

// Globals is what every command's Run method receives.
type Globals struct {
	// Ctx is cancelled on SIGINT/SIGTERM.
	Ctx context.Context
	// Config is the loaded (not yet validated) configuration.
	Config *config.Config
	// Log is the process logger.
	Log *slog.Logger
	// Stdout is where commands print their results.
	Stdout io.Writer
}

// exitInterrupted is the exit status of an operator command stopped by SIGINT/SIGTERM before it
// did everything asked (128 + SIGINT, as shells report it): what it did is in its summary, and
// running it again continues. Scripts must not take it for success.
const exitInterrupted = 130

// exitError carries a specific exit code.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// exitUsage is the exit status of a usage error: flags kong cannot parse, and those a command's Run
// refuses before it does anything (usageError).
const exitUsage = 2

// usageError is a command line that a command's Run refuses before it does anything: a flag's value
// out of its range, flags that do not go together, a choice the command needs and was not given.
// Main prints it and exits exitUsage, as kong does for the flags it cannot parse. A setting that is
// missing or invalid in the environment (DATABASE_URL, INTAKE_BUCKET, …) is not one: it exits 1.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// usage returns err as a usageError (nil when err is nil), for checks of a command's flags.
func usage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// Main parses args, runs the chosen command until SIGINT/SIGTERM and returns the process exit code.
// The first signal cancels the command's context; from then on the signals are no longer caught
// here, so a second one gets Go's default and ends the process at once (killed by the signal:
// status 130 for SIGINT in a shell), however long the command takes to stop after the first (an
// operator command returning messages to a hanging SQS, say). The daemon catches the second one
// itself while it drains, to give up waiting and close what it can first (see App.drain).
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	return MainContext(ctx, args, stdout, stderr)
}

// MainContext is Main with the caller's context: cancelling ctx is the same as SIGTERM.
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c CLI
	exit := -1
	parser, err := kong.New(&c,
		kong.Name("intake"),
		kong.Description("intake: presigned uploads, S3 event validation and clean-up jobs."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code; panic(exitError{code}) }),
		kong.Vars{"version": "intake " + version()},
	)
	if err != nil {
		fmt.Fprintln(stderr, "intake:", err)
		return 2
	}
	kctx, code := parse(parser, args)
	if code >= 0 {
		return code
	}
	if exit >= 0 {
		return exit
	}
	if kctx == nil {
		return 2
	}
	// Every log line is redacted, with the configuration's secrets (and the SDK's, from the
	// environment) masked wherever they appear.
	cfg := c.config(kctx.Command())
	policy := startPolicy(&cfg)
	secrets := logSecrets(&cfg, policy, os.Getenv)
	log := telemetry.NewLogger(stderr, c.LogFormat, c.LogLevel, secrets...).With("service", "intake")
	redis.SetLogger(redisLog{log.With("component", "redis")})
	unknown, closest := unknownEnv(parser.Model.Node, os.Environ(), policySecretEnv(policy)...)
	for i, name := range unknown {
		if closest[i] != "" {
			log.Warn("environment variable "+name+" is no setting of intake and is ignored: did you mean "+closest[i]+"?", "name", name, "did_you_mean", closest[i])
		} else {
			log.Warn("environment variable "+name+" is no setting of intake and is ignored", "name", name)
		}
	}
	g := &Globals{Ctx: ctx, Config: &cfg, Log: log, Stdout: stdout}
	if err := kctx.Run(g); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		if ue := (usageError{}); errors.As(err, &ue) {
			// As kong reports the flags it cannot parse: the message and where to look, no log line.
			fmt.Fprintf(stderr, "intake: %s\nSee 'intake %s --help'.\n", redact.New(secrets...).String(err.Error()), commandPath(kctx))
			return exitUsage
		}
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// Stopped by SIGINT/SIGTERM part-way (sweep, reconcile, outbox redeliver, ...): not a
			// failure to report as one, but not success either.
			log.Warn("interrupted before the command was done; running it again continues", "command", kctx.Command(), "err", err)
			fmt.Fprintln(stderr, "intake: interrupted")
			return exitInterrupted
		}
		log.Error("command failed", "command", kctx.Command(), "err", err)
		fmt.Fprintln(stderr, "intake:", redact.New(secrets...).String(err.Error()))
		return 1
	}
	return 0
}

// commandPath is the command's words without its arguments ("replay file", not "replay file
// <events.jsonl>").
func commandPath(kctx *kong.Context) string {
	var words []string
	for w := range strings.FieldsSeq(kctx.Command()) {
		if !strings.HasPrefix(w, "<") {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}

// startPolicy is the policy file as every command starts (nil when it does not load: the command
// that uses it reports why). A command without the policy's flag (such as version) has it from the
// environment.
func startPolicy(cfg *config.Config) *pipeline.Policy {
	policy, err := pipeline.LoadPolicy(cmp.Or(cfg.PolicyFile, os.Getenv("INTAKE_POLICY_FILE")))
	if err != nil {
		return nil
	}
	return policy
}

// logSecrets is what every log line masks: the configuration's secrets, the policy's webhook
// secrets (read from their secret_env variables) and the AWS SDK's from the environment.
func logSecrets(cfg *config.Config, policy *pipeline.Policy, getenv func(string) string) []string {
	secrets := append(cfg.Secrets(), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN"))
	if policy != nil {
		secrets = append(secrets, policy.Secrets(getenv)...)
	}
	return secrets
}

// policySecretEnv names the variables the policy's webhooks read their secrets from (secret_env):
// settings too, though no flag reads them.
func policySecretEnv(policy *pipeline.Policy) []string {
	if policy == nil {
		return nil
	}
	var names []string
	for _, w := range policy.Webhooks {
		names = append(names, w.SecretEnv)
	}
	return names
}

// parse runs kong's parser, turning its exit requests (--help, usage errors) into a code.
func parse(parser *kong.Kong, args []string) (kctx *kong.Context, code int) {
	code = -1
	defer func() {
		if r := recover(); r != nil {
			ee, ok := r.(exitError)
			if !ok {
				panic(r)
			}
			code = ee.code
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		// Its error quotes the argument it did not take, which may be a URL with its password
		// (`intake run postgres://app:pw@db/intake`): each argument's password is masked, whatever
		// it holds (a space, a quote), and any URL as in a log.
		msg := err.Error()
		for _, arg := range args {
			for _, pw := range redact.Secrets(arg) {
				if pw != "" { // however short: this message is short, masking a word of it is harmless
					msg = strings.ReplaceAll(msg, pw, redact.Mask)
				}
			}
		}
		parser.Errorf("%s", redact.String(msg))
		return nil, 2
	}
	return kctx, -1
}

// VersionCmd prints the version and build information.
type VersionCmd struct{}

// Run prints the version (as `intake --version` does).
func (VersionCmd) Run(g *Globals) error {
	fmt.Fprintf(g.Stdout, "intake %s\n", version())
	return nil
}

// version is Version, or the module version of a `go install`ed binary.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}

// notifyTerm returns a channel that receives a second SIGINT/SIGTERM (the first one cancels the
// context, and Main stops catching signals then): a second signal forces exit. A second signal
// sent before the drain registered it gets Go's default, which ends the process at once.
func notifyTerm() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	return ch, func() { signal.Stop(ch) }
}
