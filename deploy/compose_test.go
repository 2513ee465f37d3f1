package deploy_test

import (
	"cmp"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/intakehq/intake/internal/testkit"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Profiles    []string          `yaml:"profiles"`
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type composeBuild struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Args       map[string]string `yaml:"args"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	require.NoError(t, yaml.Unmarshal(readFile(t, "docker-compose.yml"), &c))
	return c
}

// TestComposeStructure checks what Compose itself cannot: that the services fit together and that
// intake gets only settings it knows, with values its own configuration accepts.
func TestComposeStructure(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"postgres", "redis", "localstack", "intake", "asynqmon"} {
		require.Contains(t, c.Services, name)
	}
	for name, s := range c.Services {
		require.True(t, s.Image != "" || s.Build != nil, "%s: neither image nor build", name)
		if s.Image != "" && s.Build == nil {
			_, tag, ok := strings.Cut(s.Image, ":")
			require.True(t, ok && tag != "latest", "%s: image %s is not pinned to a tag", name, s.Image)
		}
		for _, p := range s.Ports {
			require.True(t, strings.HasPrefix(p, "127.0.0.1:"), "%s: port %s is not bound to 127.0.0.1", name, p)
		}
		for dep, d := range s.DependsOn {
			target, ok := c.Services[dep]
			require.True(t, ok, "%s depends on %s, which does not exist", name, dep)
			require.Contains(t, []string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition)
			if d.Condition == "service_healthy" {
				require.NotNil(t, target.Healthcheck, "%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				_, err := os.Stat(path(t, src))
				require.NoError(t, err, "%s mounts %s", name, src)
			} else {
				require.Contains(t, c.Volumes, src, "%s: named volume %s is not declared", name, src)
			}
		}
	}
	for _, name := range []string{"postgres", "redis", "localstack", "intake"} {
		require.NotNil(t, c.Services[name].Healthcheck, "%s has no healthcheck", name)
	}

	in := c.Services["intake"]
	require.NotNil(t, in.Build)
	require.Equal(t, "deploy/Dockerfile", in.Build.Dockerfile)
	require.Equal(t, ".", in.Build.Context)
	for _, dep := range []string{"postgres", "redis", "localstack"} {
		require.Equal(t, "service_healthy", in.DependsOn[dep].Condition, "intake starts once %s is healthy", dep)
	}
	require.Equal(t, "intake-healthcheck", in.Healthcheck.Test[1], "the distroless image has no shell: use the probe binary")
	require.Contains(t, in.Healthcheck.Test, "/readyz")

	// Every variable intake gets is one it reads, and together they are a valid configuration for
	// the command Compose runs.
	require.Empty(t, unknownEnv(keys(in.Environment)), "intake's environment has names config.go does not know")
	require.Equal(t, "true", in.Environment["INTAKE_MIGRATE"])
	require.Equal(t, "local-dev-key-not-secret=dev", in.Environment["INTAKE_API_KEYS"])
	require.Empty(t, in.Environment["INTAKE_API_INSECURE_DEV_AUTH"], "refused on 0.0.0.0")
	require.NoError(t, loadConfig(t, in.Environment, in.Command...))
	for _, dep := range []string{"DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "INTAKE_QUEUE_URL"} {
		u, err := url.Parse(in.Environment[dep])
		require.NoError(t, err)
		require.Contains(t, c.Services, u.Hostname(), "%s points at %s, which is not a service", dep, u.Hostname())
	}

	// intake masks its database password wherever it appears in its logs: a password that is a word
	// of the setup (it was "intake") masked the service, bucket and schema names in every line.
	db, err := url.Parse(in.Environment["DATABASE_URL"])
	require.NoError(t, err)
	password, _ := db.User.Password()
	for _, text := range append(values(in.Environment, "DATABASE_URL"), keys(c.Services)...) {
		require.NotContains(t, text, password, "the database password would be masked in %q", text)
	}

	// LocalStack creates what intake is told to use.
	ls := c.Services["localstack"]
	require.Equal(t, in.Environment["INTAKE_BUCKET"], ls.Environment["INTAKE_INIT_BUCKET"])
	queueName := ls.Environment["INTAKE_INIT_QUEUE"]
	require.True(t, strings.HasSuffix(in.Environment["INTAKE_QUEUE_URL"], "/"+queueName))
	require.True(t, strings.HasSuffix(in.Environment["INTAKE_DLQ_URL"], "/"+queueName+"-dlq"))
	require.Contains(t, ls.Volumes, "./deploy/compose/localstack-init.sh:/etc/localstack/init/ready.d/10-intake.sh:ro")
	require.Contains(t, ls.Volumes, "./deploy/aws:"+ls.Environment["INTAKE_INIT_AWS_DIR"]+":ro")
	require.Contains(t, strings.Join(ls.Healthcheck.Test, " "), ls.Environment["INTAKE_INIT_READY_FILE"],
		"LocalStack is healthy when the init hook has finished")
	require.Contains(t, ls.Environment["SERVICES"], "s3")
	require.Contains(t, ls.Environment["SERVICES"], "sqs")
	st, err := os.Stat(path(t, "deploy", "compose", "localstack-init.sh"))
	require.NoError(t, err)
	require.NotZero(t, st.Mode()&0o111, "LocalStack only runs executable init scripts")

	mon := c.Services["asynqmon"]
	require.True(t, strings.HasPrefix(mon.Image, "hibiken/asynqmon:"))
	require.Contains(t, mon.Command, "--redis-url="+in.Environment["REDIS_URL"], "asynqmon watches intake's Redis")
}

// TestComposeObservabilityProfile checks the "observability" profile: Prometheus scrapes the intake
// service and loads the shipped alert rules, Grafana loads the shipped dashboard from a provisioned
// Prometheus data source, neither starts without the profile, and their ports do not clash with
// the local stack's (deploy/local/stack.sh) or the compose services'.
func TestComposeObservabilityProfile(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	prom, graf := c.Services["prometheus"], c.Services["grafana"]
	require.Equal(t, []string{"observability"}, prom.Profiles)
	require.Equal(t, []string{"observability"}, graf.Profiles)
	for name, s := range c.Services {
		if name != "prometheus" && name != "grafana" {
			require.Empty(t, s.Profiles, "%s must start without a profile", name)
		}
	}

	localStack := []string{"5432", "6379", "9000", "9001", "4566", "8474", "8080", "18080"}
	seen := map[string]string{}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			parts := strings.Split(p, ":") // 127.0.0.1:host:container
			require.Len(t, parts, 3, "%s: port %s", name, p)
			host := parts[1]
			require.NotContains(t, seen, host, "%s and %s both publish %s", name, seen[host], host)
			seen[host] = name
			if name == "prometheus" || name == "grafana" {
				require.NotContains(t, localStack, host, "%s: port %s is the local stack's", name, host)
			}
		}
	}

	var promCfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, "deploy", "compose", "prometheus.yml"), &promCfg))
	require.Contains(t, prom.Volumes, "./deploy/compose/prometheus.yml:/etc/prometheus/prometheus.yml:ro")
	for _, rf := range promCfg.RuleFiles {
		require.Contains(t, prom.Volumes, "./deploy/observability/alerts.yml:"+rf+":ro", "rule file %s is the shipped alerts.yml", rf)
	}
	require.NotEmpty(t, promCfg.RuleFiles)
	require.Len(t, promCfg.ScrapeConfigs, 1)
	sc := promCfg.ScrapeConfigs[0]
	require.Equal(t, "/metrics", sc.MetricsPath)
	// /metrics is on the admin listener when there is one, else on the listen port.
	addr := cmp.Or(c.Services["intake"].Environment["INTAKE_ADMIN_LISTEN_ADDR"], c.Services["intake"].Environment["INTAKE_LISTEN_ADDR"])
	_, port, _ := strings.Cut(addr, ":")
	require.Equal(t, []string{"intake:" + port}, sc.StaticConfigs[0].Targets, "Prometheus scrapes the intake service where /metrics is served")
	require.NotEmpty(t, sc.StaticConfigs[0].Labels["namespace"], "the dashboard's namespace variable needs the label")

	var ds struct {
		Datasources []struct {
			Type, URL string
		} `yaml:"datasources"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, "deploy", "compose", "grafana", "datasources.yml"), &ds))
	require.Len(t, ds.Datasources, 1)
	require.Equal(t, "prometheus", ds.Datasources[0].Type)
	require.Equal(t, "http://prometheus:9090", ds.Datasources[0].URL)
	var dp struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, "deploy", "compose", "grafana", "dashboards.yml"), &dp))
	require.Len(t, dp.Providers, 1)
	require.Contains(t, graf.Volumes, "./deploy/observability/dashboard.json:"+dp.Providers[0].Options.Path+"/intake.json:ro",
		"Grafana's dashboard provider reads the shipped dashboard")
	require.Contains(t, graf.Volumes, "./deploy/compose/grafana/datasources.yml:/etc/grafana/provisioning/datasources/intake.yml:ro")
	require.Contains(t, graf.Volumes, "./deploy/compose/grafana/dashboards.yml:/etc/grafana/provisioning/dashboards/intake.yml:ro")
}

