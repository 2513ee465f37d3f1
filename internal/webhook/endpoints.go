package webhook

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/intakehq/intake/internal/webhookurl"
	"github.com/intakehq/intake/pipeline"
)

// DefaultEndpoint names the endpoint of INTAKE_WEBHOOK_URL.
const DefaultEndpoint = "default"

// Endpoint is one receiver of notifications.
type Endpoint struct {
	// Name labels it in metrics, logs and delivery tasks.
	Name string
	// Prefix selects the keys whose notifications it receives ("" = every key).
	Prefix string
	// URL is where notifications are posted.
	URL string

	// keys sign each request: one, or several while the receiver's secret is rotated.
	keys [][]byte
}

// EndpointConfig is an endpoint as configured, its secret still encoded.
type EndpointConfig struct {
	// Name, Prefix and URL are the Endpoint's.
	Name, Prefix, URL string
	// Secret is "whsec_" + base64 of the HMAC key; or several such secrets separated by spaces
	// while the receiver's secret is rotated (each request is signed with each).
	Secret string
	// SecretFrom names where the secret came from (a variable), for error messages.
	SecretFrom string
}

// Configs lists the configured endpoints: the default one (url and secret from INTAKE_WEBHOOK_URL
// and INTAKE_WEBHOOK_SECRET; none when url is empty) and those of the policy file, whose secrets
// getenv reads from their secret_env variables.
func Configs(url, secret string, policy []pipeline.WebhookEndpoint, getenv func(string) string) []EndpointConfig {
	var out []EndpointConfig
	if url != "" {
		out = append(out, EndpointConfig{Name: DefaultEndpoint, URL: url, Secret: secret, SecretFrom: "INTAKE_WEBHOOK_SECRET"})
	}
	for _, w := range policy {
		out = append(out, EndpointConfig{Name: w.Name, Prefix: w.Prefix, URL: w.URL, Secret: getenv(w.SecretEnv), SecretFrom: w.SecretEnv})
	}
	return out
}

// Endpoints routes each notification to the endpoints whose prefix its key starts with. The zero
// value has no endpoint.
type Endpoints struct {
	list []Endpoint
}

// NewEndpoints checks the configurations (names unique, http(s) URLs, secrets that decode, each
// endpoint its own secrets) and returns them. Unless allowPrivate, a URL whose host is a literal
// address that is not public, or "localhost", is refused here already (webhookurl.Check, which
// config.Validate runs on INTAKE_WEBHOOK_URL too); other names are checked when connecting.
//
// Two endpoints with different URLs may not share a secret (one of their secrets, while either is
// rotated): a request captured at one (its logs, a proxy in front of it) would verify at the
// other, which would take it for a notification of its own. Endpoints with the same URL may (one
// receiver given the notifications of several prefixes: a request replayed there reaches the
// receiver it was sent to).
func NewEndpoints(cfgs []EndpointConfig, allowPrivate bool) (*Endpoints, error) {
	var errs []error
	var from []string // each listed endpoint's SecretFrom
	e := &Endpoints{}
	for _, c := range cfgs {
		if slices.ContainsFunc(e.list, func(o Endpoint) bool { return o.Name == c.Name }) {
			errs = append(errs, fmt.Errorf("webhook endpoint %q: defined twice", c.Name))
			continue
		}
		if err := checkURL(c.URL, allowPrivate); err != nil {
			errs = append(errs, fmt.Errorf("webhook endpoint %q: %w", c.Name, err))
		}
		keys, err := ParseSecrets(c.Secret)
		if err != nil {
			if c.Secret == "" {
				err = errors.New("secret is empty")
			}
			errs = append(errs, fmt.Errorf("webhook endpoint %q: %s: %w", c.Name, c.SecretFrom, err))
		}
		if i := slices.IndexFunc(e.list, func(o Endpoint) bool {
			return o.URL != c.URL && shareKey(o.keys, keys)
		}); i >= 0 {
			errs = append(errs, fmt.Errorf("webhook endpoint %q: %s: the same secret as endpoint %q (%s); give each endpoint its own, "+
				"or a request captured at one verifies at the other", c.Name, cmp.Or(c.SecretFrom, "its secret"), e.list[i].Name, cmp.Or(from[i], "its secret")))
		}
		e.list = append(e.list, Endpoint{Name: c.Name, Prefix: c.Prefix, URL: c.URL, keys: keys})
		from = append(from, c.SecretFrom)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

// shareKey reports whether two endpoints' keys have one in common.
func shareKey(a, b [][]byte) bool {
	return slices.ContainsFunc(a, func(k []byte) bool {
		return slices.ContainsFunc(b, func(l []byte) bool { return bytes.Equal(k, l) })
	})
}

// checkURL runs the static checks of webhookurl.Check (the ones config.Validate runs on
// INTAKE_WEBHOOK_URL at start-up); a refused address wraps [ErrForbiddenAddress].
func checkURL(raw string, allowPrivate bool) error {
	if err := webhookurl.Check(raw, allowPrivate); err != nil {
		return fmt.Errorf("url: %w", err)
	}
	return nil
}

// For returns the names of the endpoints that receive the notifications of key, in configuration
// order (the default endpoint first).
func (e *Endpoints) For(key string) []string {
	if e == nil {
		return nil
	}
	var names []string
	for _, ep := range e.list {
		if strings.HasPrefix(key, ep.Prefix) {
			names = append(names, ep.Name)
		}
	}
	return names
}

// Get returns the endpoint called name.
func (e *Endpoints) Get(name string) (Endpoint, bool) {
	if e == nil {
		return Endpoint{}, false
	}
	i := slices.IndexFunc(e.list, func(ep Endpoint) bool { return ep.Name == name })
	if i < 0 {
		return Endpoint{}, false
	}
	return e.list[i], true
}

// Names lists every endpoint's name.
func (e *Endpoints) Names() []string {
	if e == nil {
		return nil
	}
	names := make([]string, len(e.list))
	for i, ep := range e.list {
		names[i] = ep.Name
	}
	return names
}
