// Package redact removes secrets from text before it is logged or printed: passwords in URLs (the
// userinfo and query parameters such as ?password=), in key=value connection strings
// (password='…'), the query of SigV4 presigned URLs (X-Amz-Signature, X-Amz-Credential: the whole
// query is authentication, so it goes whole), the values of sensitive names in JSON
// ("SecretAccessKey":"…", as the AWS SDK's credential_process errors quote it) and in HTTP headers
// (X-Amz-Security-Token: …, Authorization: Basic …, x-api-key: …), bearer tokens, SQS receipt
// handles (which SQS repeats in its errors), and any value a [Redactor] was told is secret.
//
// # Where it applies
//
// Sources that build messages from URLs redact them there ([URL], [Error] for the *url.Error that
// net/http returns with the request's URL). The log handler of internal/telemetry runs every
// message and attribute through a [Redactor] holding the configuration's secrets, so a secret that
// reaches a log line by a path nobody foresaw is masked as well.
package redact

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Mask replaces every secret.
const Mask = "REDACTED"

// sensitiveSubstrings mark a parameter name as secret when the lower-cased name contains one.
var sensitiveSubstrings = []string{"password", "passwd", "secret", "token", "signature", "credential",
	"authorization", "receipthandle", "receipt_handle", "receipt-handle"}

// sensitiveNames mark a parameter name as secret when the lower-cased name equals one.
var sensitiveNames = []string{"pwd", "pass", "sig", "apikey", "api_key", "api-key", "x-api-key", "auth"}

// Sensitive reports whether a parameter called name (a URL query parameter, a connection-string
// keyword, a JSON member, an HTTP header) holds a secret: password, sslpassword, X-Amz-Signature,
// X-Amz-Credential, X-Amz-Security-Token, token, secret, SecretAccessKey, SessionToken, sig,
// api_key, x-api-key, Authorization, ReceiptHandle (an SQS receipt handle lets its holder delete
// the message, or hide it until its next receive), …
func Sensitive(name string) bool {
	for _, n := range sensitiveNames {
		if len(n) == len(name) && strings.EqualFold(n, name) {
			return true
		}
	}
	for i := 0; i < len(name); i++ {
		if !substringStart[name[i]] {
			continue
		}
		c := name[i] | 0x20
		for _, w := range sensitiveSubstrings {
			if w[0] == c && hasPrefixFoldASCII(name[i:], w) {
				return true
			}
		}
	}
	return false
}

// substringStart marks the bytes a sensitive substring starts with, in both cases.
var substringStart = func() (t [256]bool) {
	for _, w := range sensitiveSubstrings {
		t[w[0]] = true
		t[w[0]-'a'+'A'] = true
	}
	return t
}()

// URL returns raw with its secrets masked: the password of the userinfo and the values of sensitive
// query parameters of a URL, or the sensitive values of a key=value connection string
// ("host=db password=secret"). The query of a SigV4 presigned URL (X-Amz-Signature or
// X-Amz-Credential among its parameters) is all authentication: it is replaced whole. The rest is
// kept as written, so the result still says where it points. Text that is neither is run through
// [String].
func URL(raw string) string {
	if !strings.Contains(raw, "://") {
		// A key=value connection string, or not a URL at all. libpq ends an unquoted value at
		// whitespace only, so "password=ab,cd" is one value, which String's patterns (ending a
		// value at ',' too) would cut short: the values of sensitive keywords go first, whole.
		for _, f := range dsnFields(raw) {
			if Sensitive(f[0]) && f[1] != "" {
				raw = strings.ReplaceAll(raw, dsnQuote.Replace(f[1]), Mask)
				raw = strings.ReplaceAll(raw, f[1], Mask)
			}
		}
		return String(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return pairs(userinfo(raw))
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Mask)
	}
	u.RawQuery = query(u.RawQuery)
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = pairs(u.Fragment), ""
	}
	return u.String()
}

// query masks the values of sensitive parameters of a raw query, keeping the order and encoding of
// the others; a presigned URL's query is replaced whole.
func query(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if lower := strings.ToLower(name); lower == "x-amz-signature" || lower == "x-amz-credential" {
			return Mask
		}
		if ok && Sensitive(name) {
			parts[i] = k + "=" + Mask
		}
	}
	return strings.Join(parts, "&")
}

