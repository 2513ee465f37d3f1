package redact_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/redact"
)

// presigned is a SigV4 presigned GET as objstore sends it (signature and credential in the query).
const presigned = "http://127.0.0.1:9000/bucket/uploads/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256" +
	"&X-Amz-Credential=AKIDSECRETID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z" +
	"&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef"

func TestURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, want string
	}{
		{"userinfo password", "postgres://intake:pa55word@db:5432/intake?sslmode=disable",
			"postgres://intake:REDACTED@db:5432/intake?sslmode=disable"},
		{"query-string password", "postgres://intake@db/intake?sslmode=disable&password=pa55word",
			"postgres://intake@db/intake?sslmode=disable&password=REDACTED"},
		{"both, and sslpassword", "postgresql://u:p1@db/x?sslpassword=p2&password=p3",
			"postgresql://u:REDACTED@db/x?sslpassword=REDACTED&password=REDACTED"},
		{"redis password", "redis://:hunter22@127.0.0.1:6379/0", "redis://:REDACTED@127.0.0.1:6379/0"},
		{"presigned URL: its query is all authentication", presigned, "http://127.0.0.1:9000/bucket/uploads/a.png?REDACTED"},
		{"security token", "https://s3/b/k?X-Amz-Security-Token=FwoGZX&x-id=GetObject", "https://s3/b/k?X-Amz-Security-Token=REDACTED&x-id=GetObject"},
		{"key=value connection string", "host=db user=intake password=pa55word dbname=intake",
			"host=db user=intake password=REDACTED dbname=intake"},
		{"quoted connection-string password", `host=db password='pa ss\'word' dbname=intake`,
			"host=db password=REDACTED dbname=intake"},
		{"spaces around =", "host=db password = pa55word dbname=x", "host=db password = REDACTED dbname=x"},
		{"nothing secret", "https://sqs.us-east-1.amazonaws.com/123/intake-events", "https://sqs.us-east-1.amazonaws.com/123/intake-events"},
		{"user without password", "postgres://intake@db/intake", "postgres://intake@db/intake"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, redact.URL(tc.in))
		})
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		secrets  []string
	}{
		{"net/http error with a presigned URL", `Get "` + presigned + `": context canceled`,
			[]string{"0123456789abcdef0123456789abcdef", "AKIDSECRETID", "X-Amz-Signature", "X-Amz-Credential"}},
		{"unquoted URL among words", "dial " + presigned + " failed: refused", []string{"X-Amz-Signature", "AKIDSECRETID"}},
		{"url.Parse error echoing a URL", `parse "postgres://u:pa55word@db:5432/x?password=other5ecret": invalid port`,
			[]string{"pa55word", "other5ecret"}},
		{"connection string in a message", "cannot connect with host=db password=pa55word user=x",
			[]string{"pa55word"}},
		{"bearer token", "upstream said: Authorization: Bearer tok3n-value-long rejected", []string{"tok3n-value-long"}},
		{"bearer token, lower case", "authorization: bearer tok3n-value-long rejected", []string{"tok3n-value-long"}},
		{"bearer token, upper case", "AUTHORIZATION: BEARER tok3n-value-long rejected", []string{"tok3n-value-long"}},
		{"bearer token after two spaces", "Authorization: Bearer  tok3n-value-long rejected", []string{"tok3n-value-long"}},
		{"security token", "X-Amz-Security-Token=FwoGZXIvYXdzEJr%2F&x=1", []string{"FwoGZXIvYXdzEJr"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := redact.String(tc.in)
			for _, s := range tc.secrets {
				require.NotContains(t, out, s)
			}
			require.Contains(t, out, redact.Mask)
		})
	}
	// Text with nothing secret is returned as it is (object keys, queue URLs, plain words).
	for _, s := range []string{"peek bucket/uploads/a b.png: not found", "key=uploads/x.png status=valid",
		"http://127.0.0.1:4566/000000000000/q", "the token is missing", "Bearer <token>",
		"invalid bearer token: expired", "the cupbearer wineglass-0123456789 rang"} {
		require.Equal(t, s, redact.String(s))
	}
}

