package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/intakehq/intake/internal/redact"
)

// Actions taken on a rejected object.
const (
	// ActionTag tags the object intake-status=rejected (and intake-reason) and leaves it in place.
	ActionTag = "tag"
	// ActionQuarantine moves the object under the rule's quarantine prefix.
	ActionQuarantine = "quarantine"
	// ActionDelete deletes the object.
	ActionDelete = "delete"
	// ActionNone only records the verdict.
	ActionNone = "none"
)

// Rule is the validation policy for the keys under one prefix.
type Rule struct {
	// Prefix selects the keys the rule applies to; the longest matching prefix wins ("" matches all).
	Prefix string `yaml:"prefix"`
	// MaxSize is the largest object accepted, in bytes (0: no limit); a policy file must write it as
	// an integer (ParsePolicy refuses 0.5 or 1.5e9).
	MaxSize int64 `yaml:"max_size"`
	// AllowedTypes are media-type patterns ("image/*", "application/pdf"); empty allows any type.
	AllowedTypes []string `yaml:"allowed_types"`
	// RequireSniffMatch rejects objects whose sniffed type disagrees with the declared one. Left out
	// of a policy file it is false (DefaultPolicy's rule has it true); [Policy.Warnings] names a
	// rule with AllowedTypes that leaves it out.
	RequireSniffMatch bool `yaml:"require_sniff_match"`
	// Action is what happens to a rejected object: tag, quarantine, delete or none.
	Action string `yaml:"action"`
	// QuarantinePrefix is where ActionQuarantine moves objects (default "quarantine/").
	QuarantinePrefix string `yaml:"quarantine_prefix"`

	// sniffUnset is set by ParsePolicy on a rule of the file that does not write
	// require_sniff_match (RequireSniffMatch is then false, unlike DefaultPolicy's): [Policy.Warnings]
	// names such a rule when it has allowed_types. A Rule built in Go never has it.
	sniffUnset bool
}

// Policy is an ordered set of rules. It must have a catch-all rule (prefix ""): the zero value,
// which has none, does not pass [Policy.Validate].
type Policy struct {
	// Rules are matched by longest prefix.
	Rules []Rule `yaml:"rules"`
	// Webhooks are endpoints that receive the notifications of the keys under their prefix, in
	// addition to the default endpoint (INTAKE_WEBHOOK_URL); see internal/webhook.
	Webhooks []WebhookEndpoint `yaml:"webhooks"`
}

// WebhookEndpoint is one receiver of notifications, declared in the policy file. Its secret is not
// in the file: it is read from the environment variable SecretEnv (a Kubernetes Secret, typically).
type WebhookEndpoint struct {
	// Name labels the endpoint in metrics, logs and delivery tasks: lower-case letters, digits, '-'
	// and '_', at most 40 characters; "default" is the INTAKE_WEBHOOK_URL endpoint's.
	Name string `yaml:"name"`
	// Prefix selects the keys whose notifications the endpoint receives ("" = every key).
	Prefix string `yaml:"prefix"`
	// URL is where notifications are posted (http or https).
	URL string `yaml:"url"`
	// SecretEnv names the environment variable holding the endpoint's secret (whsec_…).
	SecretEnv string `yaml:"secret_env"`
}

// Secrets returns the values of the endpoints' secret_env variables read with getenv (os.Getenv),
// for a log redactor to mask wherever they appear. URLs' passwords and sensitive query
// parameters are masked too.
func (p *Policy) Secrets(getenv func(string) string) []string {
	var out []string
	for _, w := range p.Webhooks {
		out = append(out, redact.WebhookSecrets(w.URL)...)
		if w.SecretEnv != "" {
			secret := getenv(w.SecretEnv)
			out = append(out, secret)
			out = append(out, strings.Fields(secret)...) // each of a rotation's secrets alone
		}
	}
	return out
}

// webhookName is what an endpoint name may look like.
var webhookName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// DefaultPolicy is used when no policy file is configured: 5 GiB max, any type, sniffed type must
// agree with the declared one, rejected objects are tagged.
func DefaultPolicy() *Policy {
	return &Policy{Rules: []Rule{{
		Prefix: "", MaxSize: 5 << 30, RequireSniffMatch: true, Action: ActionTag, QuarantinePrefix: "quarantine/",
	}}}
}