// String masks the secrets it recognizes in free text (an error message, a log message): every URL
// in it as [URL] does (net/http quotes URLs in its errors); the value of every [Sensitive] name
// written name=value (connection-string keywords, quoted values included), "name":"value" (JSON,
// also with its quotes escaped as \" inside a quoted string) or Name: value (an HTTP header, Go's
// %v of an http.Header); the credentials after an Authorization header's scheme (Basic, Bearer,
// Token, …); the token after "Bearer "; and the SQS receipt handles SQS's errors repeat (see
// receiptHandles). A value after "name:" with an unquoted name is masked only when it looks like a
// token (tokenish): "invalid token: expired" keeps its words.
func String(s string) string {
	if !mayHoldSecret(s) {
		return s
	}
	return mask(s)
}

// mask is String without its fast path.
func mask(s string) string {
	s = urls(s)
	s = pairs(s)
	s = bearer(s)
	s = receiptHandles(s)
	return s
}

// mayHoldSecret is String's fast path, a superset of what String masks: text with "=" or "://", a
// sensitive name before a ':' (as pairs reads it), "bearer " or "receipt" (any case). Anything else
// ("peek b/k: api error NotFound: Not Found") has nothing String masks. No allocation, one pass for
// the words and a look at the name before each ':': it runs on every log message and attribute.
func mayHoldSecret(s string) bool {
	if strings.IndexByte(s, '=') >= 0 {
		return true
	}
	for i := strings.IndexByte(s, ':'); i >= 0; {
		if strings.HasPrefix(s[i+1:], "//") {
			return true
		}
		if _, _, ok := nameBefore(s, i, false); ok {
			return true
		}
		n := strings.IndexByte(s[i+1:], ':')
		if n < 0 {
			break
		}
		i += 1 + n
	}
	for i := 0; i < len(s); i++ {
		switch s[i] | 0x20 { // ASCII letters in lower case; no other byte becomes 'b' or 'r'
		case 'b':
			if hasPrefixFoldASCII(s[i:], "bearer ") {
				return true
			}
		case 'r':
			if hasPrefixFoldASCII(s[i:], "receipt") {
				return true
			}
		}
	}
	return false
}

// hasPrefixFoldASCII reports whether s starts with word, ASCII letters compared without case; word
// is lower case.
func hasPrefixFoldASCII(s, word string) bool {
	if len(s) < len(word) {
		return false
	}
	for j := 0; j < len(word); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != word[j] {
			return false
		}
	}
	return true
}

// endOfToken reports whether c ends an unquoted value in free text.
func endOfToken(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '"', '\'', '`', '&', ',', ';', ')', '>', ']', '}':
		return true
	}
	return false
}

// endOfURL reports whether c ends a URL in free text.
func endOfURL(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '"', '\'', '`', '<', '>':
		return true
	}
	return false
}

// isSchemeByte reports whether c may be part of a URL scheme.
func isSchemeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'
}

// urls runs every "scheme://…" of s through URL.
func urls(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	last := 0 // s[:last] has been written to b
	for i := 0; i+3 <= len(s); {
		j := strings.Index(s[i:], "://")
		if j < 0 {
			break
		}
		sep := i + j
		start := sep
		for start > last && isSchemeByte(s[start-1]) {
			start--
		}
		end := sep + 3
		for end < len(s) && !endOfURL(s[end]) {
			end++
		}
		if start < sep {
			b.WriteString(s[last:start])
			b.WriteString(URL(s[start:end]))
			last = end
		}
		i = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// userinfo masks "scheme://user:password@host" passwords in text url.Parse refused.
func userinfo(s string) string {
	var b strings.Builder
	rest := s
	changed := false
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			break
		}
		start := i + 3
		end := start
		// URL calls this only for text url.Parse refused, often because the password holds a '/',
		// '?' or '#' ("postgres://app:pa/ss@db"): the authority is read to the end of the URL and
		// its last '@' taken, masking too much rather than leaving part of a password.
		for end < len(rest) && !endOfURL(rest[end]) {
			end++
		}
		authority := rest[start:end]
		at := strings.LastIndexByte(authority, '@')
		colon := -1
		if at > 0 {
			colon = strings.IndexByte(authority[:at], ':')
		}
		if colon < 0 {
			b.WriteString(rest[:end])
			rest = rest[end:]
			continue
		}
		changed = true
		b.WriteString(rest[:start+colon+1])
		b.WriteString(Mask)
		b.WriteString(rest[start+at : end])
		rest = rest[end:]
	}
	if !changed {
		return s
	}
	b.WriteString(rest)
	return b.String()
}

