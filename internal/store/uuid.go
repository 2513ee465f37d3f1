package store

import (
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// registerUUID teaches a connection's type map to encode a github.com/google/uuid.UUID (the type
// every generated query takes for uuid columns) as the 16 bytes it is.
//
// Without it pgx knows uuid.UUID only as a driver.Valuer: for every value it formats the UUID as
// text, fails to encode that string in binary (building an error with fmt.Errorf), parses the text
// back and only then encodes it: a few microseconds and several allocations per UUID, paid for
// every id of every batched intent row when this was written (profile of the API's POST
// /v1/uploads). The wrapper is tried before that fallback and gives the UUID codec a
// pgtype.UUIDValuer, which it encodes directly; the bytes sent are the same. A []uuid.UUID sent
// in binary (the batched rows' ids) now goes through registerArrays' direct plan instead; this
// wrapper serves single UUID parameters and every other path to the UUID codec.
func registerUUID(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapUUIDEncodePlan}, m.TryWrapEncodePlanFuncs...)
}

// pgUUID is a uuid.UUID that pgx's UUID codec can encode.
type pgUUID uuid.UUID

// UUIDValue implements pgtype.UUIDValuer.
func (u pgUUID) UUIDValue() (pgtype.UUID, error) { return pgtype.UUID{Bytes: u, Valid: true}, nil }

func tryWrapUUIDEncodePlan(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	if u, ok := value.(uuid.UUID); ok {
		return &wrapUUIDEncodePlan{}, pgUUID(u), true
	}
	return nil, nil, false
}

type wrapUUIDEncodePlan struct{ next pgtype.EncodePlan }

func (p *wrapUUIDEncodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *wrapUUIDEncodePlan) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(pgUUID(value.(uuid.UUID)), buf)
}
