package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/cli"
	"github.com/intakehq/intake/internal/config"
)

// root is the repository root (this file lives in ROOT/deploy).
func root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Dir(filepath.Dir(file))
}

// path joins elements under the repository root.
func path(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{root(t)}, elem...)...)
}

func readFile(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(path(t, elem...))
	require.NoError(t, err)
	return b
}

// run runs a command in dir and returns its combined output, failing the test on error.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out.String())
	return out.String()
}

// ---- configuration: the environment variables intake knows ----------------------------------------

var (
	knownEnvOnce sync.Once
	knownEnvSet  map[string]bool
)

// knownEnv returns every environment variable intake's command line reads, found by walking the kong
// grammar (cli.CLI, with the embedded config.Config and every subcommand) the way kong does: `env`
// tags, prefixed by the `envprefix` of the embedding fields. Renaming a field's variable changes
// this set, so a manifest that still uses the old name fails its test.
func knownEnv() map[string]bool {
	knownEnvOnce.Do(func() {
		knownEnvSet = map[string]bool{}
		walkEnv(reflect.TypeFor[cli.CLI](), "", knownEnvSet)
	})
	return knownEnvSet
}

func walkEnv(t reflect.Type, prefix string, out map[string]bool) {
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		if env, ok := f.Tag.Lookup("env"); ok && env != "" {
			for name := range strings.SplitSeq(env, ",") {
				out[prefix+strings.TrimSpace(name)] = true
			}
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Struct {
			continue
		}
		_, embed := f.Tag.Lookup("embed")
		_, cmd := f.Tag.Lookup("cmd")
		if f.Anonymous || embed || cmd {
			walkEnv(ft, prefix+f.Tag.Get("envprefix"), out)
		}
	}
}

// runtimeEnv are variables that are not intake settings but are legitimately set for it: the AWS
// SDK's credential chain and the Go runtime.
var runtimeEnv = map[string]bool{
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
	"AWS_PROFILE": true, "AWS_ROLE_ARN": true, "AWS_WEB_IDENTITY_TOKEN_FILE": true,
	"AWS_DEFAULT_REGION": true, "GOMEMLIMIT": true, "GOMAXPROCS": true, "GODEBUG": true,
}

// unknownEnv returns the names in env that intake does not read.
func unknownEnv(names []string) []string {
	var bad []string
	for _, n := range names {
		if !knownEnv()[n] && !runtimeEnv[n] {
			bad = append(bad, n)
		}
	}
	sort.Strings(bad)
	return bad
}

func TestKnownEnvFollowsConfig(t *testing.T) {
	t.Parallel()
	env := knownEnv()
	// A sample from every level of the grammar: top level, embedded sections, prefixed sections and
	// a subcommand's own flags. If the walk broke, the env checks of every other test would be empty.
	for _, name := range []string{
		"DATABASE_URL", "REDIS_URL", "AWS_REGION", "AWS_ENDPOINT_URL_S3", "INTAKE_S3_PUBLIC_ENDPOINT",
		"INTAKE_BUCKET", "INTAKE_QUEUE_URL", "INTAKE_LISTEN_ADDR", "INTAKE_SHUTDOWN_GRACE",
		"INTAKE_CONSUMER_WORKERS", "INTAKE_CONSUMER_INGRESS_TOKEN", "INTAKE_API_JWT_SECRET",
		"INTAKE_API_INSECURE_DEV_AUTH", "INTAKE_JOBS_SWEEP_CRON", "INTAKE_ROLES",
	} {
		require.True(t, env[name], "%s not found in the configuration structs", name)
	}
	require.False(t, env["INTAKE_WORKERS"], "prefixes must be applied")
	require.Empty(t, unknownEnv([]string{"INTAKE_MIGRATE", "AWS_ACCESS_KEY_ID"}))
	require.Equal(t, []string{"INTAKE_NOPE"}, unknownEnv([]string{"INTAKE_NOPE", "GOMEMLIMIT"}))
}

// envMu serialises tests that load a configuration through the process environment.
var envMu sync.Mutex