// isNameByte reports whether c may be part of a parameter name.
func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '%'
}

// pairs masks the values of sensitive names (Sensitive) in the forms free text carries them:
//
//   - name=value (a connection string, a query, slog's text): the value whatever it is, unquoted
//     (to a blank or one of endOfToken's bytes; a quote inside it, as in se'cret, does not end it)
//     or quoted by ', " or ` (a single-quoted value with libpq's \' and \\ escapes, a
//     double-quoted one with JSON's and Go's), blanks around "=" allowed;
//   - "name":"value" (JSON, or JSON quoted once more, its quotes escaped as \"): a quoted value
//     whatever it is;
//   - Name: value (an HTTP header, Go's %v of an http.Header, map[Name:[value]]), and a quoted
//     name's unquoted value: only a value that looks like a token (tokenish), so that the words of
//     "invalid token: expired" stay.
//
// The value of a name holding "auth" (Authorization, Proxy-Authorization) that starts with a
// scheme (authSchemes) keeps it: "Authorization: Basic REDACTED". A quoted value whose closing
// quote is missing is masked to the end of its line.
func pairs(s string) string {
	m := masker{s: s}
	for i := 0; i < len(s); i++ {
		colon := s[i] == ':'
		if !colon && s[i] != '=' {
			continue
		}
		if colon && strings.HasPrefix(s[i+1:], "//") {
			continue // a URL's scheme: urls has seen it
		}
		name, quotedName, ok := nameBefore(s, i, !colon)
		if !ok || colon && name.start >= 2 && s[name.start-2:name.start] == "//" {
			continue // no name, or the user name of a URL's userinfo (urls has masked its password)
		}
		start, end := valueAfter(s, i+1, colon, quotedName, indexFoldASCII(s[name.start:name.end], "auth") >= 0)
		if start == end {
			continue
		}
		m.mask(start, end)
		i = end - 1
	}
	return m.String()
}

// span is s[start:end] of some s.
type span struct{ start, end int }

// nameBefore returns the sensitive name that the separator s[i] ('=' or ':') follows, past blanks
// and its closing quote (", ', ` or \"), URL-unescaped first if unescape (a query's names);
// quoted says it had one; ok is false when there is no such name.
func nameBefore(s string, i int, unescape bool) (name span, quoted, ok bool) {
	k := i // the name ends at k: blanks before the separator are allowed ("password = x")
	for k > 0 && (s[k-1] == ' ' || s[k-1] == '\t') {
		k--
	}
	if k > 0 && (s[k-1] == '"' || s[k-1] == '\'' || s[k-1] == '`') {
		quoted = true
		k--
		if s[k] == '"' && k > 0 && s[k-1] == '\\' {
			k--
		}
	}
	j := k
	for j > 0 && isNameByte(s[j-1]) {
		j--
	}
	if j == k {
		return span{}, false, false
	}
	n := s[j:k]
	if unescape && strings.IndexByte(n, '%') >= 0 {
		if dec, err := url.QueryUnescape(n); err == nil {
			n = dec
		}
	}
	return span{j, k}, quoted, Sensitive(n)
}

// valueAfter returns where the value that starts at s[i] (after its separator) is to be masked; start
// == end when it is not. colon says the separator was ':', quotedName that the name was quoted,
// auth that the name holds "auth" (its value may start with a scheme to keep).
func valueAfter(s string, i int, colon, quotedName, auth bool) (start, end int) {
	v := skipBlanks(s, i)
	if colon && v < len(s) && s[v] == '[' {
		v++ // Go's %v of an http.Header: map[Authorization:[Basic …]]
	}
	if q := quoteAt(s, v); q > 0 {
		start = v + q
		end, closed := closingQuote(s, start, s[v:v+q])
		if !closed {
			end = lineEnd(s, start)
		}
		if !colon && q == 1 && s[v] == '\'' {
			// libpq's quoting: the quotes go too, as they did before (password=REDACTED).
			if closed {
				end++
			}
			return v, end
		}
		value := s[start:end]
		if value == "" || value == Mask {
			return v, v
		}
		if auth {
			if c := afterScheme(value); c > 0 {
				return start + c, end
			}
		}
		if colon && !quotedName && !tokenish(value) {
			return v, v // words in quotes: invalid token: "expired"
		}
		return start, end
	}
	if auth {
		if c := afterScheme(s[v:lineEnd(s, v)]); c > 0 {
			return v + c, credentialsEnd(s, v+c)
		}
	}
	end = unquotedEnd(s, v)
	if colon {
		for end > v && (s[end-1] == '.' || s[end-1] == ':') {
			end-- // the end of a sentence or a label, not of the value
		}
		if !tokenish(s[v:end]) {
			return v, v
		}
	}
	if end == v || strings.HasPrefix(s[v:end], Mask) {
		return v, v
	}
	return v, end
}

