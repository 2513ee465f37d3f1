package api

import (
	"net/url"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// uriChars are the characters RFC 3986 allows in a URI (unreserved, reserved, and '%' of an escape).
var uriChars = regexp.MustCompile(`^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$`)

// TestInstanceURNIsAURI: a client's X-Request-Id may hold any printable ASCII, and it became the
// problem's instance as it was: "urn:request:a{b}" is not a URI, and a client that parses instance
// as one (RFC 9457 makes it a URI reference) failed to read the whole problem. The id is kept
// whole (percent-decoding gives it back); one of URI characters only is unchanged.
func TestInstanceURNIsAURI(t *testing.T) {
	ids := NewRequestIDs()
	for _, id := range []string{"a{b}", `"x"`, "a|b", "100%", "<id>", `a\b`, "a^b`", "a b"} {
		id = ids.For(id)
		u := InstanceURN(id)
		require.Regexp(t, uriChars, u, "%q", id)
		parsed, err := url.Parse(u)
		require.NoError(t, err)
		back, err := url.PathUnescape(parsed.Opaque)
		require.NoError(t, err)
		require.Equal(t, "request:"+id, back)
	}
	for _, id := range []string{"client-id-42", "req_1.2~3", "01J9Z3ABCDEF"} {
		require.Equal(t, "urn:request:"+id, InstanceURN(ids.For(id)))
	}
}
