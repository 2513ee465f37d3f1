package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// randomJSONNumber is a JSON number of any of the shapes the grammar allows: a sign, an integer
// part (0 or digits not starting with 0), a fraction that may end in zeros, an exponent in e or E
// with or without its sign and leading zeros.
func randomJSONNumber(r *rand.Rand) string {
	var b strings.Builder
	if r.IntN(3) == 0 {
		b.WriteByte('-')
	}
	digits := func(n int, lead bool) {
		for i := range n {
			d := r.IntN(10)
			if r.IntN(3) == 0 {
				d = 0 // zeros are what the rendering moves around
			}
			if i == 0 && lead && d == 0 {
				d = 1 + r.IntN(9)
			}
			b.WriteByte(byte('0' + d))
		}
	}
	if r.IntN(3) == 0 {
		b.WriteByte('0')
	} else {
		digits(1+r.IntN(6), true)
	}
	if r.IntN(2) == 0 {
		b.WriteByte('.')
		digits(1+r.IntN(6), false)
	}
	if r.IntN(3) > 0 {
		b.WriteString([]string{"e", "E"}[r.IntN(2)])
		b.WriteString([]string{"", "+", "-"}[r.IntN(3)])
		if r.IntN(5) == 0 {
			b.WriteByte('0')
		}
		fmt.Fprint(&b, r.IntN(400))
	}
	return b.String()
}

// TestMetadataLimitHoldsOnWhatPostgreSQLRenders: MaxMetadata bounds the metadata as PostgreSQL's
// jsonb renders it, not only as sent: jsonb prints numbers in plain decimal (1e308 as 309 digits),
// so 2 KiB of compact JSON once rendered as 105 KB in every GET, webhook and verdict task. The
// form parseMetadata counts (and the Idempotency-Key's hash compares) for a number is the one PostgreSQL renders (for every shape of
// number), and metadata it accepts renders, compacted, within MaxMetadata.
func TestMetadataLimitHoldsOnWhatPostgreSQLRenders(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := context.Background()

	r := rand.New(rand.NewPCG(1, 2))
	nums := []string{"0", "-0", "-0.00", "0.000e5", "0e-300", "1e308", "-1e-300", "5e-324", "1.50e2", "100e-2", "1E+2", "0.05e3",
		"12345678901234567890123", "1.0e-1000", "0e1000", "1e1000", "-7.25E-0003", "0.10", "10.5", "0.5"}
	for range 3000 {
		nums = append(nums, randomJSONNumber(r))
	}
	rows, err := st.Pool.Query(ctx, `SELECT n, ('[' || n || ']')::jsonb->>0 FROM unnest($1::text[]) AS n`, nums)
	require.NoError(t, err)
	var checked int
	for rows.Next() {
		var n string
		var rendered string
		require.NoError(t, rows.Scan(&n, &rendered))
		got, ok := renderNumber(n)
		require.True(t, ok, n)
		require.Equal(t, rendered, got, "%s as jsonb renders it", n)
		checked++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, len(nums), checked)

	// Whole metadata: what parseMetadata accepts, PostgreSQL renders (compacted) within the limit,
	// in the number of bytes parseMetadata counted; what it refuses for its rendered size would
	// render beyond it.
	amplified := `{"a":[1e308` + strings.Repeat(`,1e308`, (MaxMetadata-len(`{"a":[1e308]}`))/len(`,1e308`)) + `]}`
	for _, c := range []struct {
		in string
		ok bool
	}{
		{amplified, false},
		{`{"k":"plain","n":[1,-2.5e3,1e308,-1e-300,0e1000,0.000e-999,null,true]}`, true},
		{`{"n":[1e300,1e300,1e300,1e300,1e300,1e300]}`, true},
		{`{"n":[1e300,1e300,1e300,1e300,1e300,1e300,1e300]}`, false},
		{`{"tiny":[1e-299,-2.5e-299,0e-299,0.000e-299,1.0e-299,-0.0e-299]}`, true},
		{`{"tiny":[1e-299,-2.5e-299,0e-299,0.000e-299,1.0e-299,-0.0e-299,1e-299]}`, false},
		{`{"big":` + strings.Repeat("9", 300) + `,"small":0.` + strings.Repeat("0", 300) + `1}`, true},
	} {
		var text string
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT $1::jsonb::text`, c.in).Scan(&text))
		var compact bytes.Buffer
		require.NoError(t, json.Compact(&compact, []byte(text)))
		out, p := parseMetadata([]byte(c.in))
		label := c.in[:min(len(c.in), 60)]
		t.Logf("%s...: %d bytes sent, %d rendered by PostgreSQL (compacted)", label, len(c.in), compact.Len())
		if !c.ok {
			require.NotNil(t, p, label)
			require.Greater(t, compact.Len(), MaxMetadata, "%s: refused, though PostgreSQL renders it within the limit", label)
			require.Contains(t, p.Detail, fmt.Sprintf("metadata is %d bytes as stored", compact.Len()), label)
			continue
		}
		require.Nil(t, p, label)
		require.LessOrEqual(t, compact.Len(), MaxMetadata, label)
		require.JSONEq(t, text, string(out), label)
	}
}