// closingQuote returns the index of the quote (the string quote, as quoteAt found it) that closes
// the value starting at s[i], and whether there is one. A value quoted by ' takes libpq's \' and \\
// escapes, one quoted by " JSON's and Go's backslash escapes, one quoted by ` none; one quoted by
// \" (JSON quoted once more) ends at a \" that is not escaped in the text it unquotes to, or at a
// bare " (the end of the string around it).
func closingQuote(s string, i int, quote string) (int, bool) {
	switch quote {
	case "`":
		if n := strings.IndexByte(s[i:], '`'); n >= 0 {
			return i + n, true
		}
		return len(s), false
	case `\"`:
		escaped := false // the unquoted text's previous byte was an unescaped '\'
		for k := i; k < len(s); {
			c, n := s[k], 1
			if c == '\\' && k+1 < len(s) {
				c, n = s[k+1], 2
			}
			switch {
			case c == '"' && (n == 1 || !escaped):
				return k, true
			case escaped:
				escaped = false
			case c == '\\' && n == 2:
				escaped = true
			}
			k += n
		}
		return len(s), false
	}
	for k := i; k < len(s); k++ {
		switch s[k] {
		case '\\':
			k++
		case quote[0]:
			return k, true
		}
	}
	return len(s), false
}

// lineEnd returns the index of the end of the line s[i] is on.
func lineEnd(s string, i int) int {
	if n := strings.IndexAny(s[i:], "\r\n"); n >= 0 {
		return i + n
	}
	return len(s)
}

// unquotedEnd returns the end of the unquoted value that starts at s[i]: the first blank or other
// byte endOfToken names, but a quote ends it only before the end of the text or another such byte
// (a quote inside a value, as in se'cret, is part of it; a quote closing the string the pair was
// written in is not), and a \ only before a quote (JSON quoted once more: \").
func unquotedEnd(s string, i int) int {
	for ; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\'', '`':
			if i+1 == len(s) || endOfToken(s[i+1]) || s[i+1] == '\\' {
				return i
			}
		case '\\':
			if i+1 < len(s) && s[i+1] == '"' {
				return i
			}
		default:
			if endOfToken(c) {
				return i
			}
		}
	}
	return i
}

// authSchemes are the HTTP authentication schemes (lower case) whose credentials follow them in an
// Authorization header.
var authSchemes = []string{"basic", "bearer", "token", "digest", "negotiate", "ntlm", "apikey", "aws4-hmac-sha256",
	"oauth", "dpop", "hoba", "mutual", "sharedkey", "sharedkeylite", "scram-sha-1", "scram-sha-256"}

// afterScheme returns, for the value of an Authorization header, the index of its credentials
// after the scheme (authSchemes) and the blanks after it: 0 when v does not start with a scheme
// followed by a blank and something other than a placeholder (<token>) or Mask.
func afterScheme(v string) int {
	w := 0
	for w < len(v) && (isLetter(v[w]) || '0' <= v[w] && v[w] <= '9' || v[w] == '-') {
		w++
	}
	if w == 0 || w == len(v) || v[w] != ' ' {
		return 0
	}
	known := false
	for _, sc := range authSchemes {
		if len(sc) == w && hasPrefixFoldASCII(v, sc) {
			known = true
			break
		}
	}
	c := skipBlanks(v, w)
	if !known || c == len(v) || v[c] == '<' || strings.HasPrefix(v[c:], Mask) {
		return 0
	}
	return c
}

