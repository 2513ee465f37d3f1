package jsonscan_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/jsonscan"
)

// TestArrayLen holds the element count to encoding/json's.
func TestArrayLen(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`[]`, ` [ ] `, `[{}]`, `[1]`, `[1,2,3]`, `["a,b","]"]`, `["\"",2]`, `[[1,2],[3]]`,
		`[{"a":[1,2,{"b":","}]}, null , true]`, `{}`, `null`, `"[1,2]"`, "[\n1,\t2\r]"} {
		var v any
		require.NoError(t, json.Unmarshal([]byte(body), &v), body)
		want := 0
		if a, ok := v.([]any); ok {
			want = len(a)
		}
		require.Equal(t, want, jsonscan.ArrayLen([]byte(body), 100), body)
		if want > 1 {
			require.Equal(t, 1, jsonscan.ArrayLen([]byte(body), 1), "stops at the limit: %s", body)
		}
	}
}
