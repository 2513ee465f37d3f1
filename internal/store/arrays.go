package store

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// registerArrays teaches a connection's type map to encode the plain Go slices of intake's batched
// statements ([]string, []int64, []uuid.UUID, [][]byte, []time.Time) as the binary PostgreSQL
// arrays text[], int8[], uuid[], bytea[], jsonb[] and timestamptz[] directly.
//
// pgx's ArrayCodec reads every element through an interface (pgtype.ArrayGetter's Index) and plans
// its encoding by reflection: an allocation per string, integer above 255, UUID or time, and a
// reflective walk per []byte. For the API's batched intent rows that was 14 allocations per row, a
// fifth of the route's (BenchmarkRoute's allocation profile). The codecs registered here handle those five
// slice types in the binary format and leave everything else (other Go types, the text format,
// decoding) to pgx's own ArrayCodec, which they embed; the bytes sent are pgx's
// (TestArrayEncodingMatchesPgx, FuzzArrayEncoding). One pgx path tells array types by their
// *pgtype.ArrayCodec: CopyFrom, re-encoding a string given for an array column, scans it into a
// pgtype.Array[any] to keep its dimensions, and with these codecs into a plain any instead. intake
// does not use CopyFrom.
func registerArrays(m *pgtype.Map) {
	for _, oid := range []uint32{pgtype.TextArrayOID, pgtype.Int8ArrayOID, pgtype.UUIDArrayOID, pgtype.ByteaArrayOID, pgtype.JSONBArrayOID, pgtype.TimestamptzArrayOID} {
		t, ok := m.TypeForOID(oid)
		if !ok {
			continue
		}
		ac, ok := t.Codec.(*pgtype.ArrayCodec)
		if !ok {
			continue
		}
		m.RegisterType(&pgtype.Type{Name: t.Name, OID: oid, Codec: &sliceArrayCodec{ArrayCodec: ac}})
	}
}

// sliceArrayCodec is pgx's ArrayCodec with direct binary encode plans for plain slices.
type sliceArrayCodec struct{ *pgtype.ArrayCodec }

// PlanEncode implements pgtype.Codec.
func (c *sliceArrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode {
		elem := c.ElementType.OID
		switch value.(type) {
		case []string:
			if elem == pgtype.TextOID {
				return sliceArrayPlan[string]{elem: elem, encode: appendString, size: lenOf[string]}
			}
		case []int64:
			if elem == pgtype.Int8OID {
				return sliceArrayPlan[int64]{elem: elem, encode: appendInt8, size: fixed[int64](8)}
			}
		case []uuid.UUID:
			if elem == pgtype.UUIDOID {
				return sliceArrayPlan[uuid.UUID]{elem: elem, encode: appendUUID, size: fixed[uuid.UUID](16)}
			}
		case [][]byte:
			switch elem {
			case pgtype.ByteaOID:
				return sliceArrayPlan[[]byte]{elem: elem, encode: appendBytea, size: lenOf[[]byte]}
			case pgtype.JSONBOID:
				return sliceArrayPlan[[]byte]{elem: elem, encode: appendJSONB, size: jsonbSize}
			}
		case []time.Time:
			if elem == pgtype.TimestamptzOID {
				return sliceArrayPlan[time.Time]{elem: elem, encode: appendTimestamptz, size: fixed[time.Time](8)}
			}
		}
	}
	return c.ArrayCodec.PlanEncode(m, oid, format, value)
}

// sliceArrayPlan writes a []T as a one-dimensional binary array of elem, as pgx writes it: a nil
// slice is NULL; an element for which encode reports null is NULL.
type sliceArrayPlan[T any] struct {
	elem uint32
	// encode appends v's binary form to buf, or reports that v is NULL (buf unchanged).
	encode func(buf []byte, v T) (out []byte, null bool)
	// size is how many bytes encode appends for v (at most): Encode grows the buffer once for
	// the whole array. pgx hands every query a 256-byte buffer, so an intent batch's arrays
	// (kilobytes) were grown step by step: 2% of the route's CPU was growslice in the committer.
	size func(v T) int
}

// Encode implements pgtype.EncodePlan.
func (p sliceArrayPlan[T]) Encode(value any, buf []byte) ([]byte, error) {
	s := value.([]T)
	if s == nil {
		return nil, nil
	}
	buf = slices.Grow(buf, p.encodedSize(s))
	buf = binary.BigEndian.AppendUint32(buf, 1) // dimensions
	hasNull := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, 0) // set below when an element is NULL
	buf = binary.BigEndian.AppendUint32(buf, p.elem)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	buf = binary.BigEndian.AppendUint32(buf, 1) // lower bound
	for _, v := range s {
		at := len(buf)
		buf = binary.BigEndian.AppendUint32(buf, 0xffffffff) // -1: NULL, overwritten with the length
		var null bool
		buf, null = p.encode(buf, v)
		if null {
			binary.BigEndian.PutUint32(buf[hasNull:], 1)
			continue
		}
		binary.BigEndian.PutUint32(buf[at:], uint32(len(buf)-at-4))
	}
	return buf, nil
}

// encodedSize is how many bytes Encode appends for s, at most.
func (p sliceArrayPlan[T]) encodedSize(s []T) int {
	n := 20 + 4*len(s) // the header, and each element's length
	for _, v := range s {
		n += p.size(v)
	}
	return n
}

// lenOf is the size of a string or bytea element: its bytes.
func lenOf[T string | []byte](v T) int { return len(v) }

// fixed is the size of a fixed-length element.
func fixed[T any](n int) func(T) int { return func(T) int { return n } }

// jsonbSize is the size of a jsonb element: the version byte and the text.
func jsonbSize(v []byte) int { return 1 + len(v) }

func appendString(buf []byte, v string) ([]byte, bool) { return append(buf, v...), false }

func appendInt8(buf []byte, v int64) ([]byte, bool) {
	return binary.BigEndian.AppendUint64(buf, uint64(v)), false
}

func appendUUID(buf []byte, v uuid.UUID) ([]byte, bool) { return append(buf, v[:]...), false }

// appendBytea: a nil []byte is NULL, as pgx's bytea codec has it.
func appendBytea(buf []byte, v []byte) ([]byte, bool) {
	if v == nil {
		return buf, true
	}
	return append(buf, v...), false
}

// appendJSONB: jsonb's binary form is a version byte (1) and the JSON text; a nil []byte is NULL.
func appendJSONB(buf []byte, v []byte) ([]byte, bool) {
	if v == nil {
		return buf, true
	}
	return append(append(buf, 1), v...), false
}

// microsecFromUnixEpochToY2K is PostgreSQL's epoch (2000-01-01 UTC) in Unix microseconds.
const microsecFromUnixEpochToY2K = 946_684_800 * 1_000_000

// appendTimestamptz writes microseconds since 2000-01-01 UTC, truncated as pgx truncates them.
func appendTimestamptz(buf []byte, v time.Time) ([]byte, bool) {
	us := v.Unix()*1_000_000 + int64(v.Nanosecond())/1000 - microsecFromUnixEpochToY2K
	return binary.BigEndian.AppendUint64(buf, uint64(us)), false
}