// credentialsEnd returns the end of an Authorization header's credentials that start at s[i]: one
// token (token68: Basic, Bearer), or, for parameters (Digest's username="…", response="…",
// AWS4-HMAC-SHA256's Credential=…, Signature=…), the rest of the line, or of the brackets of Go's
// %v of an http.Header.
func credentialsEnd(s string, i int) int {
	end := unquotedEnd(s, i)
	if eq := strings.IndexByte(s[i:end], '='); eq < 0 || strings.Trim(s[i+eq:end], "=") == "" {
		return end // token68, base64's "=" padding included
	}
	end = lineEnd(s, i)
	if b := strings.IndexByte(s[i:end], ']'); b >= 0 {
		end = i + b
	}
	return end
}

// minTokenish is the shortest value tokenish takes for a token.
const minTokenish = 8

// tokenish reports whether a value after "name:" looks like a token rather than words: at least
// minTokenish bytes without blanks holding a digit, a '+' or '=' (base64), or an upper-case
// letter after a lower-case one (FwoGZXIv…; not a capitalized word).
func tokenish(v string) bool {
	if len(v) < minTokenish || strings.HasPrefix(v, Mask) {
		return false
	}
	var lower, token bool
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return false
		case '0' <= c && c <= '9', c == '+', c == '=':
			token = true
		case 'a' <= c && c <= 'z':
			lower = true
		case 'A' <= c && c <= 'Z':
			token = token || lower
		}
	}
	return token
}

// bearer masks the token after "Bearer " (in any case: the scheme is case-insensitive, RFC 9110).
func bearer(s string) string {
	const word = "bearer "
	if indexFoldASCII(s, word) < 0 {
		return s
	}
	var b strings.Builder
	rest := s
	for {
		i := indexFoldASCII(rest, word)
		if i < 0 {
			break
		}
		start := i + len(word)
		if i > 0 && isLetter(rest[i-1]) {
			// "cupbearer ": not the scheme.
			b.WriteString(rest[:start])
			rest = rest[start:]
			continue
		}
		for start < len(rest) && rest[start] == ' ' {
			start++ // "Bearer  tok"
		}
		end := start
		for end < len(rest) && !endOfToken(rest[end]) {
			end++
		}
		b.WriteString(rest[:start])
		// A token is at least minBearerToken long: "bearer token: expired" (intake's own words)
		// keeps its words, "Bearer <token>" its placeholder.
		if end-start >= minBearerToken && rest[start:end] != Mask && rest[start] != '<' {
			b.WriteString(Mask)
		} else {
			b.WriteString(rest[start:end])
		}
		rest = rest[end:]
	}
	b.WriteString(rest)
	return b.String()
}

// receiptHandles masks the SQS receipt handles in s, in the shapes SQS's errors repeat them (a
// handle lets whoever reads it delete the message, or hide it until it is received again):
//
//   - InvalidParameterValue's `Value AQEB… for parameter ReceiptHandle is invalid. Reason: …`: all
//     between "Value " and " for parameter ReceiptHandle" (any case);
//   - ReceiptHandleIsInvalid's `The input receipt handle "AQEB…" is not a valid receipt handle.`,
//     and generally the value after "receipt handle" or "ReceiptHandle" (any case, or with '_' or
//     '-' between the words), past an optional ':' or '=' (and a name's closing quote, as in JSON's
//     "ReceiptHandle":"AQEB…"): a quoted value without blanks, or an unquoted one that looks like
//     a handle (handleLike), so that the words of "the receipt handle has expired" stay.
func receiptHandles(s string) string {
	if indexFoldASCII(s, "receipt") < 0 {
		return s
	}
	m := masker{s: parameterHandles(s)}
	s = m.s
	for from := 0; ; {
		i := indexFoldASCII(s[from:], "receipt")
		if i < 0 {
			break
		}
		j := from + i + len("receipt")
		if j < len(s) && (s[j] == ' ' || s[j] == '_' || s[j] == '-') {
			j++
		}
		if indexFoldASCII(s[j:min(j+len("handle"), len(s))], "handle") != 0 {
			from = j
			continue
		}
		start, end := handleAfter(s, j+len("handle"))
		from = max(end, j+len("handle"))
		if start != end {
			m.mask(start, end)
		}
	}
	return m.String()
}

