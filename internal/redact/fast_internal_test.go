package redact

import "testing"

// FuzzFastPath: String's fast path (mayHoldSecret) passes on every text its slow path would
// change: a text it lets through unchanged holds nothing String masks.
func FuzzFastPath(f *testing.F) {
	for _, s := range []string{"token: Abcdefgh1", `"password":"x"`, `\"secret\" :\"y\"`, "Authorization:[Basic x]",
		"x-api-key: 0123456789", "api error NotFound: Not Found", "a=b", "http://u:p@h", "Bearer abcdefghij",
		"receipt handle AQEBwJnKyrHigUMZj6rY", "pass%77ord: Abcdefgh1", "sig\t: 0123456789ab"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !mayHoldSecret(s) {
			if out := mask(s); out != s {
				t.Fatalf("the fast path let through %q, which String masks: %q", s, out)
			}
		}
	})
}

// TestMayHoldSecret: the fast path lets ordinary messages through, colons and all, and stops those
// a sensitive name's value may follow.
func TestMayHoldSecret(t *testing.T) {
	for _, s := range []string{"object recorded", "peek b/k: operation error S3: HeadObject, api error NotFound: Not Found",
		"read secret file failed", "the token is missing", "signal: killed", "api: Not Found", "time: 12:30"} {
		if mayHoldSecret(s) {
			t.Errorf("mayHoldSecret(%q) = true", s)
		}
	}
	for _, s := range []string{"token: x", `{"SessionToken" : "x"}`, `{\"password\":\"x\"}`, "X-Api-Key:[k]", "a=b",
		"see http://h/", "Bearer x", "receipt"} {
		if !mayHoldSecret(s) {
			t.Errorf("mayHoldSecret(%q) = false", s)
		}
	}
}