// TestComposeDevAuthIsLoud makes sure the well-known development key keeps its warning.
func TestComposeDevAuthIsLoud(t *testing.T) {
	t.Parallel()
	lines := strings.Split(string(readFile(t, "docker-compose.yml")), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "INTAKE_API_KEYS:") })
	require.GreaterOrEqual(t, i, 0)
	comment := strings.Join(lines[max(0, i-8):i], "\n")
	require.Contains(t, comment, "DEVELOPMENT ONLY")
	require.Contains(t, comment, "Never")
}

// TestComposeConfig validates docker-compose.yml with a real Compose implementation (deploy/compose/
// check.sh installs Debian's docker-compose when the machine has none). `config` needs no engine.
func TestComposeConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("may install docker-compose")
	}
	t.Parallel()
	out := run(t, root(t), nil, "bash", path(t, "deploy", "compose", "check.sh"))
	require.Contains(t, out, "is valid")

	// And it does reject a broken file (the check is not a no-op).
	dir := t.TempDir()
	broken := strings.Replace(string(readFile(t, "docker-compose.yml")), "condition: service_healthy", "condition: service_healty", 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(broken), 0o644))
	for _, d := range []string{"deploy/compose", "deploy/aws"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	cmd := exec.Command("bash", path(t, "deploy", "compose", "check.sh"), filepath.Join(dir, "docker-compose.yml"))
	outb, err := cmd.CombinedOutput()
	require.Error(t, err, "a misspelt condition must fail validation:\n%s", outb)
	require.Contains(t, string(outb), "service_healty")
}