func TestRedactorKnownSecrets(t *testing.T) {
	t.Parallel()
	r := redact.New("ingress-token-0123456789abcdef", "short", "", "pa55word")
	out := r.String(`forwarding failed for token ingress-token-0123456789abcdef (db pa55word)`)
	require.NotContains(t, out, "ingress-token-0123456789abcdef")
	require.NotContains(t, out, "pa55word")
	require.Equal(t, "a short word", r.String("a short word"), "secrets under 6 bytes are not searched for")
	var none *redact.Redactor
	require.Equal(t, "password=REDACTED", none.String("password=x"))

	// A known secret holding a character String's patterns end a value at (',' ';' ')'): masked
	// whole, not its head by the pattern and its tail left.
	r = redact.New("ab,cdefgh")
	out = r.String("password=ab,cdefgh dbname=x")
	require.NotContains(t, out, "cdefgh")
	require.NotContains(t, out, "ab,")
}

// TestRedactorEscapedForms: a known secret reaches a log line as written, quoted by %q (its '"'
// and '\\' escaped) or URL-escaped inside a URL; every form is masked.
func TestRedactorEscapedForms(t *testing.T) {
	t.Parallel()
	const secret = `pa"ss\w/rd+1 x`
	r := redact.New(secret)
	for _, line := range []string{
		"db " + secret,
		fmt.Sprintf("dial %q: refused", "postgres://u:"+secret+"@db"),
		"https://h/hook?token=" + url.QueryEscape(secret),
		"https://h/" + url.PathEscape(secret) + "/x",
	} {
		out := r.String(line)
		require.NotContains(t, out, "ss", line)
		require.NotContains(t, out, "rd", line)
	}
}

// TestURLPasswordsURLParseRefuses: a password with '/', '?' or '#' makes url.Parse fail; the
// fallback must still mask all of it, and Secrets must still find it.
func TestURLPasswordsURLParseRefuses(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"pa/ss", "pa?ss", "pa#ss"} {
		raw := "postgres://app:" + pw + "@db/intake"
		out := redact.URL(raw)
		require.NotContains(t, out, "ss", raw)
		require.Contains(t, out, "postgres://app:", raw)
		require.Equal(t, []string{pw}, redact.Secrets(raw), raw)
	}
	// A key=value string: libpq ends an unquoted value at whitespace only.
	dsn := "host=db user=app password=ab,cdefgh dbname=intake"
	require.NotContains(t, redact.URL(dsn), "cdefgh")
	require.Equal(t, "host=db user=app password=REDACTED dbname=intake", redact.URL(dsn))
	require.Equal(t, []string{"ab,cdefgh"}, redact.Secrets(dsn))
	require.NotContains(t, redact.URL("host=db\tpassword=tab,secret\tdbname=x"), "secret")
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	require.ElementsMatch(t, []string{"p1", "p2"}, redact.Secrets("postgres://u:p1@db/x?password=p2&sslmode=disable"))
	require.ElementsMatch(t, []string{"pa ss'word"}, redact.Secrets(`host=db password='pa ss\'word' dbname=x`))
	require.ElementsMatch(t, []string{"hunter22"}, redact.Secrets("redis://:hunter22@r:6379/0"))
	require.Empty(t, redact.Secrets("postgres://u@db/x"))
	// A webhook URL whose credential is a path segment (Slack's incoming webhooks); the other
	// segments and ordinary paths are not secrets.
	require.Equal(t, []string{"aBcD3fGh1jKlMn0pQrStUvWx"},
		redact.WebhookSecrets("https://hooks.slack.com/services/T00000000/B00000000/aBcD3fGh1jKlMn0pQrStUvWx"))
	require.Empty(t, redact.WebhookSecrets("https://hooks.example.com/intake/webhooks/uploads-completed"))
	// Credentials in forms the generic names miss: every query value of a webhook URL, and tokens
	// without a digit or with '.', '~' or '='.
	for u, want := range map[string][]string{
		"https://fn.azurewebsites.net/api/hook?code=AzFnKey0123456789abc":           {"AzFnKey0123456789abc"},
		"https://chat.googleapis.com/v1/spaces/AAAA/messages?key=k3y-value&tk=tok1": {"k3y-value", "tok1"},
		"https://hooks.example.com/in?channel=uploads&q=QmFzZTY0VG9rZW4xMjM0NTY3":   {"QmFzZTY0VG9rZW4xMjM0NTY3"},
		"https://hooks.slack.com/services/T0/B0/aBcDeFgHiJkLmNoPqRsTuVwX":           {"aBcDeFgHiJkLmNoPqRsTuVwX"},
		"https://hooks.example.com/in/abc.DEF~ghi=JKL_mno":                          {"abc.DEF~ghi=JKL_mno"},
		"https://hooks.example.com/intake?v=1":                                      nil,
	} {
		require.ElementsMatch(t, want, redact.WebhookSecrets(u), u)
	}
	require.Empty(t, redact.Secrets("postgres://u@db/intake_prod_2024_eu"), "a database's name is not a secret")
	r := redact.New(redact.WebhookSecrets("https://hooks.slack.com/services/T00000000/B00000000/aBcD3fGh1jKlMn0pQrStUvWx")...)
	require.NotContains(t, r.String(`POST "https://hooks.slack.com/services/T00000000/B00000000/aBcD3fGh1jKlMn0pQrStUvWx": EOF`), "aBcD3fGh1jKlMn0pQrStUvWx")
}