// LoadPolicy reads a YAML policy file (see README, "Validation policy"); "" returns DefaultPolicy.
func LoadPolicy(file string) (*Policy, error) {
	if file == "" {
		return DefaultPolicy(), nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", file, err)
	}
	p, err := ParsePolicy(raw)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", file, err)
	}
	return p, nil
}

// ParsePolicy parses and validates a YAML policy. Besides [Policy.Validate]'s checks, it refuses
// what decoding alone would let through with weaker rules than written: a second YAML document
// (only the first would be read), a rule entry that is empty (null: it would decode as a rule of
// prefix "" checking nothing), and a max_size that is not an integer (0.5 would be truncated to 0,
// no limit). It notes the rules that leave require_sniff_match unset, for [Policy.Warnings].
func ParsePolicy(raw []byte) (*Policy, error) {
	var doc yaml.Node
	nodes := yaml.NewDecoder(bytes.NewReader(raw))
	if err := nodes.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	// Documents after the first would not be read: refused unless empty (a trailing '---', or
	// comments only after it, lose nothing).
	for {
		var next yaml.Node
		err := nodes.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse YAML: %w", err)
		}
		if len(next.Content) > 0 && (next.Content[0].Kind != yaml.ScalarNode || next.Content[0].ShortTag() != yamlNull) {
			return nil, fmt.Errorf("parse YAML: the file holds more than one YAML document (a '---' line, line %d, starts another), and only the first would be read; put every rule and webhook in one document", next.Line)
		}
	}
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	if err := p.checkRuleNodes(&doc); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// YAML's short tags, as yaml.Node.ShortTag gives them.
const (
	yamlNull  = "!!null"
	yamlInt   = "!!int"
	yamlMerge = "!!merge"
)

// checkRuleNodes checks the rules as written in doc (the document p was decoded from), which the
// decoded values cannot tell: a null entry, a max_size that is not an integer, and marks the rules
// that do not write require_sniff_match.
func (p *Policy) checkRuleNodes(doc *yaml.Node) error {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	rules := yamlFields(doc.Content[0])["rules"]
	if rules = yamlDeref(rules); rules == nil || rules.Kind != yaml.SequenceNode {
		return nil
	}
	var errs []error
	for i, item := range rules.Content {
		item = yamlDeref(item)
		if item.Kind == yaml.ScalarNode && item.ShortTag() == yamlNull {
			errs = append(errs, fmt.Errorf("rule %d (line %d) is empty (a '-' with nothing after it): it would be a rule of prefix \"\" that checks nothing; remove it, or write its fields", i, item.Line))
			continue
		}
		fields := yamlFields(item)
		name := ""
		if n := yamlDeref(fields["prefix"]); n != nil {
			name = n.Value
		}
		if n := yamlDeref(fields["max_size"]); n != nil && n.ShortTag() != yamlInt {
			errs = append(errs, fmt.Errorf("rule %d (%q): max_size %q (line %d) is not a whole number of bytes (a fraction or an exponent would be cut to an integer, 0.5 to 0: no limit); write it in bytes, e.g. 104857600 or 0x6400000", i, name, n.Value, n.Line))
		} else if n != nil && octalLooking(n.Value) {
			errs = append(errs, fmt.Errorf("rule %d (%q): max_size %q (line %d) starts with 0, which YAML reads as octal (010 is 8 bytes); write it without the leading zeros, or as 0o… if octal is meant", i, name, n.Value, n.Line))
		}
		if i < len(p.Rules) {
			n := yamlDeref(fields["require_sniff_match"])
			p.Rules[i].sniffUnset = n == nil || n.ShortTag() == yamlNull
		}
	}
	return errors.Join(errs...)
}

// yamlDeref follows aliases (*name) to the node they stand for.
func yamlDeref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// yamlFields returns the values of a mapping node by key, merged mappings ("<<: *base") included;
// a key written in the mapping wins over a merged one, and an earlier merged mapping over a later
// one, as YAML merges them. Any other node has no fields.
func yamlFields(n *yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		n = yamlDeref(n)
		if n == nil || n.Kind != yaml.MappingNode {
			return
		}
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == yamlMerge {
				merges = append(merges, v)
				continue
			}
			if _, ok := out[k.Value]; !ok {
				out[k.Value] = v
			}
		}
		for _, m := range merges {
			if m = yamlDeref(m); m.Kind == yaml.SequenceNode {
				for _, e := range m.Content {
					walk(e)
				}
			} else {
				walk(m)
			}
		}
	}
	walk(n)
	return out
}

