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

// processcreds is the error the AWS SDK's credentials/processcreds provider returns when the
// credential_process's output does not parse: it quotes the whole output ("parse failed of process
// output: %s"), secret key and session token included, and it reaches the logs and stderr.
const processcreds = `operation error SQS: ReceiveMessage, get identity: get credentials: failed to refresh cached credentials, ` +
	`parse failed of process output: {"Version": 1, "AccessKeyId": "ASIAEXAMPLEKEYID0123", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ` +
	`"SessionToken": "FwoGZXIvYXdzEJr//////////wEaDExampleSessionToken0123456789+abc=", "Expiration": "2026-01-01T00:00:00Z",}, ` +
	`error: invalid character '}' looking for beginning of object key string`

// TestStringForms: the value of every sensitive name is masked in the forms free text carries it
// (JSON, JSON quoted once more, HTTP headers, Go's %v of an http.Header, name="value", a quote
// inside an unquoted value), and the text around it stays readable. Before, only name=value was
// recognized, and its value ended at once at a quote.
func TestStringForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, want string
		secrets        []string
	}{
		{"processcreds output", processcreds,
			`operation error SQS: ReceiveMessage, get identity: get credentials: failed to refresh cached credentials, ` +
				`parse failed of process output: {"Version": 1, "AccessKeyId": "ASIAEXAMPLEKEYID0123", "SecretAccessKey": "REDACTED", ` +
				`"SessionToken": "REDACTED", "Expiration": "2026-01-01T00:00:00Z",}, ` +
				`error: invalid character '}' looking for beginning of object key string`,
			[]string{"wJalrXUtnFEMI", "bPxRfiCY", "FwoGZXIvYXdzEJr", "SessionToken0123456789"}},
		{"processcreds output, pretty-printed", "parse failed of process output: {\n  \"Version\": 1,\n  \"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG\",\n  \"SessionToken\": \"FwoGZXIvYXdzEJr\"\n}",
			"parse failed of process output: {\n  \"Version\": 1,\n  \"SecretAccessKey\": \"REDACTED\",\n  \"SessionToken\": \"REDACTED\"\n}",
			[]string{"wJalrXUtnFEMI", "FwoGZXIvYXdzEJr"}},
		{"JSON password", `{"password":"hunter2hunter2"}`, `{"password":"REDACTED"}`, []string{"hunter2"}},
		{"JSON password with blanks and an escaped quote", `{"user": "u", "password": "hunter \"2\" two"}`,
			`{"user": "u", "password": "REDACTED"}`, []string{"hunter", "two"}},
		{"JSON quoted once more", `body "{\"password\":\"hunter2hunter2\",\"user\":\"u\"}"`,
			`body "{\"password\":\"REDACTED\",\"user\":\"u\"}"`, []string{"hunter2"}},
		{"JSON quoted once more, an escaped quote inside", `body "{\"password\":\"hun\\\"ter2\"}"`,
			`body "{\"password\":\"REDACTED\"}"`, []string{"hun", "ter2"}},
		{"JSON signature", `{"X-Amz-Signature":"deadbeefdeadbeefdeadbeefdeadbeef","X-Amz-Date":"20260101T000000Z"}`,
			`{"X-Amz-Signature":"REDACTED","X-Amz-Date":"20260101T000000Z"}`, []string{"deadbeef"}},
		{"security token header", "request headers: X-Amz-Security-Token: FwoGZXIvYXdzEJr//////////wEaDE\nHost: sqs",
			"request headers: X-Amz-Security-Token: REDACTED\nHost: sqs", []string{"FwoGZXIvYXdzEJr", "wEaDE"}},
		{"signature header", "X-Amz-Signature: 0123456789abcdef0123456789abcdef.", "X-Amz-Signature: REDACTED.", []string{"0123456789abcdef"}},
		{"basic authorization", "Authorization: Basic dXNlcjpwYXNzd29yZA== (401)", "Authorization: Basic REDACTED (401)", []string{"dXNlcjpwYXNzd29yZA"}},
		{"short basic credentials", "authorization: basic dTpw", "authorization: basic REDACTED", []string{"dTpw"}},
		{"bearer authorization", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "Authorization: Bearer REDACTED", []string{"eyJhbGci"}},
		{"token authorization", "Authorization: Token 4f9a8e7d6c5b", "Authorization: Token REDACTED", []string{"4f9a8e7d6c5b"}},
		{"SigV4 authorization", "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024\nHost: sqs",
			"Authorization: AWS4-HMAC-SHA256 REDACTED\nHost: sqs", []string{"AKIDEXAMPLE", "fe5f80f77d5fa3"}},
		{"authorization without a scheme", "Authorization: dXNlcjpwYXNzd29yZA==", "Authorization: REDACTED", []string{"dXNlcjpw"}},
		{"authorization=", "proxy authorization=Basic dXNlcjpwYXNzd29yZA== sent", "proxy authorization=Basic REDACTED sent", []string{"dXNlcjpw"}},
		{"authorization in JSON", `{"Authorization":"Basic dXNlcjpwYXNzd29yZA=="}`, `{"Authorization":"Basic REDACTED"}`, []string{"dXNlcjpw"}},
		{"http.Header printed by %v", "map[Authorization:[Basic dXNlcjpwYXNzd29yZA==] Content-Type:[application/json] X-Amz-Security-Token:[FwoGZXIvYXdzEJr]]",
			"map[Authorization:[Basic REDACTED] Content-Type:[application/json] X-Amz-Security-Token:[REDACTED]]", []string{"dXNlcjpw", "FwoGZXIvYXdzEJr"}},
		{"x-api-key header", "x-api-key: 0123456789abcdef0123", "x-api-key: REDACTED", []string{"0123456789abcdef"}},
		{"api-key header", "Api-Key: 9f86d081884c7d65", "Api-Key: REDACTED", []string{"9f86d081884c7d65"}},
		{"double-quoted value", `host=db password="dq secret" dbname=x`, `host=db password="REDACTED" dbname=x`, []string{"dq", "secret"}},
		{"double-quoted value, slog text", `level=WARN msg=connect password="dq \"se cret\"" err=refused`, `level=WARN msg=connect password="REDACTED" err=refused`, []string{"dq", "se cret"}},
		{"back-quoted value", "token=`tok en`.", "token=`REDACTED`.", []string{"tok en"}},
		{"quote inside an unquoted value", "password=se'cret user=x", "password=REDACTED user=x", []string{"cret"}},
		{"quote inside an unquoted value, at the end", "password=se'cret", "password=REDACTED", []string{"cret"}},
		{"pair inside a quoted string", `msg="connect with password=hunter2hunter2"`, `msg="connect with password=REDACTED"`, []string{"hunter2"}},
		{"unclosed quote", "password=\"dq secret\nnext line", "password=\"REDACTED\nnext line", []string{"dq", "secret"}},
		{"password header", "Password: hunter2hunter2", "Password: REDACTED", []string{"hunter2"}},
		{"secret in YAML", "client_secret: 'Xy7sQ9pLmN2vB4' # from the console", "client_secret: 'REDACTED' # from the console", []string{"Xy7sQ9pLmN2vB4"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := redact.String(tc.in)
			for _, s := range tc.secrets {
				require.NotContains(t, out, s)
			}
			require.Equal(t, tc.want, out)
		})
	}
	// Sensitive names before ':' followed by words, not tokens, are left as they are; so are URLs
	// whose user name is a sensitive word (the password is masked, the host kept).
	for _, s := range []string{
		"invalid token: expired", "read secret: open /run/secrets/intake: permission denied",
		"password: authentication failed for user \"intake\"", "ReceiptHandleIsInvalid: The receipt handle is not valid",
		"jwt-secret: signature is invalid", "authorization failed: token: missing", "Authorization: Bearer <token>",
		"authorization: invalid scheme", "credential: Unauthorized", `{"token_count": 5, "SessionToken": null}`,
		`token: "expired"`, "api: Not Found", "signature: v4", "api error NotFound: Not Found",
		"time 12:30:00 password:", "map[Authorization:[] Accept:[*/*]]",
		// AWS's own errors name tokens and signatures, and say no secret.
		"InvalidClientTokenId: The security token included in the request is invalid.",
		"SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided.",
		"get credentials: failed to refresh cached credentials, process provider error: error in credential_process: exit status 1",
	} {
		require.Equal(t, s, redact.String(s))
	}
	require.Equal(t, "redis://token:REDACTED@cache:6379/0", redact.String("redis://token:Secret123@cache:6379/0"))
	require.True(t, redact.Sensitive("Authorization"))
	require.True(t, redact.Sensitive("Proxy-Authorization"))
	require.True(t, redact.Sensitive("X-Api-Key"))
	require.True(t, redact.Sensitive("SecretAccessKey"))
	require.False(t, redact.Sensitive("AccessKeyId"))
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
	// A configured URL url.Parse refuses, or reads without a host: the whole value is the URL, so
	// a password holding a space or a quote, or a URL lacking a slash, still yields its password.
	for u, want := range map[string]string{
		"redis://:s3cr3t Pa55w0rd@r:6379/0":       "s3cr3t Pa55w0rd",
		`postgres://app:Xy"9zQ<w@db/intake`:       `Xy"9zQ<w`,
		"redis:/:s3cr3tPa55w0rd@127.0.0.1:6379/0": "s3cr3tPa55w0rd",
		"redis::s3cr3tPa55w0rd@127.0.0.1:6379/0":  "s3cr3tPa55w0rd",
	} {
		require.Contains(t, redact.Secrets(u), want, u)
	}
	require.Empty(t, redact.Secrets("postgres:///intake?host=/var/run/postgresql"), "a socket URL has no password")
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
		"receipt handle", `receipt handle "`, `"ReceiptHandle\":`, " for parameter ReceiptHandle", "Value  for parameter receipthandle",
		processcreds, `{"password":"x"}`, `\"token\":\"a\\\"`, "Authorization: Basic ", "authorization=Digest a=b", "x-api-key:[", `password="`} {
		f.Add(s)
	}
	for _, tc := range receiptHandleCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := redact.String(s)
		if !strings.Contains(s, "=") && !strings.Contains(s, ":") && !strings.Contains(strings.ToLower(s), "bearer ") &&
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

// TestScheme: a URL's scheme, with or without its slashes; none for a key=value connection
// string or text that only contains a ':'.
func TestScheme(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]string{
		"redis://:pw@r:6379/0":         "redis",
		"redis:/:pw@r:6379/0":          "redis",
		"postgresql+ssl://u@db/x":      "postgresql+ssl",
		"host=db password=a:b":         "",
		"1redis://r":                   "",
		"no colon at all":              "",
		":pw@host":                     "",
		"password=x host=db port=5432": "",
	} {
		require.Equal(t, want, redact.Scheme(s), s)
	}
}