// parameterHandles masks the value of InvalidParameterValue's "Value … for parameter
// ReceiptHandle": from the last "Value " before it, or else the token before it.
func parameterHandles(s string) string {
	const tail = " for parameter receipthandle"
	m := masker{s: s}
	for from := 0; ; {
		i := indexFoldASCII(s[from:], tail)
		if i < 0 {
			break
		}
		end := from + i
		from = end + len(tail)
		start := end
		if v := lastIndexFoldASCII(s[m.last:end], "value "); v >= 0 {
			start = m.last + v + len("value ")
		} else {
			for start > m.last && !endOfToken(s[start-1]) {
				start--
			}
		}
		if start != end {
			m.mask(start, end)
		}
	}
	return m.String()
}

// masker writes s with spans replaced by Mask; the spans come in order and do not overlap.
type masker struct {
	s    string
	b    strings.Builder
	last int // s[:last] has been written to b
}

// mask replaces s[start:end].
func (m *masker) mask(start, end int) {
	m.b.WriteString(m.s[m.last:start])
	m.b.WriteString(Mask)
	m.last = end
}

// String returns s with the spans masked (s itself when there were none).
func (m *masker) String() string {
	if m.last == 0 {
		return m.s
	}
	m.b.WriteString(m.s[m.last:])
	return m.b.String()
}

// handleAfter returns where the receipt handle after s[:i] (the words "receipt handle") is, as
// receiptHandles reads it; start == end when there is none.
func handleAfter(s string, i int) (start, end int) {
	i = skipBlanks(s, i)
	if q := quoteAt(s, i); q > 0 { // a quoted name's closing quote, before ':' or '='
		if j := skipBlanks(s, i+q); j < len(s) && (s[j] == ':' || s[j] == '=') {
			i = j
		}
	}
	if i < len(s) && (s[i] == ':' || s[i] == '=') {
		i = skipBlanks(s, i+1)
	}
	if q := quoteAt(s, i); q > 0 {
		start = i + q
		n := strings.Index(s[start:], s[i:i+q])
		if n < 0 {
			n = tokenEnd(s, start) - start
		}
		if n == 0 || strings.ContainsAny(s[start:start+n], " \t\r\n") {
			return i, i // not a handle: words in quotes
		}
		return start, start + n
	}
	end = tokenEnd(s, i)
	for end > i && (s[end-1] == '.' || s[end-1] == ':') {
		end-- // the end of a sentence or a label, not of the handle
	}
	if !handleLike(s[i:end]) {
		return i, i
	}
	return i, end
}

// skipBlanks returns the index of the first byte of s from i that is not a space or a tab.
func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// quoteAt returns the length of the quote that opens or closes a value at s[i:]: 1 for a double,
// single or back quote, 2 for an escaped double quote (as in JSON, or %q text quoted once more), 0
// for none.
func quoteAt(s string, i int) int {
	switch {
	case i < len(s) && (s[i] == '"' || s[i] == '\'' || s[i] == '`'):
		return 1
	case i+1 < len(s) && s[i] == '\\' && s[i+1] == '"':
		return 2
	}
	return 0
}

// tokenEnd returns the end of the unquoted value that starts at s[i].
func tokenEnd(s string, i int) int {
	for i < len(s) && !endOfToken(s[i]) && s[i] != '\\' {
		i++
	}
	return i
}

// minReceiptHandle is the shortest unquoted value after "receipt handle" that is masked as one
// (SQS's are hundreds of bytes, an emulator's a UUID; an English word is shorter).
const minReceiptHandle = 16

// handleLike reports whether an unquoted value after "receipt handle" looks like one: at least
// minReceiptHandle bytes holding a digit, both cases of letters, or one of base64's "+/=" (a
// random token, not a word).
func handleLike(v string) bool {
	if len(v) < minReceiptHandle || v == Mask {
		return false
	}
	var lower, upper, digit bool
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case '0' <= c && c <= '9':
			digit = true
		case 'a' <= c && c <= 'z':
			lower = true
		case 'A' <= c && c <= 'Z':
			upper = true
		case c == '+' || c == '/' || c == '=':
			return true
		}
	}
	return digit || lower && upper
}

// minBearerToken is the shortest value after "Bearer " that is masked as a token.
const minBearerToken = 8

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// indexFoldASCII is strings.Index, ASCII letters compared without case; word is lower case.
func indexFoldASCII(s, word string) int {
	for i := 0; i+len(word) <= len(s); i++ {
		j := 0
		for ; j < len(word); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != word[j] {
				break
			}
		}
		if j == len(word) {
			return i
		}
	}
	return -1
}