// TestErrorURLError: the *url.Error net/http returns keeps its type (errors.As, Timeout) and loses
// the signature.
func TestErrorURLError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, presigned, nil)
	require.NoError(t, err)
	_, err = http.DefaultClient.Do(req)
	require.Error(t, err)
	require.Contains(t, err.Error(), "X-Amz-Signature=0123", "net/http quotes the URL (what this package fixes)")

	red := redact.Error(err)
	for _, leak := range []string{"0123456789abcdef0123456789abcdef", "AKIDSECRETID", "X-Amz-Signature", "X-Amz-Credential"} {
		require.NotContains(t, red.Error(), leak)
	}
	require.Contains(t, red.Error(), "/bucket/uploads/a.png")
	var ue *url.Error
	require.ErrorAs(t, red, &ue)
	require.ErrorIs(t, red, context.Canceled)

	wrapped := redact.Error(errors.Join(errors.New("peek"), &net.OpError{Op: "dial", Err: errors.New("password=pa55word refused")}))
	require.NotContains(t, wrapped.Error(), "pa55word")
	var op *net.OpError
	require.ErrorAs(t, wrapped, &op, "the original stays reachable")
	plain := errors.New("nothing here")
	require.Same(t, plain, redact.Error(plain))
	require.NoError(t, redact.Error(nil))
}

func FuzzString(f *testing.F) {
	for _, s := range []string{presigned, "password='a\\'b' x", "postgres://u:p@h/d", "a=b&c", "Bearer ", "=", "://@:",
		"receipt handle", `receipt handle "`, `"ReceiptHandle\":`, " for parameter ReceiptHandle", "Value  for parameter receipthandle"} {
		f.Add(s)
	}
	for _, tc := range receiptHandleCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := redact.String(s)
		if !strings.Contains(s, "=") && !strings.Contains(s, "://") && !strings.Contains(strings.ToLower(s), "bearer ") &&
			!strings.Contains(strings.ToLower(s), "receipt") && out != s {
			t.Fatalf("changed text with nothing to mask: %q -> %q", s, out)
		}
		_ = redact.URL(s)
		_ = redact.Secrets(s)
	})
}

// handle is an SQS receipt handle as AWS writes them (base64, "+/=" included).
const handle = "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a+Pf/nbDHDnsQ8eFZ0TAFrOTxXMCj1zv=="

