package auth_test

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/intakehq/intake/internal/auth"
)

// TestCrossSite: each case names who sent the request; the verdict is the same whether the api's
// cookie or the jobs API's development auth asks (only the evidence demanded differs).
func TestCrossSite(t *testing.T) {
	t.Parallel()
	trusted := func(o string) bool { return o == "https://app.example.com" }
	for _, tt := range []struct {
		who      string
		header   map[string]string
		tls      bool
		evidence bool // requireEvidence
		refused  bool
	}{
		{who: "intake's own page (modern browser)", header: map[string]string{"Sec-Fetch-Site": "same-origin"}, evidence: true},
		{who: "a trusted app's page", header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com"}, evidence: true},
		{who: "another site's page", header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, refused: true},
		{who: "another site's page without Origin (no-cors GET)", header: map[string]string{"Sec-Fetch-Site": "cross-site"}, refused: true},
		{who: "a sibling site's page", header: map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://x.intake.test"}, refused: true},
		{who: "the user's own navigation under development auth", header: map[string]string{"Sec-Fetch-Site": "none"}},
		{who: "the user's own navigation with the cookie", header: map[string]string{"Sec-Fetch-Site": "none"}, evidence: true, refused: true},
		{who: "an older browser on intake's own origin", header: map[string]string{"Origin": "http://intake.test"}, evidence: true},
		{who: "an older browser on intake's origin, TLS terminated by intake", header: map[string]string{"Origin": "https://intake.test"}, tls: true, evidence: true},
		{who: "a plain-http page on intake's host against TLS", header: map[string]string{"Origin": "http://intake.test"}, tls: true, refused: true},
		{who: "a plain-http page on intake's host behind an https proxy", header: map[string]string{"Origin": "http://intake.test", "X-Forwarded-Proto": "https"}, refused: true},
		{who: "the same behind an RFC 7239 proxy", header: map[string]string{"Origin": "http://intake.test", "Forwarded": `for=192.0.2.1;proto="https"`}, refused: true},
		{who: "an older browser on another site", header: map[string]string{"Origin": "https://evil.example"}, refused: true},
		{who: "curl under development auth", header: map[string]string{}},
		{who: "a form with the cookie and no browser headers", header: map[string]string{}, evidence: true, refused: true},
		{who: "Uppy's client with the cookie", header: map[string]string{"Uppy-Versions": "@uppy/aws-s3=4"}, evidence: true},
		{who: "another site's page with a script header", header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "X-Requested-With": "x"}, evidence: true, refused: true},
	} {
		t.Run(tt.who, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://intake.test/v1/uploads", nil)
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			why := auth.CrossSite(r, trusted, tt.evidence)
			assert.Equal(t, tt.refused, why != "", "CrossSite said %q", why)
		})
	}
}
