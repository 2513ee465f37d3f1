package store

import (
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"
)

// TestRegisterUUIDEncodes checks that a uuid.UUID, alone, in an array and through a pointer, is
// encoded to the same bytes as pgx's own UUID type, without the driver.Valuer detour (text, a
// failed binary encoding, a parse) and its allocations.
func TestRegisterUUIDEncodes(t *testing.T) {
	t.Parallel()
	m := pgtype.NewMap()
	registerUUID(m)
	plain := pgtype.NewMap()
	ids := []uuid.UUID{uuid.New(), uuid.Nil, uuid.New()}
	pg := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		pg[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	for _, format := range []int16{pgtype.BinaryFormatCode, pgtype.TextFormatCode} {
		got, err := m.Encode(pgtype.UUIDOID, format, ids[0], nil)
		require.NoError(t, err)
		want, err := plain.Encode(pgtype.UUIDOID, format, pg[0], nil)
		require.NoError(t, err)
		require.Equal(t, want, got)

		got, err = m.Encode(pgtype.UUIDArrayOID, format, ids, nil)
		require.NoError(t, err)
		want, err = plain.Encode(pgtype.UUIDArrayOID, format, pg, nil)
		require.NoError(t, err)
		require.Equal(t, want, got)

		got, err = m.Encode(pgtype.UUIDOID, format, &ids[2], nil)
		require.NoError(t, err)
		want, err = plain.Encode(pgtype.UUIDOID, format, pg[2], nil)
		require.NoError(t, err)
		require.Equal(t, want, got)

		got, err = m.Encode(pgtype.UUIDOID, format, (*uuid.UUID)(nil), nil)
		require.NoError(t, err)
		require.Nil(t, got)
	}
}

// TestRegisterUUIDAllocs: without registerUUID pgx goes through uuid.UUID's driver.Valuer (a
// string, an error built with fmt.Errorf, a parse): a dozen allocations per UUID. (Not parallel:
// AllocsPerRun.)
func TestRegisterUUIDAllocs(t *testing.T) {
	m := pgtype.NewMap()
	registerUUID(m)
	ids := []uuid.UUID{uuid.New()}
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, ids[0], buf[:0])
	})
	require.LessOrEqual(t, allocs, 2.0)
}