// loadConfig parses args (e.g. "run", "--roles", "api") with intake's real command-line grammar, the
// environment being exactly env (every variable intake knows is cleared first), and validates the
// result for the roles of a run command. It is how the manifests' settings are checked: durations,
// URLs, enums, ranges and cross-field rules all go through config.Validate.
func loadConfig(t *testing.T, env map[string]string, args ...string) error {
	t.Helper()
	envMu.Lock()
	defer envMu.Unlock()
	saved := map[string]*string{}
	for name := range knownEnv() {
		if v, ok := os.LookupEnv(name); ok {
			saved[name] = &v
		} else {
			saved[name] = nil
		}
		require.NoError(t, os.Unsetenv(name))
	}
	defer func() {
		for name, v := range saved {
			if v == nil {
				_ = os.Unsetenv(name)
			} else {
				_ = os.Setenv(name, *v)
			}
		}
	}()
	for k, v := range env {
		if !knownEnv()[k] {
			continue // SDK and runtime variables: not intake's to validate
		}
		require.NoError(t, os.Setenv(k, v))
	}

	var c cli.CLI
	parser, err := kong.New(&c, kong.Name("intake"), kong.Exit(func(code int) {
		panic(fmt.Sprintf("kong exit %d", code))
	}))
	require.NoError(t, err)
	kctx, err := parser.Parse(args)
	if err != nil {
		return fmt.Errorf("parse %q: %w", args, err)
	}
	switch kctx.Command() {
	case "run":
		roles, err := config.ParseRoles(c.Run.Roles)
		if err != nil {
			return err
		}
		return c.Run.Config.Validate(roles)
	case "migrate up", "migrate status", "migrate":
		return c.Migrate.ValidateDB()
	default:
		return fmt.Errorf("unexpected command %q", kctx.Command())
	}
}

func TestLoadConfigCatchesBadSettings(t *testing.T) {
	good := map[string]string{
		"DATABASE_URL": "postgres://u@db/intake", "REDIS_URL": "redis://r:6379/0",
		"INTAKE_BUCKET": "b", "INTAKE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
		"INTAKE_API_KEYS": "0123456789abcdef=owner",
	}
	require.NoError(t, loadConfig(t, good, "run", "--roles", "api,consumer"))
	require.NoError(t, loadConfig(t, map[string]string{"DATABASE_URL": "postgres://u@db/intake"}, "migrate", "up"))

	for name, mutate := range map[string]func(map[string]string){
		"bad duration":   func(e map[string]string) { e["INTAKE_SHUTDOWN_GRACE"] = "soon" },
		"bad enum":       func(e map[string]string) { e["INTAKE_LOG_LEVEL"] = "verbose" },
		"missing bucket": func(e map[string]string) { delete(e, "INTAKE_BUCKET") },
		"no auth":        func(e map[string]string) { delete(e, "INTAKE_API_KEYS") },
		"jwt without issuer or audience": func(e map[string]string) {
			e["INTAKE_API_JWT_SECRET"] = "0123456789abcdef0123456789abcdef"
		},
		"dev auth with keys": func(e map[string]string) { e["INTAKE_API_INSECURE_DEV_AUTH"] = "true" },
		"dev auth on all addresses": func(e map[string]string) {
			delete(e, "INTAKE_API_KEYS")
			e["INTAKE_API_INSECURE_DEV_AUTH"] = "true"
			e["INTAKE_LISTEN_ADDR"] = "0.0.0.0:8080"
		},
	} {
		env := map[string]string{}
		for k, v := range good {
			env[k] = v
		}
		mutate(env)
		require.Error(t, loadConfig(t, env, "run", "--roles", "api,consumer"), name)
	}
	require.Error(t, loadConfig(t, good, "run", "--roles", "web"))
}

// ---- metrics: the intake_* series other packages export -------------------------------------------

type metricKind int

const (
	counter metricKind = iota
	gauge
	histogram
)

type metricInfo struct {
	kind   metricKind
	labels []string
}

