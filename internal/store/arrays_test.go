package store

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/intakehq/intake/internal/race"
)

// arrayMaps returns pgx's own type map and one with registerArrays (and registerUUID, as every
// connection of a Store has both).
func arrayMaps() (plain, direct *pgtype.Map) {
	plain, direct = pgtype.NewMap(), pgtype.NewMap()
	registerUUID(plain)
	registerUUID(direct)
	registerArrays(direct)
	return plain, direct
}

// encodesAlike encodes v as oid in the binary format with both maps and fails t when the bytes
// differ; direct reports whether registerArrays' plan encoded it (not pgx's ArrayCodec).
func encodesAlike(t *testing.T, plain, m *pgtype.Map, oid uint32, v any) (direct bool) {
	t.Helper()
	want, err := plain.Encode(oid, pgtype.BinaryFormatCode, v, nil)
	if err != nil {
		t.Fatalf("pgx encodes %#v as %d: %v", v, oid, err)
	}
	got, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
	if err != nil {
		t.Fatalf("registerArrays encodes %#v as %d: %v", v, oid, err)
	}
	if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
		t.Fatalf("%#v as %d:\n got %x\nwant %x", v, oid, got, want)
	}
	switch m.PlanEncode(oid, pgtype.BinaryFormatCode, v).(type) {
	case sliceArrayPlan[string], sliceArrayPlan[int64], sliceArrayPlan[uuid.UUID], sliceArrayPlan[[]byte], sliceArrayPlan[time.Time]:
		return true
	}
	return false
}

// TestArrayEncodingMatchesPgx: the direct plans send, for each array type intake's batches use,
// the bytes pgx's ArrayCodec sends (NULL slices, empty slices, NULL elements, every kind of value),
// and other Go types and formats still go to pgx's codec.
func TestArrayEncodingMatchesPgx(t *testing.T) {
	t.Parallel()
	plain, m := arrayMaps()
	loc := time.FixedZone("x", -7*3600)
	for _, c := range []struct {
		name   string
		oid    uint32
		v      any
		direct bool
	}{
		{"text[]", pgtype.TextArrayOID, []string{"a", "", "été 📷", "a\x00b" + string(rune(0x10ffff))}, true},
		{"text[] empty", pgtype.TextArrayOID, []string{}, true},
		{"text[] nil (NULL)", pgtype.TextArrayOID, []string(nil), true},
		{"int8[]", pgtype.Int8ArrayOID, []int64{0, -1, 1 << 62, -1 << 63, 5 << 30}, true},
		{"int8[] nil", pgtype.Int8ArrayOID, []int64(nil), true},
		{"uuid[]", pgtype.UUIDArrayOID, []uuid.UUID{uuid.New(), uuid.Nil, uuid.Max}, true},
		{"uuid[] nil", pgtype.UUIDArrayOID, []uuid.UUID(nil), true},
		{"bytea[] with NULL elements", pgtype.ByteaArrayOID, [][]byte{{1, 2, 3}, nil, {}, bytes.Repeat([]byte{0xff}, 300)}, true},
		{"bytea[] only NULLs", pgtype.ByteaArrayOID, [][]byte{nil, nil}, true},
		{"jsonb[] with NULL elements", pgtype.JSONBArrayOID, [][]byte{[]byte(`{"a":1}`), nil, []byte(`null`), []byte(`"é"`)}, true},
		{"jsonb[] nil", pgtype.JSONBArrayOID, [][]byte(nil), true},
		{"timestamptz[]", pgtype.TimestamptzArrayOID, []time.Time{
			time.Date(2026, 12, 3, 7, 0, 0, 123456789, time.UTC), time.Date(1999, 12, 31, 23, 59, 59, 999999999, loc),
			time.Date(1800, 1, 1, 0, 0, 0, 1, time.UTC), time.Unix(0, 0), {},
		}, true},
		{"timestamptz[] empty", pgtype.TimestamptzArrayOID, []time.Time{}, true},

		{"text[] from []*string (pgx's codec)", pgtype.TextArrayOID, []*string{new(string), nil}, false},
		{"varchar[] from []string (pgx's codec)", pgtype.VarcharArrayOID, []string{"a"}, false},
		{"int4[] (not registered)", pgtype.Int4ArrayOID, []int32{1, -2}, false},
		{"int8[] from []int32 (pgx's codec)", pgtype.Int8ArrayOID, []int32{1}, false},
		{"jsonb[] from []string (pgx's codec)", pgtype.JSONBArrayOID, []string{`{"a":1}`}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if direct := encodesAlike(t, plain, m, c.oid, c.v); direct != c.direct {
				t.Fatalf("encoded by the direct plan: %v, want %v", direct, c.direct)
			}
		})
	}
	// The text format stays pgx's.
	text, err := m.Encode(pgtype.TextArrayOID, pgtype.TextFormatCode, []string{"a b", `"`}, nil)
	if err != nil || string(text) != `{"a b","\""}` {
		t.Fatalf("text format: %q, %v", text, err)
	}
}

