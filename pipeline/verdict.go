package pipeline

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// Reasons the Processor stores besides the policy's Reason* constants.
const (
	// ReasonNotFound is the reason of a missing object: it did not exist when inspected.
	ReasonNotFound = "not_found"
	// ReasonQuarantined is the reason of an object found under a quarantine prefix: it is
	// recorded as rejected and never inspected or acted on again.
	ReasonQuarantined = "quarantined"
)

// verdict is the outcome of the checks on one object.
type verdict struct {
	// status is StatusValid or StatusRejected.
	status string
	// reason is a Reason* constant when rejected.
	reason string
	// detail explains a rejection, for logs.
	detail string
}

var valid = verdict{status: StatusValid}

func reject(v *Violation) verdict {
	return verdict{status: StatusRejected, reason: v.Reason, detail: v.Detail}
}

// judge runs every check that needs no more than the HEAD and the sniffed
// prefix, cheapest first; the first failure decides the reason:
//
//  1. size_mismatch: the intent's declared size (when it has one) differs
//     from the object's;
//  2. declared_type_mismatch: the intent's declared content type differs
//     from the one S3 stored (media types, parameters ignored);
//     content_encoding: S3 stored a Content-Encoding (other than identity) for
//     an upload intake signed. intake signs none, and S3 keeps what the
//     uploader adds to a presigned PUT besides the signed headers: the bytes
//     checked here would then not be the ones a browser sees (Content-Encoding:
//     gzip makes it decompress them first);
//  3. too_large, type_not_allowed: [Rule.CheckDeclared] on S3's content type
//     and the object's size;
//  4. sniff_mismatch: with RequireSniffMatch, [SniffAgrees] fails for the
//     declared type (the intent's, else S3's).
//
// The SHA-256 check (sha256_mismatch) comes last, and only when these pass,
// since it reads the whole object.
func judge(info ObjectInfo, intent *Intent, rule Rule, hasRule bool, sniffed *mimetype.MIME) verdict {
	declared := info.ContentType
	if intent != nil {
		if intent.SizeDeclared && intent.Size != info.Size {
			return reject(&Violation{ReasonSizeMismatch, fmt.Sprintf("declared %d bytes, object has %d", intent.Size, info.Size)})
		}
		if MediaType(intent.ContentType) != MediaType(info.ContentType) {
			return reject(&Violation{ReasonTypeMismatch, fmt.Sprintf("declared %q, stored as %q", intent.ContentType, info.ContentType)})
		}
		if enc := strings.TrimSpace(info.ContentEncoding); enc != "" && !strings.EqualFold(enc, "identity") {
			return reject(&Violation{ReasonEncoded, fmt.Sprintf("stored with Content-Encoding %q, which the upload URL did not sign", enc)})
		}
		declared = intent.ContentType
	}
	if !hasRule {
		return valid
	}
	if v := rule.CheckDeclared(info.ContentType, info.Size); v != nil {
		return reject(v)
	}
	if rule.RequireSniffMatch && !SniffAgrees(sniffed, declared) {
		return reject(&Violation{ReasonSniffMismatch, fmt.Sprintf("declared %q, content looks like %q", MediaType(declared), sniffed.String())})
	}
	return valid
}

// checkHash compares a computed digest with the intent's declared one.
func checkHash(intent *Intent, sum []byte) verdict {
	if intent == nil || intent.SHA256 == nil || bytes.Equal(intent.SHA256, sum) {
		return valid
	}
	return reject(&Violation{ReasonHashMismatch, fmt.Sprintf("declared sha256 %x, content has %x", intent.SHA256, sum)})
}

// noClaim lists the declared types that say nothing about the content.
var noClaim = []string{"", "application/octet-stream", "binary/octet-stream"}

// SniffAgrees reports whether the type sniffed from an object's first bytes
// agrees with the declared content type. The rule, in order:
//
//  1. A declared type that makes no claim ("", application/octet-stream,
//     binary/octet-stream) agrees with any content.
//  2. The sniffed type or one of its ancestors in mimetype's tree is the
//     declared type (or an alias of it): a DOCX declared as application/zip,
//     HTML declared as text/plain, PNG declared as image/png.
//  3. The sniffed type is a generic ancestor of the declared type, i.e. the
//     sniffer recognised the container but not the precise format: a DOCX
//     sniffed as application/zip, CSV or JSON sniffed as text/plain.
//  4. Any declared text/* agrees with sniffed text/plain.
//  5. A declared type the sniffer does not know (not in mimetype's tree)
//     agrees only with the generic results application/octet-stream and
//     text/plain: the sniffer cannot confirm it, but content it does
//     recognise (a PNG declared as application/x-custom) disagrees.
//
// Anything else disagrees; in particular content the sniffer does not
// recognise (application/octet-stream) disagrees with a declared type the
// sniffer knows, such as application/pdf.
func SniffAgrees(sniffed *mimetype.MIME, declared string) bool {
	declared = MediaType(declared)
	for _, nc := range noClaim {
		if declared == nc {
			return true
		}
	}
	if sniffed == nil {
		return false
	}
	// Types are compared by name (MediaType of the sniffed type's, which may carry a charset):
	// mimetype's MIME.Is parses both types on every call, several calls per inspected object. A
	// declared alias (image/x-png…) is first turned into its type's name, as Is would match it.
	known := mimetype.Lookup(declared)
	want := declared
	if known != nil {
		want = MediaType(known.String())
	}
	isRoot := func(m *mimetype.MIME) bool { return m.Parent() == nil }
	for m := sniffed; m != nil && !isRoot(m); m = m.Parent() {
		if MediaType(m.String()) == want {
			return true
		}
	}
	name := MediaType(sniffed.String())
	generic := isRoot(sniffed) || name == "text/plain"
	if name == "text/plain" && strings.HasPrefix(declared, "text/") {
		return true
	}
	if known == nil {
		return generic
	}
	if isRoot(sniffed) {
		return false
	}
	for m := known.Parent(); m != nil && !isRoot(m); m = m.Parent() {
		if name == MediaType(m.String()) {
			return true
		}
	}
	return false
}