// Validate checks every rule and returns all problems at once. It fills the defaults in place
// (action tag, quarantine_prefix "quarantine/"). A policy must have a catch-all rule (prefix ""):
// a key no rule covers would be recorded valid unchecked. No rule's quarantine_prefix may cover
// another rule's prefix: every key under a quarantine prefix is taken for an object already
// quarantined, and never checked.
func (p *Policy) Validate() error {
	var errs []error
	seen := map[string]bool{}
	defaulted := make([]bool, len(p.Rules))
	for i := range p.Rules {
		r := &p.Rules[i]
		if seen[r.Prefix] {
			errs = append(errs, fmt.Errorf("rule %d: prefix %q appears twice", i, r.Prefix))
		}
		seen[r.Prefix] = true
		if r.MaxSize < 0 {
			errs = append(errs, fmt.Errorf("rule %d (%q): max_size must not be negative", i, r.Prefix))
		}
		if r.Action == "" {
			r.Action = ActionTag
		}
		if !slices.Contains([]string{ActionTag, ActionQuarantine, ActionDelete, ActionNone}, r.Action) {
			errs = append(errs, fmt.Errorf("rule %d (%q): action %q is not tag, quarantine, delete or none", i, r.Prefix, r.Action))
		}
		if r.QuarantinePrefix == "" {
			r.QuarantinePrefix, defaulted[i] = "quarantine/", true
		}
		if r.Action == ActionQuarantine && strings.HasPrefix(r.QuarantinePrefix, r.Prefix) && r.Prefix != "" {
			errs = append(errs, fmt.Errorf("rule %d (%q): quarantine_prefix %q lies under the rule's own prefix", i, r.Prefix, r.QuarantinePrefix))
		}
		for _, pat := range r.AllowedTypes {
			if _, err := path.Match(strings.ToLower(pat), "a/b"); err != nil || !strings.Contains(pat, "/") {
				errs = append(errs, fmt.Errorf("rule %d (%q): allowed type %q is not a type/subtype pattern", i, r.Prefix, pat))
			}
		}
	}
	if !seen[""] {
		errs = append(errs, errors.New(noCatchAll()))
	}
	errs = append(errs, p.checkQuarantineCover(defaulted)...)
	names := map[string]bool{}
	for i, w := range p.Webhooks {
		switch {
		case !webhookName.MatchString(w.Name):
			errs = append(errs, fmt.Errorf("webhook %d: name %q must be lower-case letters, digits, '-' or '_' (at most 40)", i, w.Name))
		case w.Name == "default":
			errs = append(errs, fmt.Errorf("webhook %d: the name \"default\" belongs to INTAKE_WEBHOOK_URL", i))
		case names[w.Name]:
			errs = append(errs, fmt.Errorf("webhook %d: name %q appears twice", i, w.Name))
		}
		names[w.Name] = true
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("webhook %d (%q): url must be an http or https URL", i, w.Name))
		}
		if w.SecretEnv == "" {
			errs = append(errs, fmt.Errorf("webhook %d (%q): secret_env is required (the variable holding its whsec_ secret)", i, w.Name))
		}
	}
	return errors.Join(errs...)
}

// noCatchAll is the error of a policy without a rule of prefix "", with the built-in default's
// rule to add (one line of YAML).
func noCatchAll() string {
	d := DefaultPolicy().Rules[0]
	return fmt.Sprintf("no rule has the prefix \"\": keys under no rule would be accepted unchecked (recorded valid, with no size, type or sniff check); "+
		"add a catch-all rule to rules:, e.g. the built-in default's (used without a policy file): "+
		"- {prefix: \"\", max_size: %d, require_sniff_match: %t, action: %s, quarantine_prefix: %s}  # %s, any type",
		d.MaxSize, d.RequireSniffMatch, d.Action, d.QuarantinePrefix, sizeString(d.MaxSize))
}