// metrics is the catalogue of intake's metrics (issue 7, with the labels the code gives them). Alert
// rules and dashboard queries may only use these names and labels; TestMetricsExistInCode checks
// that the code still defines them.
var metrics = map[string]metricInfo{
	"intake_messages_received_total":                  {counter, nil},
	"intake_messages_acked_total":                     {counter, nil},
	"intake_messages_retried_total":                   {counter, nil},
	"intake_reconcile_scheduled":                      {gauge, nil},
	"intake_clock_skew_seconds":                       {gauge, nil},
	"intake_messages_deferred_total":                  {counter, nil},
	"intake_messages_dead_lettered_total":             {counter, []string{"reason"}},
	"intake_messages_checksum_mismatch_total":         {counter, []string{"digest"}},
	"intake_consumer_receive_errors_total":            {counter, nil},
	"intake_message_processing_seconds":               {histogram, nil},
	"intake_consumer_receive_batch_messages":          {histogram, nil},
	"intake_consumer_delete_batch_messages":           {histogram, nil},
	"intake_pipeline_batch_size":                      {histogram, []string{"statement"}},
	"intake_intent_batch_rows":                        {histogram, nil},
	"intake_consumer_paused":                          {gauge, []string{"dependency"}},
	"intake_consumer_inflight":                        {gauge, nil},
	"intake_queue_depth":                              {gauge, []string{"queue", "state"}},
	"intake_verdicts_total":                           {counter, []string{"verdict", "reason"}},
	"intake_event_age_seconds":                        {histogram, nil},
	"intake_dependency_up":                            {gauge, []string{"dependency", "required"}},
	"intake_tasks_total":                              {counter, []string{"type", "outcome"}},
	"intake_task_duration_seconds":                    {histogram, []string{"type"}},
	"intake_multipart_aborted_total":                  {counter, []string{"reason"}},
	"intake_bytes_reclaimed_total":                    {counter, nil},
	"intake_multipart_abort_unscheduled_total":        {counter, nil},
	"intake_sweep_last_success_timestamp_seconds":     {gauge, nil},
	"intake_reconcile_missing":                        {gauge, nil},
	"intake_reconcile_stale":                          {gauge, nil},
	"intake_reconcile_gone":                           {gauge, nil},
	"intake_reconcile_last_success_timestamp_seconds": {gauge, nil},
	"intake_events_distrusted_total":                  {counter, []string{"reason"}},
	"intake_http_requests_total":                      {counter, []string{"route", "code"}},
	"intake_http_request_duration_seconds":            {histogram, []string{"route"}},
	"intake_presigns_total":                           {counter, []string{"method"}},
	"intake_ingress_requests_total":                   {counter, []string{"outcome"}},
	"intake_webhook_attempts_total":                   {counter, []string{"endpoint", "result"}},
	"intake_webhook_deliveries_total":                 {counter, []string{"endpoint", "outcome"}},
	"intake_webhook_deferred_total":                   {counter, []string{"endpoint"}},
	"intake_webhook_delivery_attempts":                {histogram, nil},
	"intake_webhook_attempt_duration_seconds":         {histogram, nil},
	"intake_outbox_oldest_undelivered_seconds":        {gauge, nil},
	"intake_outbox_unrelayed":                         {gauge, nil},
	"intake_outbox_gave_up":                           {gauge, []string{"endpoint"}},
	"intake_hashes_handed_off_redrives_total":         {counter, []string{"result"}},
	"intake_hashes_handed_off_total":                  {counter, []string{"result"}},
	"intake_outbox_relayed_total":                     {counter, nil},
	"intake_outbox_relay_errors_total":                {counter, nil},
	"intake_outbox_purged_total":                      {counter, nil},
}

// targetLabels are added by Prometheus and Kubernetes service discovery, not by intake.
var targetLabels = []string{"instance", "job", "namespace", "pod", "container", "service"}

