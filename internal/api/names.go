package api

import (
	"encoding/hex"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/intakehq/intake/internal/config"
)

// maxFilenameBytes is the longest file name accepted (most file systems' limit).
const maxFilenameBytes = 255

// sanitizeFilename checks a client's file name and returns the form used in object keys. Names that
// try to escape their folder (separators, "." and ".."), control, format or invalid UTF-8 characters,
// Unicode noncharacters (U+FFFE, U+FFFF, …: config.Noncharacter), and names over 255 bytes are
// refused; characters S3 documents as troublesome in keys are replaced by "_".
func sanitizeFilename(name string) (string, *Problem) {
	switch {
	case name == "":
		return "", problemf(probInvalidFilename, "filename is required")
	case len(name) > maxFilenameBytes:
		return "", problemf(probInvalidFilename, "filename is %d bytes long; the limit is %d", len(name), maxFilenameBytes)
	case !utf8.ValidString(name):
		return "", problemf(probInvalidFilename, "filename is not valid UTF-8")
	case strings.ContainsAny(name, `/\`):
		return "", problemf(probInvalidFilename, "filename must not contain path separators")
	}
	trimmed := strings.TrimSpace(name) // the name the key is made of
	if trimmed == "." || trimmed == ".." {
		return "", problemf(probInvalidFilename, "filename %q is a path traversal", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError || unicode.Is(unicode.Cf, r) {
			return "", problemf(probInvalidFilename, "filename contains the control or format character %U", r)
		}
		if config.Noncharacter(r) {
			// U+FFFE and U+FFFF cannot be carried by XML 1.0: S3's answers naming the key
			// (CreateMultipartUpload, ListParts, ListMultipartUploads) would fail to decode, or
			// name another key (MinIO sends U+FFFD).
			return "", problemf(probInvalidFilename, "filename contains the Unicode noncharacter %U", r)
		}
	}
	if trimmed == "" {
		return "", problemf(probInvalidFilename, "filename is blank")
	}
	var b strings.Builder
	b.Grow(len(trimmed))
	for _, r := range trimmed {
		switch r {
		case '{', '}', '^', '%', '`', '[', ']', '"', '<', '>', '~', '#', '|', '?', '*', ':':
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}

// normalizeContentType parses a Content-Type value and returns it in canonical form (lower-case
// type/subtype, parameters re-encoded), so that what is signed is exactly what S3 will compare.
func normalizeContentType(ct string) (string, *Problem) {
	if ct == "" {
		return "", problemf(probInvalidType, "content_type is required")
	}
	if len(ct) > 255 {
		return "", problemf(probInvalidType, "content_type is longer than 255 bytes")
	}
	for i := 0; i < len(ct); i++ {
		if ct[i] < 0x20 || ct[i] >= 0x7f {
			return "", problemf(probInvalidType, "content_type contains a control or non-ASCII byte")
		}
	}
	if plainMediaType(ct) {
		return ct, nil // what ParseMediaType and FormatMediaType would give back
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") || strings.HasSuffix(mt, "/") || strings.HasPrefix(mt, "/") || strings.Contains(mt, "*") {
		return "", problemf(probInvalidType, "content_type %q is not a type/subtype media type", ct)
	}
	out := mime.FormatMediaType(mt, params)
	if out == "" {
		return "", problemf(probInvalidType, "content_type %q cannot be encoded", ct)
	}
	if len(out) > 255 {
		// The canonical form is what is signed and stored: it may be longer than the input
		// ("a;b=1" becomes "a; b=1").
		return "", problemf(probInvalidType, "content_type is longer than 255 bytes in canonical form")
	}
	return out, nil
}

// plainMediaType reports whether ct is a lower-case "type/subtype" without parameters, spaces or
// wildcards, which normalizeContentType keeps as it is: most uploads' content types, which then skip
// the parse (a map) and the formatting (a sort) of package mime.
func plainMediaType(ct string) bool {
	slash := -1
	for i := 0; i < len(ct); i++ {
		switch c := ct[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '/':
			if slash >= 0 {
				return false
			}
			slash = i
		case strings.IndexByte("!#$%&'+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return slash > 0 && slash < len(ct)-1
}

// parseSHA256 decodes a hex SHA-256 (64 hex digits, either case).
func parseSHA256(s string) ([]byte, *Problem) {
	if len(s) != 64 {
		return nil, problemf(probInvalidSHA256, "sha256 must be 64 hex digits, got %d characters", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, problemf(probInvalidSHA256, "sha256 is not hex: %v", err)
	}
	return b, nil
}

// objectKey builds the server-side key {prefix}/{owner}/{id}/{name}.
func objectKey(prefix, owner string, id uuid.UUID, name string) string {
	var b strings.Builder
	prefix = strings.TrimRight(prefix, "/")
	b.Grow(len(prefix) + len(owner) + len(name) + 39)
	b.WriteString(prefix)
	b.WriteByte('/')
	b.WriteString(owner)
	b.WriteByte('/')
	var ub [36]byte
	hexUUID(ub[:], id)
	b.Write(ub[:])
	b.WriteByte('/')
	b.WriteString(name)
	return b.String()
}

// ownerPrefix is the key prefix under which every key of owner lies.
func ownerPrefix(prefix, owner string) string {
	return strings.TrimRight(prefix, "/") + "/" + owner + "/"
}

func hexUUID(dst []byte, u uuid.UUID) {
	hex.Encode(dst, u[:4])
	dst[8] = '-'
	hex.Encode(dst[9:13], u[4:6])
	dst[13] = '-'
	hex.Encode(dst[14:18], u[6:8])
	dst[18] = '-'
	hex.Encode(dst[19:23], u[8:10])
	dst[23] = '-'
	hex.Encode(dst[24:], u[10:])
}

// pgText reports whether s can be a PostgreSQL text value (valid UTF-8 without NUL): a query
// parameter that reaches a query is checked with it, so that PostgreSQL's refusal is a 400, not a 500.
func pgText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