// lastIndexFoldASCII is strings.LastIndex, ASCII letters compared without case; word is lower case.
func lastIndexFoldASCII(s, word string) int {
	for i := len(s) - len(word); i >= 0; i-- {
		if indexFoldASCII(s[i:i+len(word)], word) == 0 {
			return i
		}
	}
	return -1
}

// Error returns err with the secrets of its message masked. A *url.Error (what net/http's Client.Do
// returns, quoting the request's URL: a presigned URL carries its signature) is copied with its URL
// redacted, so errors.As still finds a *url.Error, and its Timeout and Temporary still answer. Any
// other error whose message holds a secret is wrapped: the message is redacted, errors.Is and
// errors.As still see the original. Errors without secrets are returned as they are.
func Error(err error) error {
	return (*Redactor)(nil).Error(err)
}

// redacted is an error whose message has been redacted.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// minSecretLen is the length below which a known secret is not searched for in text: masking every
// occurrence of a very short string would garble logs (and a secret that short is guessable anyway).
const minSecretLen = 6

// Redactor masks known secret values as well as what [String] recognizes. The zero value and nil
// mask only what String recognizes.
type Redactor struct {
	secrets []string
}

// New returns a Redactor that also masks every occurrence of the given secrets (empty ones and
// those shorter than 6 bytes are ignored; the longest are replaced first), as written and in the
// forms a log line may carry them: quoted by %q (a '"' or '\\' escaped) and URL-escaped.
func New(secrets ...string) *Redactor {
	var keep []string
	for _, s := range secrets {
		if len(s) < minSecretLen {
			continue
		}
		quoted := strconv.Quote(s)
		for _, form := range []string{s, quoted[1 : len(quoted)-1], url.QueryEscape(s), url.PathEscape(s)} {
			if !slices.Contains(keep, form) {
				keep = append(keep, form)
			}
		}
	}
	slices.SortFunc(keep, func(a, b string) int { return len(b) - len(a) })
	return &Redactor{secrets: keep}
}

// String masks the known secrets and what [String] recognizes in s. The known secrets go first:
// String's patterns end a value at characters a secret may hold (',', ';', ')'), and masking the
// head of a secret that way would leave its tail for nobody to find.
func (r *Redactor) String(s string) string {
	return String(r.known(s))
}

// known masks the known secrets in s.
func (r *Redactor) known(s string) string {
	if r != nil {
		for _, secret := range r.secrets {
			if strings.Contains(s, secret) {
				s = strings.ReplaceAll(s, secret, Mask)
			}
		}
	}
	return s
}

// Error is [Error] masking the known secrets too: err is returned as it is when its message holds
// no secret, or else wrapped (or, a *url.Error, copied) with its message redacted, errors.Is and
// errors.As still seeing the original. Use it for an error that may repeat a secret the caller
// knows (an SQS error quoting the receipt handle it refused) in a shape String does not recognize.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	if ue, ok := err.(*url.Error); ok {
		return &url.Error{Op: ue.Op, URL: URL(r.known(ue.URL)), Err: r.Error(ue.Err)}
	}
	msg := err.Error()
	if red := r.String(msg); red != msg {
		return &redacted{msg: red, err: err}
	}
	return err
}

// Secrets returns the secret values held in a URL or connection string: the userinfo password, the
// values of sensitive query parameters and of sensitive key=value keywords (unescaped and
// unquoted), so that a [Redactor] can mask them wherever they appear.
func Secrets(conn string) []string {
	var out []string
	if strings.Contains(conn, "://") || Scheme(conn) != "" {
		u, err := url.Parse(conn)
		if err != nil || u.Host == "" {
			// Not a URL url.Parse reads as one: its password may hold bytes that end a URL in
			// running text (a space, a quote, '<', '>': rawPassword stops there), or the URL lacks
			// a slash (redis:/:password@host). The whole value is the URL, up to its last '@'.
			for _, pw := range []string{rawPassword(conn), configuredPassword(conn)} {
				if pw != "" && !slices.Contains(out, pw) {
					out = append(out, pw)
				}
			}
			if err != nil {
				return out
			}
		}
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw)
		}
		for k, vs := range u.Query() {
			if Sensitive(k) {
				out = append(out, vs...)
			}
		}
		return out
	}
	for _, field := range dsnFields(conn) {
		if Sensitive(field[0]) {
			out = append(out, field[1])
		}
	}
	return out
}

