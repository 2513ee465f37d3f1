package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
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

// ParseSecret decodes a "whsec_<base64>" secret into its HMAC key (config.ParseWebhookSecret).
func ParseSecret(s string) ([]byte, error) { return config.ParseWebhookSecret(s) }

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