// checkQuarantineCover refuses a quarantine prefix (each rule has one, defaulted[i] when Validate
// filled it in) that is a prefix of a rule's non-empty prefix, or equal to it: the Processor takes
// any key under a quarantine prefix, of whatever rule, for an object it quarantined, records it
// rejected (reason quarantined) and checks nothing, so that rule would never run. A quarantine
// prefix under a rule's prefix ("" included) is another matter (see Validate's per-rule check).
func (p *Policy) checkQuarantineCover(defaulted []bool) []error {
	var errs []error
	done := map[string]bool{}
	for i, q := range p.Rules {
		if q.QuarantinePrefix == "" || done[q.QuarantinePrefix] {
			continue
		}
		done[q.QuarantinePrefix] = true
		whose := fmt.Sprintf("rule %d (%q)", i, q.Prefix)
		if defaulted[i] {
			whose += ", by default"
		}
		for j, r := range p.Rules {
			if r.Prefix != "" && strings.HasPrefix(r.Prefix, q.QuarantinePrefix) {
				errs = append(errs, fmt.Errorf("quarantine_prefix %q (%s) covers the prefix of rule %d (%q): every key under it would be taken for an already quarantined object, recorded rejected (quarantined) and never checked; choose a quarantine_prefix outside every rule's prefix",
					q.QuarantinePrefix, whose, j, r.Prefix))
			}
		}
	}
	return errs
}

// Warnings names the rules of a validated policy that start without error but may check less than
// their author meant: a rule with allowed_types whose file leaves require_sniff_match unset (false,
// while the built-in default has it true), and a rule whose prefix does not end in '/' (it also
// covers the keys of sibling names; a webhook's alike), and a quarantine_prefix not ending in '/'
// (every key starting with it is taken for a quarantined object). `intake run` logs each at start, whatever its roles.
func (p *Policy) Warnings() []string {
	var out []string
	for _, r := range p.Rules {
		if len(r.AllowedTypes) > 0 && !r.RequireSniffMatch && r.sniffUnset {
			out = append(out, fmt.Sprintf("rule %q checks the declared type only: a file declared image/png that is HTML passes; set require_sniff_match: true (or false to silence)", r.Prefix))
		}
		if r.Prefix != "" && !strings.HasSuffix(r.Prefix, "/") {
			out = append(out, fmt.Sprintf("rule %q: a prefix not ending in '/' also covers the keys of sibling names (%q too); end it with '/' (%q) unless that is meant",
				r.Prefix, r.Prefix+"-other/a.png", r.Prefix+"/"))
		}
		if !strings.HasSuffix(r.QuarantinePrefix, "/") {
			out = append(out, fmt.Sprintf("rule %q: quarantine_prefix %q does not end in '/': every key starting with it (%q too) is taken for an object intake quarantined, recorded rejected and never checked; end it with '/' (%q)",
				r.Prefix, r.QuarantinePrefix, r.QuarantinePrefix+"-reports/a.csv", r.QuarantinePrefix+"/"))
		}
	}
	for _, w := range p.Webhooks {
		if w.Prefix != "" && !strings.HasSuffix(w.Prefix, "/") {
			out = append(out, fmt.Sprintf("webhook %q: a prefix not ending in '/' also sends it the notifications of sibling names (%q too); end it with '/' (%q) unless that is meant",
				w.Name, w.Prefix+"-other/a.png", w.Prefix+"/"))
		}
	}
	return out
}

// For returns the rule of the longest prefix matching key, and false when none matches.
func (p *Policy) For(key string) (Rule, bool) {
	best, found := Rule{}, false
	for _, r := range p.Rules {
		if strings.HasPrefix(key, r.Prefix) && (!found || len(r.Prefix) > len(best.Prefix)) {
			best, found = r, true
		}
	}
	return best, found
}

// HashRate is the rate at which [Policy.HashWarnings] assumes one object is read from S3 and hashed:
// one GET stream, conservatively (one request to S3 in its region commonly carries about 90 MB/s;
// MinIO on loopback gives intake about 1 GB/s).
const HashRate = 64 << 20