var (
	metricRef   = regexp.MustCompile(`\bintake_[a-z0-9_]+\b`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingRef = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	grafanaVar  = regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`)
)

// series resolves a referenced series name to its metric: histograms are referenced through their
// _bucket, _sum and _count series.
func series(name string) (base string, info metricInfo, bucket bool, ok bool) {
	if info, ok := metrics[name]; ok && info.kind != histogram {
		return name, info, false, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b, found := strings.CutSuffix(name, suffix); found {
			if info, ok := metrics[b]; ok && info.kind == histogram {
				return b, info, suffix == "_bucket", true
			}
		}
	}
	return "", metricInfo{}, false, false
}

// checkPromQL is a sanity check of an expression against the metric catalogue (promtool checks the
// syntax): every intake_* series exists; counters and histogram series are only used through rate()
// or increase(), gauges never are; label matchers and by/without clauses only name labels the
// metrics have (or that scraping adds); histogram_quantile keeps le. It returns the base metric
// names used.
func checkPromQL(expr string) ([]string, error) {
	// Grafana's variables become something Prometheus would accept.
	expr = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h").Replace(expr)
	expr = grafanaVar.ReplaceAllString(expr, ".*")

	var errs []error
	var used []string
	allowed := map[string]bool{}
	for _, l := range targetLabels {
		allowed[l] = true
	}
	for _, loc := range metricRef.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		base, info, bucket, ok := series(name)
		if !ok {
			errs = append(errs, fmt.Errorf("unknown metric %s", name))
			continue
		}
		used = append(used, base)
		for _, l := range info.labels {
			allowed[l] = true
		}
		if bucket {
			allowed["le"] = true
		}
		before := strings.TrimRight(expr[:loc[0]], " \n\t")
		inRate := strings.HasSuffix(before, "rate(") || strings.HasSuffix(before, "increase(")
		switch {
		case (info.kind == counter || info.kind == histogram) && !inRate:
			errs = append(errs, fmt.Errorf("%s is a counter: use it through rate() or increase()", name))
		case info.kind == gauge && inRate:
			errs = append(errs, fmt.Errorf("%s is a gauge: rate() of it is meaningless", name))
		}
		rest := expr[loc[1]:]
		if strings.HasPrefix(rest, "{") {
			sel := rest[1:strings.Index(rest, "}")]
			for _, m := range matcherName.FindAllStringSubmatch(sel, -1) {
				if !slices.Contains(info.labels, m[1]) && !slices.Contains(targetLabels, m[1]) {
					errs = append(errs, fmt.Errorf("%s has no label %q", base, m[1]))
				}
			}
		}
	}
	for _, g := range groupingRef.FindAllStringSubmatch(expr, -1) {
		labels := strings.Split(g[1], ",")
		for _, l := range labels {
			if l = strings.TrimSpace(l); l != "" && !allowed[l] {
				errs = append(errs, fmt.Errorf("grouping by %q, a label none of the metrics has", l))
			}
		}
		if strings.Contains(expr, "histogram_quantile") && strings.Contains(g[0], "by") && !strings.Contains(g[1], "le") {
			errs = append(errs, errors.New("histogram_quantile over a sum that drops le"))
		}
	}
	if len(used) == 0 {
		errs = append(errs, errors.New("no intake_* metric"))
	}
	return used, errors.Join(errs...)
}

func TestCheckPromQL(t *testing.T) {
	t.Parallel()
	for expr, wantErr := range map[string]string{
		`sum(rate(intake_messages_received_total{namespace=~"$namespace"}[$__rate_interval]))`:             "",
		`histogram_quantile(0.95, sum by (le) (rate(intake_event_age_seconds_bucket[5m])))`:                "",
		`max without (instance, pod) (intake_queue_depth{queue="dlq", state="visible"}) > 0`:               "",
		`time() - max(intake_sweep_last_success_timestamp_seconds > 0)`:                                    "",
		`sum(rate(intake_messages_recieved_total[5m]))`:                                                    "unknown metric",
		`sum(intake_messages_received_total)`:                                                              "counter",
		`rate(intake_consumer_paused[5m])`:                                                                 "gauge",
		`intake_queue_depth{queue="dlq", status="visible"}`:                                                `no label "status"`,
		`sum by (verdict) (intake_dependency_up)`:                                                          `grouping by "verdict"`,
		`histogram_quantile(0.95, sum by (route) (rate(intake_http_request_duration_seconds_bucket[5m])))`: "drops le",
		`histogram_quantile(0.95, rate(intake_event_age_seconds[5m]))`:                                     "unknown metric",
		`up == 0`: "no intake_",
	} {
		_, err := checkPromQL(expr)
		if wantErr == "" {
			require.NoError(t, err, expr)
		} else {
			require.ErrorContains(t, err, wantErr, expr)
		}
	}
}