// TestArrayEncodingGrowsOnce: after a query's earlier parameters (7 bytes in a buffer of 8), each
// direct plan grows the buffer once for its whole array (pgx gives every query a 256-byte buffer,
// so an estimate that falls short costs a growth per doubling), and keeps the earlier bytes. Not
// parallel: it counts allocations (except under the race detector, whose instrumentation
// allocates; the estimate is checked against the bytes written in every mode).
func TestArrayEncodingGrowsOnce(t *testing.T) {
	_, m := arrayMaps()
	const rows = 24 // an intent batch under load
	var (
		texts  []string
		ints   []int64
		ids    []uuid.UUID
		blobs  [][]byte
		docs   [][]byte
		times  []time.Time
		suffix = "été 📷 " + strings.Repeat("x", 250)
	)
	for i := range rows {
		texts = append(texts, suffix[:i*9])
		ints = append(ints, int64(i)<<40)
		ids = append(ids, uuid.New())
		blobs = append(blobs, bytes.Repeat([]byte{byte(i)}, 32*(i%2)), nil)
		docs = append(docs, []byte(`{"n":`+strconv.Itoa(i)+`}`), nil)
		times = append(times, time.Now().Add(time.Duration(i)*time.Hour))
	}
	for _, c := range []struct {
		oid uint32
		v   any
	}{
		{pgtype.TextArrayOID, texts}, {pgtype.Int8ArrayOID, ints}, {pgtype.UUIDArrayOID, ids},
		{pgtype.ByteaArrayOID, blobs}, {pgtype.JSONBArrayOID, docs}, {pgtype.TimestamptzArrayOID, times},
		{pgtype.TextArrayOID, []string{}},
	} {
		plan := m.PlanEncode(c.oid, pgtype.BinaryFormatCode, c.v)
		earlier := []byte("earlier!")
		out, err := plan.Encode(c.v, earlier[:7:8])
		if err != nil {
			t.Fatal(err)
		}
		if string(out[:7]) != "earlier" {
			t.Errorf("%T: earlier parameters lost: %q", c.v, out[:7])
		}
		var estimate int
		switch p := plan.(type) {
		case sliceArrayPlan[string]:
			estimate = p.encodedSize(c.v.([]string))
		case sliceArrayPlan[int64]:
			estimate = p.encodedSize(c.v.([]int64))
		case sliceArrayPlan[uuid.UUID]:
			estimate = p.encodedSize(c.v.([]uuid.UUID))
		case sliceArrayPlan[[]byte]:
			estimate = p.encodedSize(c.v.([][]byte))
		case sliceArrayPlan[time.Time]:
			estimate = p.encodedSize(c.v.([]time.Time))
		default:
			t.Fatalf("%T: not a direct plan: %T", c.v, plan)
		}
		if got := len(out) - 7; got > estimate {
			t.Errorf("%T: %d bytes encoded, %d estimated: the estimate falls short", c.v, got, estimate)
		}
		if race.Enabled {
			continue
		}
		if allocs := testing.AllocsPerRun(20, func() {
			_, _ = plan.Encode(c.v, earlier[:7:8])
		}); allocs > 1 {
			t.Errorf("%T: %v allocations for one array, want one", c.v, allocs)
		}
	}
}

func FuzzArrayEncoding(f *testing.F) {
	f.Add("a", []byte{1}, int64(0), int32(0), true)
	f.Add("", []byte(nil), int64(-1), int32(999999999), false)
	plain, m := arrayMaps()
	f.Fuzz(func(t *testing.T, s string, b []byte, sec int64, nsec int32, null bool) {
		encodesAlike(t, plain, m, pgtype.TextArrayOID, []string{s, s + s})
		elems := [][]byte{b}
		if null {
			elems = append(elems, nil)
		}
		encodesAlike(t, plain, m, pgtype.ByteaArrayOID, elems)
		encodesAlike(t, plain, m, pgtype.JSONBArrayOID, elems)
		var id uuid.UUID
		copy(id[:], b)
		encodesAlike(t, plain, m, pgtype.UUIDArrayOID, []uuid.UUID{id})
		encodesAlike(t, plain, m, pgtype.Int8ArrayOID, []int64{sec, int64(nsec)})
		encodesAlike(t, plain, m, pgtype.TimestamptzArrayOID, []time.Time{time.Unix(sec%(1<<40), int64(nsec)%1e9)})
	})
}