// HashWarnings names the objects intake may have to hash that may not be hashed within budget
// (INTAKE_CONSUMER_MESSAGE_TIMEOUT) at [HashRate]: those of a rule whose max_size is larger than
// that, or that has none (a declared-sha256 upload is hashed whatever its size), those of keys no
// rule covers (no size limit) when no rule has the prefix "", and those up to hashMaxSize
// (INTAKE_CONSUMER_HASH_MAX_SIZE) when it is larger. An event for such an object fails
// each time it runs out of time, and is dead-lettered after the queue's receives, unrecorded. The
// consumer logs each at start.
func (p *Policy) HashWarnings(budget time.Duration, hashMaxSize int64) []string {
	within := int64(budget.Seconds() * HashRate)
	var out []string
	if _, ok := p.For(""); !ok {
		// Some keys match no rule, and nothing bounds their size.
		out = append(out, fmt.Sprintf("no rule has the prefix \"\": keys no rule covers have no size limit, and a declared-sha256 upload larger than %s may not be hashed within %s (at %s/s); add a catch-all rule with a max_size",
			sizeString(within), budget, sizeString(HashRate)))
	}
	for _, r := range p.Rules {
		switch {
		case r.MaxSize == 0:
			out = append(out, fmt.Sprintf("rule %q has no max_size: a declared-sha256 upload larger than %s may not be hashed within %s (at %s/s); set max_size, or raise the timeout",
				r.Prefix, sizeString(within), budget, sizeString(HashRate)))
		case r.MaxSize > within:
			out = append(out, fmt.Sprintf("rule %q: max_size %s takes about %s to hash at %s/s, longer than %s: a declared-sha256 upload larger than %s may not be recorded; lower max_size, or raise the timeout",
				r.Prefix, sizeString(r.MaxSize), (time.Duration(r.MaxSize/HashRate+1)*time.Second), sizeString(HashRate), budget, sizeString(within)))
		}
	}
	if hashMaxSize > within {
		out = append(out, fmt.Sprintf("INTAKE_CONSUMER_HASH_MAX_SIZE %s takes about %s to hash at %s/s, longer than %s: objects larger than %s may not be recorded; lower it, or raise the timeout",
			sizeString(hashMaxSize), (time.Duration(hashMaxSize/HashRate+1)*time.Second), sizeString(HashRate), budget, sizeString(within)))
	}
	return out
}

// sizeString is n bytes in binary units, to one decimal.
func sizeString(n int64) string {
	const unit = 1 << 10
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for ; f >= unit && i < 4; i++ {
		f /= unit
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}

// Rejection reasons (stable strings: they label metrics and are stored in objects.reason).
const (
	ReasonTooLarge      = "too_large"
	ReasonTypeNotAllow  = "type_not_allowed"
	ReasonSniffMismatch = "sniff_mismatch"
	ReasonSizeMismatch  = "size_mismatch"
	ReasonHashMismatch  = "sha256_mismatch"
	ReasonTypeMismatch  = "declared_type_mismatch"
	// ReasonEncoded: an upload intake signed was stored with a Content-Encoding (see judge).
	ReasonEncoded = "content_encoding"
)

// Violation is a policy failure with a stable reason code and a human explanation.
type Violation struct {
	// Reason is one of the Reason* constants.
	Reason string
	// Detail explains the failure.
	Detail string
}

// Error returns "reason: detail".
func (v *Violation) Error() string { return v.Reason + ": " + v.Detail }

// CheckDeclared validates what a client declares before an upload (size and content type); the API
// uses it to refuse before signing, the consumer applies the same rule to what landed.
func (r Rule) CheckDeclared(contentType string, size int64) *Violation {
	if r.MaxSize > 0 && size > r.MaxSize {
		return &Violation{ReasonTooLarge, fmt.Sprintf("size %d exceeds the limit of %d bytes", size, r.MaxSize)}
	}
	if !r.TypeAllowed(contentType) {
		return &Violation{ReasonTypeNotAllow, fmt.Sprintf("content type %q is not among %s", contentType, strings.Join(r.AllowedTypes, ", "))}
	}
	return nil
}

// TypeAllowed reports whether the media type (parameters ignored) matches an allowed pattern.
func (r Rule) TypeAllowed(contentType string) bool {
	if len(r.AllowedTypes) == 0 {
		return true
	}
	mt := MediaType(contentType)
	for _, pat := range r.AllowedTypes {
		if ok, _ := path.Match(strings.ToLower(pat), mt); ok {
			return true
		}
	}
	return false
}

// MediaType returns the lower-cased type/subtype of a Content-Type value, without parameters.
func MediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// octalLooking reports whether v, an integer scalar, is written with a leading 0 followed by
// digits (optionally signed): the YAML decoder reads it as octal, not as the decimal it looks like.
func octalLooking(v string) bool {
	v = strings.TrimLeft(v, "+-")
	return len(v) > 1 && v[0] == '0' && v[1] >= '0' && v[1] <= '9'
}