// TestLocalStackInit runs deploy/compose/localstack-init.sh against the local stack's real S3
// (MinIO) and SQS (kumo) through the AWS CLI, as LocalStack's awslocal would, and checks what it
// built: the DLQ, the queue's redrive and access policies, the bucket. MinIO refuses AWS-style
// bucket notifications, CORS and lifecycle documents (it has its own), so those three calls are
// recorded instead of sent, and their documents are checked: the notification must target the
// queue's real ARN.
func TestLocalStackInit(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	if _, err := exec.LookPath("aws"); err != nil {
		// Not fetched: Debian's awscli (2.9) speaks SQS's query protocol, which kumo does not
		// implement, and pip is out of reach here. This machine's image has the CLI.
		t.Skip("no AWS CLI on PATH (v1, or v2 from 2.13 on, for SQS's JSON protocol): the script's run against MinIO and kumo is NOT checked; TestAWSDocuments still checks its documents")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	s3c, sqsc := testkit.S3(), testkit.SQS()
	name := testkit.Name("deploy-")
	t.Cleanup(func() {
		for _, q := range []string{name, name + "-dlq"} {
			if out, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q)}); err == nil {
				_, _ = sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl})
			}
		}
		_, _ = s3c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)})
	})

	dir := t.TempDir()
	shim := `#!/bin/sh
# awslocal for the tests: the AWS CLI pointed at MinIO (s3) and kumo (sqs). Bucket configuration
# documents MinIO does not accept are recorded, one argument per line.
case "$1 $2" in
"s3api put-bucket-cors"|"s3api put-bucket-lifecycle-configuration"|"s3api put-bucket-notification-configuration")
	printf '%s\0' "$@" >>"$SHIM_LOG"
	exit 0 ;;
esac
case "$1" in
sqs) exec aws --endpoint-url "$SHIM_SQS" "$@" ;;
*) exec aws --endpoint-url "$SHIM_S3" "$@" ;;
esac
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "awslocal"), []byte(shim), 0o755))
	cfg, err := testkit.AWSConfig().Credentials.Retrieve(ctx)
	require.NoError(t, err)
	logFile := filepath.Join(dir, "calls")
	ready := filepath.Join(dir, "ready")
	env := []string{
		"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"SHIM_LOG=" + logFile, "SHIM_S3=" + testkit.AWS().S3Endpoint, "SHIM_SQS=" + testkit.AWS().SQSEndpoint,
		"AWS_ACCESS_KEY_ID=" + cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + cfg.SecretAccessKey,
		"AWS_DEFAULT_REGION=" + testkit.Region, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"INTAKE_INIT_BUCKET=" + name, "INTAKE_INIT_QUEUE=" + name,
		"INTAKE_INIT_ALLOWED_ORIGIN=https://app.example.test",
		"INTAKE_INIT_AWS_DIR=" + path(t, "deploy", "aws"), "INTAKE_INIT_READY_FILE=" + ready,
	}
	script := path(t, "deploy", "compose", "localstack-init.sh")
	out := run(t, dir, env, "bash", script)
	require.Contains(t, out, "ready:")
	require.FileExists(t, ready)

	_, err = s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(name)})
	require.NoError(t, err, "the bucket exists")

	dlqURL, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name + "-dlq")})
	require.NoError(t, err, "the DLQ exists")
	dlqARN := queueAttrs(t, sqsc, *dlqURL.QueueUrl)[string(sqstypes.QueueAttributeNameQueueArn)]
	qURL, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	require.NoError(t, err, "the queue exists")
	attrs := queueAttrs(t, sqsc, *qURL.QueueUrl)
	require.Equal(t, "60", attrs["VisibilityTimeout"])

	var redrive struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     int    `json:"maxReceiveCount"`
	}
	require.NoError(t, json.Unmarshal([]byte(attrs["RedrivePolicy"]), &redrive), attrs["RedrivePolicy"])
	require.Equal(t, dlqARN, redrive.DeadLetterTargetArn)
	require.Equal(t, 5, redrive.MaxReceiveCount)

	var policy policyDoc
	require.NoError(t, json.Unmarshal([]byte(attrs["Policy"]), &policy), attrs["Policy"])
	require.Len(t, policy.Statement, 1)
	require.Equal(t, []string{attrs["QueueArn"]}, []string(policy.Statement[0].Resource))
	require.Equal(t, "arn:aws:s3:::"+name, policy.Statement[0].Condition["ArnEquals"]["aws:SourceArn"])

	calls := recordedCalls(t, logFile)
	require.Len(t, calls, 3)
	var notif struct {
		QueueConfigurations []struct {
			QueueArn string
			Events   []string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(calls["put-bucket-notification-configuration"]), &notif))
	require.Len(t, notif.QueueConfigurations, 1)
	require.Equal(t, attrs["QueueArn"], notif.QueueConfigurations[0].QueueArn, "the bucket notifies the queue that was created")
	require.ElementsMatch(t, []string{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}, notif.QueueConfigurations[0].Events)
	require.Contains(t, calls["put-bucket-cors"], `"https://app.example.test"`)
	require.NotContains(t, calls["put-bucket-cors"]+calls["put-bucket-lifecycle-configuration"], "${")

	// Idempotent: LocalStack may run the hook again on a persisted state.
	require.NoError(t, os.Remove(logFile))
	run(t, dir, env, "bash", script)
	require.FileExists(t, ready)
	require.Equal(t, attrs["RedrivePolicy"], queueAttrs(t, sqsc, *qURL.QueueUrl)["RedrivePolicy"])
}

func queueAttrs(t *testing.T, c *sqs.Client, url string) map[string]string {
	t.Helper()
	out, err := c.GetQueueAttributes(testkit.Context(t), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	require.NoError(t, err, "attributes of %s", url)
	return out.Attributes
}

// recordedCalls maps each recorded s3api operation to its document (the argument after
// --cors-configuration, --lifecycle-configuration or --notification-configuration).
func recordedCalls(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	calls := map[string]string{}
	var op string
	for i, a := range args {
		switch {
		case a == "s3api" && i+1 < len(args):
			op = args[i+1]
		case strings.HasSuffix(a, "-configuration") && strings.HasPrefix(a, "--") && i+1 < len(args):
			calls[op] = args[i+1]
		}
	}
	return calls
}

// values returns m's values but those of the names skipped.
func values(m map[string]string, skip ...string) []string {
	var out []string
	for k, v := range m {
		if !slices.Contains(skip, k) {
			out = append(out, v)
		}
	}
	return out
}
