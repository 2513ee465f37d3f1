package pipeline_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/gabriel-vasile/mimetype"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/pipeline"
)

// jsonDoc is a JSON object of at least size bytes.
func jsonDoc(size int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"items":[`)
	for i := 0; sb.Len() < size; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"id":%d,"name":"item-%04d"}`, i, i)
	}
	sb.WriteString("]}")
	return []byte(sb.String())
}

// TestSniffLenIsMimetypeLimit ties SniffLen to mimetype's read limit. mimetype takes an input
// shorter than its limit for the whole file, so a JSON document cut shorter than the limit does
// not parse and is sniffed as text/plain, and one cut at the limit is known to be truncated.
// Cut at SniffLen it must be JSON (SniffLen is not below the limit), cut one byte shorter it must
// not (SniffLen is not above it: mimetype would ignore the bytes past its limit).
func TestSniffLenIsMimetypeLimit(t *testing.T) {
	t.Parallel()
	doc := jsonDoc(4 * pipeline.SniffLen)
	require.Equal(t, "application/json", mimetype.Detect(doc[:pipeline.SniffLen]).String())
	require.NotEqual(t, "application/json", mimetype.Detect(doc[:pipeline.SniffLen-1]).String())
}

// TestProcessSniffsLongJSON: JSON objects longer than the sniffed prefix are sniffed as JSON, also
// those between 3 KiB (the prefix intake used to read) and mimetype's 4 KiB read limit.
func TestProcessSniffsLongJSON(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{policy: sniffPolicy(pipeline.ActionTag)})
	for _, size := range []int{3500, 5000, 64 << 10} {
		key := fmt.Sprintf("doc-%d.json", size)
		doc := jsonDoc(size)
		require.Greater(t, len(doc), 3072)
		b.put(t, key, "application/json", doc)
		require.NoError(t, b.process(t, b.created(key, "0A", t0)))
		row := b.row(t, key)
		require.Equal(t, pipeline.StatusValid, row.Status, key)
		require.Equal(t, "application/json", *row.SniffedType, "%s (%d bytes)", key, len(doc))
	}
}

// Inspection paths of the race tests: the production one (Peek: metadata and prefix with one ranged
// GET, then the hash of that content), and that of a store without Peek (HEAD, then a ranged GET and
// the hash of HEAD's content).
const (
	pathPeek     = "peek"
	pathHeadRead = "head+read"
)

// withPath returns the hooked store for the inspection path: as it is for pathHeadRead (the hooks
// embed the ObjectStore interface, which hides the real store's Peek), with the real store's Peek
// forwarded for pathPeek, as the daemon's Processor sees it.
func withPath(path string, hooked pipeline.ObjectStore, real *objstore.Objects) pipeline.ObjectStore {
	if path == pathPeek {
		return peeking{ObjectStore: hooked, peeker: real}
	}
	return hooked
}

// peeking is a hooked store with the real store's Peek.
type peeking struct {
	pipeline.ObjectStore
	peeker pipeline.Peeker
}

func (p peeking) Peek(ctx context.Context, bucket, key string, n int) (pipeline.ObjectInfo, []byte, error) {
	return p.peeker.Peek(ctx, bucket, key, n)
}

// deletingBeforeHash is the real object store with one hook: the first Hash deletes the object in
// MinIO just before reading it, as a client deleting its upload during the inspection would.
type deletingBeforeHash struct {
	pipeline.ObjectStore
	once sync.Once
	del  func()
}

func (d *deletingBeforeHash) Hash(ctx context.Context, obj pipeline.ObjectRef) ([]byte, int64, error) {
	d.once.Do(d.del)
	return d.ObjectStore.Hash(ctx, obj)
}

// TestProcessObjectDeletedBeforeHash: an object deleted between the look at its prefix and its hash
// is recorded missing by the same attempt (the inspection starts over from HEAD), not retried;
// through Peek (the daemon's path) and through HEAD and a ranged GET.
func TestProcessObjectDeletedBeforeHash(t *testing.T) {
	t.Parallel()
	for _, path := range []string{pathPeek, pathHeadRead} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{})
			const key = "k.txt"
			content := []byte("hash me, if you can\n")
			sum := sha256.Sum256(content)
			id := b.intent(t, intentSpec{key: key, contentType: "text/plain", size: int64(len(content)), sha256: sum[:]})
			b.put(t, key, "text/plain", content)
			real := objstore.NewObjects(b.s3)
			d := &deletingBeforeHash{ObjectStore: real, del: func() { require.NoError(t, b.s3Delete(t, key)) }}
			p := b.newProcessor(t, procOpts{objects: withPath(path, d, real)})

			require.NoError(t, p.Process(b.ctx, "m", b.created(key, "0A", t0)), "recorded and acked, not retried")
			row := b.row(t, key)
			require.Equal(t, pipeline.StatusMissing, row.Status)
			require.Equal(t, pipeline.ReasonNotFound, *row.Reason)
			require.Nil(t, row.Etag)
			require.Equal(t, "pending", b.uploadStatus(t, id))
		})
	}
}
