package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/intakehq/intake/internal/jsonstr"
	"github.com/intakehq/intake/internal/problem"
)

// MaxMetadata bounds the app's metadata of an intent: its compact JSON with every number counted
// in the plain decimal form PostgreSQL's jsonb prints it in (1e308 is 309 digits, 1e-300 is 302
// characters). Notifications carry jsonb's own text, which adds a space after every ':' and ','
// besides (up to about half as much again); GET /v1/uploads/{id} returns it compacted.
const MaxMetadata = 2 << 10

// maxMetadataExponent bounds the exponent of a metadata number. PostgreSQL's numeric refused
// exponents beyond ±1000 (NUMERIC_MAX_PRECISION) before version 15, and from 15 on overflows on a
// zero with an exponent past about ±10⁹: the number would fail the intent's insert rather than be
// refused as the client's mistake. Non-zero numbers within float64's range need no more than ±1000
// unless their mantissa spells hundreds of digits.
const maxMetadataExponent = 1000

var probInvalidMetadata = problem.Kind{Slug: "invalid-metadata", Title: "Invalid metadata", Status: http.StatusBadRequest}

// parseMetadata checks the metadata of an intent: absent or null (nil), or a JSON object that
// PostgreSQL's jsonb holds as sent, of at most MaxMetadata bytes both once compacted and with its
// numbers as jsonb renders them (plain decimal: every GET, webhook and verdict task carries that
// form; the notifications with a space after each ':' and ',', which MaxMetadata does not count): valid
// UTF-8, no NUL character, no unpaired surrogate escape (encoding/json would turn those into U+FFFD;
// jsonb refuses them), numbers within float64's range (jsonb refuses an exponent past its numeric
// range) and exponents within ±maxMetadataExponent. It returns the compact JSON.
func parseMetadata(raw json.RawMessage) ([]byte, *Problem) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, problemf(probInvalidMetadata, "metadata must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, problemf(probInvalidMetadata, "metadata is not valid JSON: %v", err)
	}
	if buf.Len() > MaxMetadata {
		return nil, problemf(probInvalidMetadata, "metadata is %d bytes of JSON; at most %d are kept", buf.Len(), MaxMetadata)
	}
	if !utf8.Valid(buf.Bytes()) {
		return nil, problemf(probInvalidMetadata, "metadata is not valid UTF-8")
	}
	if !jsonstr.SurrogatesPaired(buf.Bytes()) {
		return nil, problemf(probInvalidMetadata, "metadata holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)")
	}
	d := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, problemf(probInvalidMetadata, "metadata is not valid JSON: %v", err)
	}
	growth := 0 // what jsonb's rendering of the numbers adds to the compact JSON
	if p := checkMetadataValue(v, &growth); p != nil {
		return nil, p
	}
	if rendered := buf.Len() + growth; rendered > MaxMetadata {
		return nil, problemf(probInvalidMetadata, "metadata is %d bytes as stored, its numbers in plain decimal (1e308 is 309 digits); at most %d are kept", rendered, MaxMetadata)
	}
	return buf.Bytes(), nil
}

// checkMetadataValue walks a decoded JSON value (numbers as json.Number) for NUL characters in
// strings and keys, and numbers outside float64's range or with an exponent beyond
// ±maxMetadataExponent; it adds to *growth how much longer than sent jsonb renders its numbers.
func checkMetadataValue(v any, growth *int) *Problem {
	switch v := v.(type) {
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			return problemf(probInvalidMetadata, "metadata must not contain NUL characters (\\u0000)")
		}
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || f == 0 && strings.ContainsAny(strings.TrimLeft(mantissa(string(v)), "-0."), "123456789") {
			return problemf(probInvalidMetadata, "metadata number %.40s is outside the range of a 64-bit float", v)
		}
		r, ok := renderNumber(string(v))
		if !ok {
			return problemf(probInvalidMetadata, "metadata number %.40s has an exponent beyond ±%d", v, maxMetadataExponent)
		}
		*growth += len(r) - len(v)
	case []any:
		for _, e := range v {
			if p := checkMetadataValue(e, growth); p != nil {
				return p
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 {
				return problemf(probInvalidMetadata, "metadata must not contain NUL characters (\\u0000)")
			}
			if p := checkMetadataValue(e, growth); p != nil {
				return p
			}
		}
	}
	return nil
}

// mantissa is a JSON number without its exponent.
func mantissa(n string) string {
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		return n[:i]
	}
	return n
}

// renderNumber is n, a valid JSON number, as PostgreSQL's jsonb renders it: numeric's plain
// decimal form, with no exponent. Its scale (the digits after the point) is the mantissa's
// fraction digits less the exponent, at least 0; its integer part drops leading zeros and gains the
// exponent's, "0" when there is none; a zero has no sign. ok is false when the exponent is beyond
// ±maxMetadataExponent (the result would be that many digits long).
func renderNumber(n string) (rendered string, ok bool) {
	exp := 0
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(n[i+1:], "+"))
		if err != nil || e > maxMetadataExponent || e < -maxMetadataExponent {
			return "", false
		}
		n, exp = n[:i], e
	}
	negative := strings.HasPrefix(n, "-")
	n = strings.TrimPrefix(n, "-")
	intPart, frac, _ := strings.Cut(n, ".")
	digits := intPart + frac
	point := len(intPart) + exp // the point sits after this many of digits (before them when negative)
	var integer, fraction string
	switch {
	case point <= 0:
		fraction = strings.Repeat("0", -point) + digits
	case point >= len(digits):
		integer = digits + strings.Repeat("0", point-len(digits))
	default:
		integer, fraction = digits[:point], digits[point:]
	}
	integer = strings.TrimLeft(integer, "0")
	if integer == "" {
		integer = "0"
	}
	var b strings.Builder
	b.Grow(len(integer) + len(fraction) + 2)
	if negative && strings.Trim(digits, "0") != "" {
		b.WriteByte('-')
	}
	b.WriteString(integer)
	if fraction != "" {
		b.WriteByte('.')
		b.WriteString(fraction)
	}
	return b.String(), true
}

// uppyQueryMetadata collects the metadata[name]=value query parameters Uppy sends to /s3/params
// into a JSON object (nil when there are none).
func uppyQueryMetadata(q map[string][]string) (json.RawMessage, *Problem) {
	m := map[string]string{}
	for k, vs := range q {
		name, ok := strings.CutPrefix(k, "metadata[")
		if !ok || !strings.HasSuffix(name, "]") {
			continue
		}
		if len(vs) > 1 {
			return nil, problemf(probInvalidParam, "query parameter %q is given %d times", k, len(vs))
		}
		if !utf8.ValidString(k) || !utf8.ValidString(vs[0]) {
			// json.Marshal would write U+FFFD for the bytes, as it would for an unpaired
			// surrogate (ED A0 80 is \ud800 in WTF-8): refused, as /v1 refuses both.
			return nil, problemf(probInvalidMetadata, "query parameter %q: metadata is not valid UTF-8", k)
		}
		m[strings.TrimSuffix(name, "]")] = vs[0]
	}
	if len(m) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, problemf(probInvalidMetadata, "metadata: %v", err)
	}
	return raw, nil
}
