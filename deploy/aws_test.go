package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
)

// Sample values for the ${PLACEHOLDERS} of deploy/aws/*.json (README.md shows how to fill them).
var awsPlaceholders = map[string]string{
	"AWS_REGION":     "eu-west-1",
	"ACCOUNT_ID":     "123456789012",
	"BUCKET":         "example-uploads",
	"QUEUE":          "example-events",
	"OIDC_PROVIDER":  "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
	"ALLOWED_ORIGIN": "https://app.example.com",
}

var placeholderRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

const (
	bucketARN = "arn:aws:s3:::example-uploads"
	queueARN  = "arn:aws:sqs:eu-west-1:123456789012:example-events"
	dlqARN    = queueARN + "-dlq"
)

// stringList is an IAM field that is either a string or a list of strings.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte(`"`)) {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// policyDoc is an IAM policy. Decoding is strict: NotAction, NotResource or a misspelt key fail.
type policyDoc struct {
	Version   string
	ID        string `json:"Id"`
	Statement []struct {
		Sid       string
		Effect    string
		Principal json.RawMessage
		Action    stringList
		Resource  stringList
		Condition map[string]map[string]string
	}
}

// renderAWS reads deploy/aws/NAME with the sample placeholders filled in, failing on placeholders
// the documentation does not define.
func renderAWS(t *testing.T, name string) []byte {
	t.Helper()
	raw := readFile(t, "deploy", "aws", name)
	for _, m := range placeholderRef.FindAllStringSubmatch(string(raw), -1) {
		require.Contains(t, awsPlaceholders, m[1], "%s: unknown placeholder %s", name, m[0])
	}
	return []byte(placeholderRef.ReplaceAllStringFunc(string(raw), func(s string) string {
		return awsPlaceholders[placeholderRef.FindStringSubmatch(s)[1]]
	}))
}

func decodeStrict(t *testing.T, name string, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), "%s", name)
	require.False(t, dec.More(), "%s: trailing data", name)
}

// s3 actions by the resource type they apply to (the Service Authorization Reference): granting an
// object action on the bucket ARN, or a bucket action on bucket/*, silently grants nothing.
var s3BucketActions = []string{"s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation"}

func checkIdentityPolicy(t *testing.T, name string, p policyDoc) []string {
	t.Helper()
	require.Equal(t, "2012-10-17", p.Version, name)
	require.NotEmpty(t, p.Statement, name)
	var actions []string
	for _, st := range p.Statement {
		require.Equal(t, "Allow", st.Effect, "%s %s", name, st.Sid)
		require.Nil(t, st.Principal, "%s: identity policies have no Principal", name)
		require.NotEmpty(t, st.Action, "%s %s", name, st.Sid)
		require.NotEmpty(t, st.Resource, "%s %s: every statement is scoped to resources", name, st.Sid)
		for _, a := range st.Action {
			require.NotContains(t, a, "*", "%s %s: wildcard action %q", name, st.Sid, a)
			service, _, _ := strings.Cut(a, ":")
			for _, r := range st.Resource {
				require.NotContains(t, []string{"*", "arn:aws:s3:::*", "arn:aws:sqs:*"}, r, "%s: unscoped resource", name)
				switch service {
				case "s3":
					if slices.Contains(s3BucketActions, a) {
						require.Equal(t, bucketARN, r, "%s: %s applies to the bucket ARN", name, a)
					} else {
						require.Equal(t, bucketARN+"/*", r, "%s: %s applies to objects (bucket/*)", name, a)
					}
				case "sqs":
					require.Contains(t, []string{queueARN, dlqARN}, r, "%s: %s outside intake's queues", name, a)
				default:
					t.Fatalf("%s: unexpected service in %s", name, a)
				}
			}
			actions = append(actions, a)
		}
	}
	slices.Sort(actions)
	return actions
}