// WebhookSecrets is Secrets for a webhook URL, which often carries its credential in its path
// (Slack's incoming webhooks: /services/T0…/B0…/XXXXXXXX) or its query under names Sensitive does
// not know (Azure Functions' ?code=, Google Chat's ?key=): the path segments and query values that
// look like tokens (tokenLike), and the values of webhookKeyNames, are secrets too. Only for webhook
// URLs: a database's or a bucket's path names things, which masking would hide from every log line
// (a word such as ?channel=uploads stays: masking it would mangle every key under uploads/).
func WebhookSecrets(u string) []string {
	out := Secrets(u)
	if p, err := url.Parse(u); err == nil {
		for seg := range strings.SplitSeq(p.Path, "/") {
			if tokenLike(seg) {
				out = append(out, seg)
			}
		}
		for name, values := range p.Query() {
			for _, v := range values {
				if (tokenLike(v) || slices.Contains(webhookKeyNames, strings.ToLower(name))) && !slices.Contains(out, v) {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// webhookKeyNames are query parameters that carry a webhook's credential under a name Sensitive
// does not flag in general (Azure Functions' code, Google Chat's key).
var webhookKeyNames = []string{"code", "key", "access_key", "accesskey", "api-key", "apikey", "k", "tk", "hmac"}

// tokenLike reports whether a URL path segment looks like a credential: at least 16 characters of
// letters, digits and "-_.~=" only, with a digit or both cases of letters (a random token; a
// lower-case word such as "uploads-completed" is a name).
func tokenLike(seg string) bool {
	if len(seg) < 16 {
		return false
	}
	var lower, upper, digit bool
	for _, c := range seg {
		switch {
		case '0' <= c && c <= '9':
			digit = true
		case 'a' <= c && c <= 'z':
			lower = true
		case 'A' <= c && c <= 'Z':
			upper = true
		case strings.ContainsRune("-_.~=", c):
		default:
			return false
		}
	}
	return (lower || upper) && (digit || lower && upper)
}

// rawPassword is the password of a URL url.Parse refuses (a '/', '?' or '#' in it): between the
// first ':' after the scheme and the last '@' of the URL.
func rawPassword(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < 0x80 && endOfURL(byte(r)) }); i >= 0 {
		rest = rest[:i]
	}
	return userinfoPassword(rest)
}

// userinfoPassword returns the password of the userinfo that ends at the last '@' of rest (a URL
// without its scheme), from its first ':'; "" when there is none.
func userinfoPassword(rest string) string {
	at := strings.LastIndexByte(rest, '@')
	if at <= 0 {
		return ""
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok {
		return ""
	}
	return pw
}

// Scheme returns the URL scheme s starts with ("redis" for redis://… or redis:/…), or "" when it
// starts with none (a key=value connection string): a letter, then letters, digits, '+', '-' or
// '.', up to a ':' (RFC 3986).
func Scheme(s string) string {
	scheme, _, ok := strings.Cut(s, ":")
	if !ok || scheme == "" || !('a' <= scheme[0] && scheme[0] <= 'z' || 'A' <= scheme[0] && scheme[0] <= 'Z') {
		return ""
	}
	if strings.IndexFunc(scheme, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '+' || r == '-' || r == '.')
	}) >= 0 {
		return ""
	}
	return scheme
}

// configuredPassword returns the password of a configured URL s (the whole value is the URL: it
// is not cut where running text would end it): after the scheme and its slashes, the userinfo up
// to the last '@', from its first ':'. "" when there is none.
func configuredPassword(s string) string {
	_, rest, ok := strings.Cut(s, ":")
	if !ok {
		return ""
	}
	return userinfoPassword(strings.TrimLeft(rest, "/"))
}

// dsnQuote writes a value as it stands inside single quotes in a connection string.
var dsnQuote = strings.NewReplacer(`\`, `\\`, `'`, `\'`)

// dsnFields splits a key=value connection string into its (key, value) pairs, unquoting
// single-quoted values.
func dsnFields(s string) [][2]string {
	var out [][2]string
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
	}
	for i < len(s) {
		skip()
		k := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' {
			i++
		}
		key := s[k:i]
		skip()
		if i >= len(s) || s[i] != '=' {
			return out
		}
		i++
		skip()
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
				i++
			}
			i++
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' {
				v.WriteByte(s[i])
				i++
			}
		}
		out = append(out, [2]string{key, v.String()})
	}
	return out
}