// receiptHandleCases are texts holding receipt handles (SQS's errors repeat the handle they refuse)
// and what String must make of them.
var receiptHandleCases = []struct {
	name, in, want string
}{
	{"ReceiptHandleIsInvalid", `ReceiptHandleIsInvalid: The input receipt handle "` + handle + `" is not a valid receipt handle.`,
		`ReceiptHandleIsInvalid: The input receipt handle "REDACTED" is not a valid receipt handle.`},
	{"InvalidParameterValue", "InvalidParameterValue: Value " + handle + " for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.",
		"InvalidParameterValue: Value REDACTED for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."},
	{"InvalidParameterValue, quoted, in an SDK error", `operation error SQS: ChangeMessageVisibility, https response error StatusCode: 400, RequestID: r-1, ` +
		`InvalidParameterValue: Value "` + handle + `" for parameter receiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.`,
		`operation error SQS: ChangeMessageVisibility, https response error StatusCode: 400, RequestID: r-1, ` +
			`InvalidParameterValue: Value REDACTED for parameter receiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.`},
	{"an emulator's UUID", "receipt handle 0b6a2b56-7c1f-4d0e-9a54-3f2d8f1e6c7a is not valid",
		"receipt handle REDACTED is not valid"},
	{"after a colon, ending a sentence", "bad Receipt-Handle: " + handle + ". Try again",
		"bad Receipt-Handle: REDACTED. Try again"},
	{"JSON", `{"Id":"0","ReceiptHandle":"` + handle + `"}`, `{"Id":"0","ReceiptHandle":"REDACTED"}`},
	{"JSON quoted by %q", `body "{\"ReceiptHandle\":\"` + handle + `\"}"`, `body "{\"ReceiptHandle\":\"REDACTED\"}"`},
	{"query protocol", "Entries.1.ReceiptHandle=" + url.QueryEscape(handle) + "&Entries.1.Id=0", "Entries.1.ReceiptHandle=REDACTED&Entries.1.Id=0"},
	{"snake case", "receipt_handle=" + handle, "receipt_handle=REDACTED"},
	{"two in one text", "receipt handle '" + handle + "' and receipt handle '" + handle[:40] + "'",
		"receipt handle 'REDACTED' and receipt handle 'REDACTED'"},
}

// TestReceiptHandles: the receipt handles SQS repeats in its errors are masked, the words around
// them kept.
func TestReceiptHandles(t *testing.T) {
	t.Parallel()
	for _, tc := range receiptHandleCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, redact.String(tc.in))
			require.Equal(t, tc.want, redact.Error(errors.New(tc.in)).Error())
		})
	}
	// Words after "receipt handle", or quoted words, are not handles.
	for _, s := range []string{"ReceiptHandleIsInvalid: The receipt handle is not valid",
		"The receipt handle has expired.", "receipt handles of ten messages", "a receipt handle: expired",
		`msg="invalid receipt handle" err="the queue does not exist"`, "the receipt handle extraordinarily",
		"InvalidParameterValue: Value for parameter VisibilityTimeout is invalid.", "no receipt, no handle"} {
		require.Equal(t, s, redact.String(s))
	}
}

// TestRedactorError: a Redactor masks the secrets it knows in an error's message, in any shape, and
// keeps the error's chain.
func TestRedactorError(t *testing.T) {
	t.Parallel()
	api := &net.OpError{Op: "write", Err: errors.New("the server refused handle " + handle + " for now")}
	err := fmt.Errorf("delete: %w", api)
	red := redact.New(handle).Error(err)
	require.Equal(t, "delete: write: the server refused handle REDACTED for now", red.Error())
	var op *net.OpError
	require.ErrorAs(t, red, &op)
	require.Same(t, api, op)

	plain := errors.New("nothing here")
	require.Same(t, plain, redact.New(handle).Error(plain))
	require.NoError(t, redact.New(handle).Error(nil))
	ue := redact.New("0123456789abcdef").Error(&url.Error{Op: "Post", URL: "http://h/q?x=0123456789abcdef", Err: errors.New("EOF")})
	require.NotContains(t, ue.Error(), "0123456789abcdef")
	require.ErrorAs(t, ue, new(*url.Error))
}
