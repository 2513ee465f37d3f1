package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/intakehq/intake/internal/config"
)

// Header names of the Standard Webhooks specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret ("whsec_" followed by the base64 of the key).
const SecretPrefix = config.WebhookSecretPrefix

// ParseSecrets decodes an endpoint's secret setting into its HMAC keys (config.ParseWebhookSecret):
// one "whsec_<base64>" secret, or several separated by spaces while the receiver's secret is
// rotated ([SignAll] signs with each).
func ParseSecrets(s string) ([][]byte, error) { return config.ParseWebhookSecret(s) }

// ParseSecret decodes one "whsec_<base64>" secret into its HMAC key; a setting of several secrets
// is an error here (see [ParseSecrets]).
func ParseSecret(s string) ([]byte, error) {
	keys, err := ParseSecrets(s)
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("%d secrets, want one", len(keys))
	}
	return keys[0], nil
}

// Sign returns the webhook-signature value of one request: "v1," and the base64 HMAC-SHA256, keyed
// by key, of "<id>.<unix seconds of ts>.<body>".
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignAll returns the webhook-signature value of one request signed with each of keys (an
// endpoint's secrets while its receiver's is rotated): the [Sign] values separated by spaces, in the
// keys' order, as the Standard Webhooks specification lets a request carry several. A receiver
// holding any one of the secrets finds the signature it can verify among them.
func SignAll(keys [][]byte, id string, ts time.Time, body []byte) string {
	if len(keys) == 1 {
		return Sign(keys[0], id, ts, body)
	}
	sigs := make([]string, len(keys))
	for i, key := range keys {
		sigs[i] = Sign(key, id, ts, body)
	}
	return strings.Join(sigs, " ")
}