// defaultOf returns the kong default of a config field, as a duration.
func defaultOf(t *testing.T, v any, field string) time.Duration {
	t.Helper()
	f, ok := reflect.TypeOf(v).FieldByName(field)
	require.True(t, ok, field)
	d, err := time.ParseDuration(f.Tag.Get("default"))
	require.NoError(t, err, field)
	return d
}

func TestAWSDocuments(t *testing.T) {
	t.Parallel()
	checks := map[string]func(t *testing.T, b []byte){
		"iam-policy.json": func(t *testing.T, b []byte) {
			var p policyDoc
			decodeStrict(t, "iam-policy.json", b, &p)
			actions := checkIdentityPolicy(t, "iam-policy.json", p)
			// Exactly what intake calls. Adding an action is a decision: change this list with it.
			require.Equal(t, []string{
				"s3:AbortMultipartUpload",       // sweep, multipart clean-up
				"s3:DeleteObject",               // reject action "delete", quarantine move
				"s3:DeleteObjectVersion",        // the same of the version an event named (versioned buckets: a newer version stays current)
				"s3:GetObject",                  // HEAD, range GET, hashing, presigned GET
				"s3:GetObjectTagging",           // tagging reads
				"s3:GetObjectVersion",           // HEAD, hashing and copy of the version an event named (versioned buckets)
				"s3:GetObjectVersionTagging",    // tagging reads of that version
				"s3:ListBucket",                 // HeadBucket (readiness), reconcile; 404 instead of 403 on missing keys
				"s3:ListBucketMultipartUploads", // sweep
				"s3:ListMultipartUploadParts",   // Uppy's multipart routes
				"s3:PutObject",                  // presigned PUT/POST/multipart, quarantine copy
				"s3:PutObjectTagging",           // reject action "tag", verdict tags
				"s3:PutObjectVersionTagging",    // the same on the version an event named
				"sqs:ChangeMessageVisibility",   // heartbeat, backoff, return on shutdown
				"sqs:DeleteMessage",             // ack, replay from the DLQ
				"sqs:GetQueueAttributes",        // readiness, queue depth metrics
				"sqs:GetQueueUrl",               // the consumer finds the redrive policy's DLQ (depth gauges) without INTAKE_DLQ_URL
				"sqs:ReceiveMessage",            // consumer, replay
				"sqs:SendMessage",               // ingress, explicit dead-lettering, replay
			}, actions)
		},
		"keda-iam-policy.json": func(t *testing.T, b []byte) {
			var p policyDoc
			decodeStrict(t, "keda-iam-policy.json", b, &p)
			require.Equal(t, []string{"sqs:GetQueueAttributes"}, checkIdentityPolicy(t, "keda-iam-policy.json", p))
			require.Equal(t, stringList{queueARN}, p.Statement[0].Resource)
		},
		"irsa-trust-policy.json": func(t *testing.T, b []byte) {
			var p policyDoc
			decodeStrict(t, "irsa-trust-policy.json", b, &p)
			require.Equal(t, "2012-10-17", p.Version)
			require.Len(t, p.Statement, 1)
			st := p.Statement[0]
			require.Equal(t, stringList{"sts:AssumeRoleWithWebIdentity"}, st.Action)
			require.JSONEq(t, `{"Federated":"arn:aws:iam::123456789012:oidc-provider/`+awsPlaceholders["OIDC_PROVIDER"]+`"}`, string(st.Principal))
			oidc := awsPlaceholders["OIDC_PROVIDER"]
			require.Equal(t, map[string]string{
				oidc + ":sub": "system:serviceaccount:intake:intake",
				oidc + ":aud": "sts.amazonaws.com",
			}, st.Condition["StringEquals"], "only intake's ServiceAccount may assume the role")
		},
		"sqs-queue-policy.json": func(t *testing.T, b []byte) {
			var p policyDoc
			decodeStrict(t, "sqs-queue-policy.json", b, &p)
			require.Equal(t, "2012-10-17", p.Version)
			require.Len(t, p.Statement, 1)
			st := p.Statement[0]
			require.Equal(t, "Allow", st.Effect)
			require.JSONEq(t, `{"Service":"s3.amazonaws.com"}`, string(st.Principal))
			require.Equal(t, stringList{"sqs:SendMessage"}, st.Action)
			require.Equal(t, stringList{queueARN}, st.Resource)
			require.Equal(t, bucketARN, st.Condition["ArnEquals"]["aws:SourceArn"], "only intake's bucket may send")
			require.Equal(t, "123456789012", st.Condition["StringEquals"]["aws:SourceAccount"])
		},
		"bucket-notification.json": func(t *testing.T, b []byte) {
			var n s3types.NotificationConfiguration
			decodeStrict(t, "bucket-notification.json", b, &n)
			require.Len(t, n.QueueConfigurations, 1)
			qc := n.QueueConfigurations[0]
			require.Equal(t, queueARN, *qc.QueueArn)
			require.ElementsMatch(t, []s3types.Event{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}, qc.Events)
			require.Nil(t, qc.Filter, "intake filters by prefix itself (policy rules)")
			require.Empty(t, n.TopicConfigurations)
			require.Empty(t, n.LambdaFunctionConfigurations)
		},
		"redrive-policy.json": func(t *testing.T, b []byte) {
			var r struct {
				DeadLetterTargetArn string `json:"deadLetterTargetArn"`
				MaxReceiveCount     int    `json:"maxReceiveCount"`
			}
			decodeStrict(t, "redrive-policy.json", b, &r)
			require.Equal(t, dlqARN, r.DeadLetterTargetArn)
			require.Equal(t, 5, r.MaxReceiveCount)
		},
		"queue-attributes.json": func(t *testing.T, b []byte) {
			var a map[string]string
			decodeStrict(t, "queue-attributes.json", b, &a)
			vis, err := strconv.Atoi(a["VisibilityTimeout"])
			require.NoError(t, err)
			require.Equal(t, defaultOf(t, config.Consumer{}, "Visibility"), time.Duration(vis)*time.Second,
				"the queue's visibility timeout is the consumer's default")
			wait, err := strconv.Atoi(a["ReceiveMessageWaitTimeSeconds"])
			require.NoError(t, err)
			require.LessOrEqual(t, wait, 20)
			requireRetentionBelowDLQ(t, a["MessageRetentionPeriod"])
		},
		"dlq-attributes.json": func(t *testing.T, b []byte) {
			var a map[string]string
			decodeStrict(t, "dlq-attributes.json", b, &a)
			require.Equal(t, "1209600", a["MessageRetentionPeriod"], "the DLQ keeps messages as long as SQS allows (14 days)")
		},
		"s3-cors.json": func(t *testing.T, b []byte) {
			var c s3types.CORSConfiguration
			decodeStrict(t, "s3-cors.json", b, &c)
			require.Len(t, c.CORSRules, 1)
			r := c.CORSRules[0]
			require.ElementsMatch(t, []string{"PUT", "POST", "GET"}, r.AllowedMethods)
			require.Contains(t, r.ExposeHeaders, "ETag", "multipart uploads from browsers need each part's ETag")
			require.NotContains(t, r.AllowedOrigins, "*", "browsers of your app only")
			require.Equal(t, []string{awsPlaceholders["ALLOWED_ORIGIN"]}, r.AllowedOrigins)
		},
		"s3-lifecycle.json": func(t *testing.T, b []byte) {
			var l s3types.BucketLifecycleConfiguration
			decodeStrict(t, "s3-lifecycle.json", b, &l)
			require.Len(t, l.Rules, 1)
			r := l.Rules[0]
			require.Equal(t, s3types.ExpirationStatusEnabled, r.Status)
			require.Nil(t, r.Expiration, "the backstop never expires objects")
			require.NotNil(t, r.AbortIncompleteMultipartUpload)
			days := time.Duration(*r.AbortIncompleteMultipartUpload.DaysAfterInitiation) * 24 * time.Hour
			require.Greater(t, days, defaultOf(t, config.Jobs{}, "SweepOlderThan"),
				"the backstop leaves intake's sweep time to abort and record uploads first")
			// S3 applies the rule at the first UTC midnight past the day count, which may be minutes
			// after it: a rule of exactly the longest deadline would abort a 7-day upload within
			// the deadline's grace (a complete accepted just before it) or, with skew, before it.
			require.GreaterOrEqual(t, days-config.MaxMultipartDeadline, 24*time.Hour,
				"the backstop must not race the longest deadline intake accepts")
		},
	}

	files, err := filepath.Glob(path(t, "deploy", "aws", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		name := filepath.Base(f)
		check, ok := checks[name]
		require.True(t, ok, "deploy/aws/%s has no check: add one to TestAWSDocuments", name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := renderAWS(t, name)
			require.True(t, json.Valid(b), "%s is not JSON", name)
			check(t, b)
		})
	}
}

// requireRetentionBelowDLQ compares the main queue's retention with dlq-attributes.json's.
func requireRetentionBelowDLQ(t *testing.T, main string) {
	t.Helper()
	var dlq map[string]string
	require.NoError(t, json.Unmarshal(readFile(t, "deploy", "aws", "dlq-attributes.json"), &dlq))
	m, err := strconv.Atoi(main)
	require.NoError(t, err)
	d, err := strconv.Atoi(dlq["MessageRetentionPeriod"])
	require.NoError(t, err)
	// A message keeps its original enqueue time when it moves to the DLQ: with a shorter DLQ
	// retention it could expire there before anyone looks at it.
	require.Less(t, m, d, "the DLQ must keep messages longer than the queue")
}

// TestInitScriptRendersOnlyKnownPlaceholders: the LocalStack hook substitutes a fixed set of
// placeholders; every document it renders must use no others.
func TestInitScriptRendersOnlyKnownPlaceholders(t *testing.T) {
	t.Parallel()
	script := string(readFile(t, "deploy", "compose", "localstack-init.sh"))
	substituted := map[string]bool{}
	for _, m := range regexp.MustCompile(`s\|\\\$\{([A-Z_]+)\}\|`).FindAllStringSubmatch(script, -1) {
		substituted[m[1]] = true
	}
	require.NotEmpty(t, substituted)
	rendered := regexp.MustCompile(`\b([a-z0-9-]+\.json)\b`).FindAllStringSubmatch(script, -1)
	require.NotEmpty(t, rendered)
	for _, m := range rendered {
		raw, err := os.ReadFile(path(t, "deploy", "aws", m[1]))
		require.NoError(t, err, "the init script renders %s", m[1])
		for _, p := range placeholderRef.FindAllStringSubmatch(string(raw), -1) {
			require.True(t, substituted[p[1]], "%s uses %s, which localstack-init.sh does not fill in", m[1], p[0])
		}
	}
	require.Len(t, substituted, 5, "AWS_REGION, ACCOUNT_ID, BUCKET, QUEUE, ALLOWED_ORIGIN")
}

// TestReadmeRendersEveryPlaceholder: the README's render() fills exactly the documents' placeholders.
func TestReadmeRendersEveryPlaceholder(t *testing.T) {
	t.Parallel()
	m := regexp.MustCompile(`(?m)^render\(\) \{ envsubst '([^']*)'`).FindStringSubmatch(string(readFile(t, "deploy", "README.md")))
	require.NotNil(t, m, "deploy/README.md defines render()")
	var listed []string
	for _, p := range placeholderRef.FindAllStringSubmatch(m[1], -1) {
		listed = append(listed, p[1])
	}
	require.ElementsMatch(t, keys(awsPlaceholders), listed)
}
