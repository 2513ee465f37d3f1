package pipeline_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// procBundle is one test's real MinIO bucket, PostgreSQL schema and Processor.
type procBundle struct {
	ctx    context.Context
	s3     *s3.Client
	bucket string
	st     *store.Store
	reg    *prometheus.Registry
	proc   *pipeline.Processor
}

// procOpts changes the Processor a bundle builds.
type procOpts struct {
	policy    *pipeline.Policy
	hashMax   int64
	archive   bool
	multipart pipeline.MultipartCanceller
	objects   pipeline.ObjectStore // nil: the real MinIO
	records   pipeline.RecordStore // nil: the bundle's schema
	buckets   []string             // served besides the bundle's bucket
	now       func() time.Time
	hashes    int // HashConcurrency
	handOff   pipeline.HashHandOff
}

func setupProc(t *testing.T, opts procOpts) *procBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs MinIO and PostgreSQL")
	}
	client := testkit.S3()
	b := &procBundle{ctx: testkit.Context(t), s3: client, bucket: testkit.Bucket(t, client), st: testkit.DB(t), reg: prometheus.NewRegistry()}
	b.proc = b.newProcessor(t, opts)
	return b
}

func (b *procBundle) newProcessor(t *testing.T, opts procOpts) *pipeline.Processor {
	t.Helper()
	cfg := pipeline.ProcessorConfig{
		Objects: opts.objects, Records: opts.records, Policy: opts.policy, Registerer: b.reg,
		Buckets:     append([]string{b.bucket}, opts.buckets...),
		HashMaxSize: opts.hashMax, Archive: opts.archive, Multipart: opts.multipart, Now: opts.now,
		HashConcurrency: opts.hashes, HashHandOff: opts.handOff,
	}
	if cfg.Objects == nil {
		cfg.Objects = objstore.NewObjects(b.s3)
	}
	if cfg.Records == nil {
		cfg.Records = store.NewRecords(b.st)
	}
	p, err := pipeline.NewProcessor(cfg)
	require.NoError(t, err)
	return p
}

// put stores an object and returns its ETag.
func (b *procBundle) put(t *testing.T, key, contentType string, body []byte) string {
	t.Helper()
	out, err := b.s3.PutObject(b.ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), Body: bytes.NewReader(body), ContentType: aws.String(contentType),
	})
	require.NoError(t, err)
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

func (b *procBundle) exists(t *testing.T, key string) bool {
	t.Helper()
	_, err := b.s3.HeadObject(b.ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if objstore.IsNotFound(err) {
		return false
	}
	require.NoError(t, err)
	return true
}

func (b *procBundle) tags(t *testing.T, key string) map[string]string {
	t.Helper()
	out, err := b.s3.GetObjectTagging(b.ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	require.NoError(t, err)
	tags := map[string]string{}
	for _, tag := range out.TagSet {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	return tags
}

// intentSpec is an uploads row.
type intentSpec struct {
	key, contentType, method, multipartID string
	size                                  int64
	noSize                                bool
	sha256                                []byte
}

func (b *procBundle) intent(t *testing.T, in intentSpec) uuid.UUID {
	t.Helper()
	id := uuid.New()
	var mp *string
	if in.multipartID != "" {
		mp = &in.multipartID
	}
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size,
		size_declared, sha256, multipart_upload_id, expires_at)
		VALUES ($1, 'alice', $2, $3, $4, 'name', $5, $6, $7, $8, $9, now() + interval '1 hour')`,
		id, b.bucket, in.key, cmpOr(in.method, "put"), in.contentType, in.size, !in.noSize, in.sha256, mp)
	require.NoError(t, err)
	return id
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (b *procBundle) uploadStatus(t *testing.T, id uuid.UUID) string {
	t.Helper()
	var status string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT status FROM uploads WHERE id = $1", id).Scan(&status))
	return status
}

func (b *procBundle) row(t *testing.T, key string) dbq.Object {
	t.Helper()
	row, err := testkit.GetObject(b.ctx, b.st.Pool, b.bucket, key)
	require.NoError(t, err, "row of %q", key)
	return row
}

func (b *procBundle) rowCount(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM objects").Scan(&n))
	return n
}

// process runs one body through the bundle's Processor.
func (b *procBundle) process(t *testing.T, body []byte) error {
	t.Helper()
	return b.proc.Process(b.ctx, uuid.NewString(), body)
}

// testEvent is one S3 record to encode.
type testEvent struct {
	name, bucket, key, seq, etag string
	version                      string // versionId, when set
	size                         int64
	at                           time.Time
}

// body encodes events as an S3 notification, keys form-encoded as S3 does.
func body(events ...testEvent) []byte {
	var records []map[string]any
	for _, ev := range events {
		obj := map[string]any{"key": url.QueryEscape(ev.key), "size": ev.size, "eTag": ev.etag}
		if ev.seq != "" {
			obj["sequencer"] = ev.seq
		}
		if ev.version != "" {
			obj["versionId"] = ev.version
		}
		records = append(records, map[string]any{
			"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
			"eventTime": ev.at.UTC().Format(time.RFC3339Nano), "eventName": ev.name,
			"s3": map[string]any{"bucket": map[string]any{"name": ev.bucket}, "object": obj},
		})
	}
	raw, err := json.Marshal(map[string]any{"Records": records})
	if err != nil {
		panic(err)
	}
	return raw
}

// created and removed are events of the bundle's bucket at a given sequencer.
func (b *procBundle) created(key, seq string, at time.Time) []byte {
	return body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: key, seq: seq, at: at})
}

func (b *procBundle) removed(key, seq string, at time.Time) []byte {
	return body(testEvent{name: "ObjectRemoved:Delete", bucket: b.bucket, key: key, seq: seq, at: at})
}

// pngBytes is a w×h PNG image.
func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(0, 0, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

// sniffPolicy rejects content that disagrees with its declared type and applies action.
func sniffPolicy(action string) *pipeline.Policy {
	return &pipeline.Policy{Rules: []pipeline.Rule{{Prefix: "", RequireSniffMatch: true, Action: action}}}
}

var t0 = time.Date(2026, 11, 25, 1, 12, 55, 0, time.UTC)

func TestProcessValidWithIntent(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	content := []byte("hello, intake\n")
	sum := sha256.Sum256(content)
	id := b.intent(t, intentSpec{key: "alice/notes.txt", contentType: "text/plain", size: int64(len(content)), sha256: sum[:]})
	etag := b.put(t, "alice/notes.txt", "text/plain", content)

	require.NoError(t, b.process(t, b.created("alice/notes.txt", "0A", t0)))
	row := b.row(t, "alice/notes.txt")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Nil(t, row.Reason)
	require.Equal(t, int64(len(content)), *row.Size)
	require.Equal(t, "text/plain", *row.ContentType)
	require.Equal(t, "text/plain; charset=utf-8", *row.SniffedType)
	require.Equal(t, etag, *row.Etag)
	require.Equal(t, sum[:], row.Sha256)
	require.Equal(t, "alice", *row.Owner)
	require.Equal(t, id, *row.UploadID)
	require.Nil(t, row.Width)
	require.True(t, t0.Equal(*row.EventTime))
	require.Equal(t, "completed", b.uploadStatus(t, id))

	// A redelivery changes nothing but the time of the latest observation.
	before := row
	require.NoError(t, b.process(t, b.created("alice/notes.txt", "0A", t0)))
	requireSameState(t, before, b.row(t, "alice/notes.txt"))

	require.Equal(t, 2.0, metricValue(t, b.reg, "intake_events_total", map[string]string{"kind": "created"}))
	require.Equal(t, 1.0, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"verdict": "valid", "reason": "none"}),
		"duplicates are not counted twice")
	require.Equal(t, 2.0, metricValue(t, b.reg, "intake_event_age_seconds", nil))
	require.Equal(t, 2.0, metricValue(t, b.reg, "intake_inspect_seconds", nil))
}

// requireSameState checks that a row's state and identity did not change; only its observation
// time may have moved forward (every processing looks at S3 and records when it did), and with it
// the event that later records observed at the same instant are ordered against (the tiebreak
// columns, which follow the latest observation).
func requireSameState(t *testing.T, before, after dbq.Object) {
	t.Helper()
	require.NotNil(t, after.ObservedAt)
	if before.ObservedAt != nil {
		require.False(t, after.ObservedAt.Before(*before.ObservedAt), "the observation time never moves back")
	}
	before.ObservedAt, after.ObservedAt = nil, nil
	before.TiebreakSet, before.TiebreakSequencer, before.TiebreakEventTime = nil, nil, nil
	after.TiebreakSet, after.TiebreakSequencer, after.TiebreakEventTime = nil, nil, nil
	require.Equal(t, before, after)
}

func TestProcessImageDimensions(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{hashMax: 1 << 20})
	img := pngBytes(t, 7, 5)
	b.put(t, "a.png", "image/png", img)
	b.put(t, "big.txt", "text/plain", bytes.Repeat([]byte("x"), 2<<20))
	require.NoError(t, b.process(t, b.created("a.png", "0A", t0)))
	require.NoError(t, b.process(t, b.created("big.txt", "0A", t0)))

	row := b.row(t, "a.png")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, "image/png", *row.SniffedType)
	require.Equal(t, int32(7), *row.Width)
	require.Equal(t, int32(5), *row.Height)
	sum := sha256.Sum256(img)
	require.Equal(t, sum[:], row.Sha256, "hashed: no intent, but not above HashMaxSize")
	require.Nil(t, b.row(t, "big.txt").Sha256, "not hashed: no intent and above HashMaxSize")
}

func TestProcessRejectsSniffMismatch(t *testing.T) {
	t.Parallel()
	for _, action := range []string{pipeline.ActionTag, pipeline.ActionQuarantine, pipeline.ActionDelete, pipeline.ActionNone} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{policy: sniffPolicy(action)})
			img := pngBytes(t, 3, 2)
			const key = "alice/x.pdf"
			b.intent(t, intentSpec{key: key, contentType: "application/pdf", size: int64(len(img))})
			etag := b.put(t, key, "application/pdf", img)
			removes := action == pipeline.ActionQuarantine || action == pipeline.ActionDelete

			require.NoError(t, b.process(t, b.created(key, "0A", t0)))
			// The verdict, as committed (and notified) before the action.
			notes := b.notifications(t, key)
			require.NotEmpty(t, notes)
			verdict := notes[0]
			require.Equal(t, "upload.rejected", verdict.Type)
			require.Equal(t, pipeline.ReasonSniffMismatch, verdict.Data["reason"])
			require.Equal(t, "image/png", verdict.Data["sniffed_type"])
			require.Equal(t, etag, verdict.Data["etag"])
			require.EqualValues(t, 3, verdict.Data["width"])
			require.Equal(t, 1.0, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"verdict": "rejected", "reason": "sniff_mismatch"}))

			row := b.row(t, key)
			if removes {
				// The action's own effect is recorded before the message is acknowledged: the
				// removal (and the quarantined copy, below), without waiting for S3's events.
				require.False(t, b.exists(t, key))
				require.Equal(t, pipeline.StatusDeleted, row.Status)
				require.Len(t, notes, 2)
				require.Equal(t, "upload.deleted", notes[1].Type)
			} else {
				require.Equal(t, pipeline.StatusRejected, row.Status)
				require.Equal(t, pipeline.ReasonSniffMismatch, *row.Reason)
				require.Equal(t, "image/png", *row.SniffedType)
				require.Equal(t, etag, *row.Etag)
				require.Equal(t, int32(3), *row.Width)
				require.Len(t, notes, 1)
			}
			switch action {
			case pipeline.ActionTag:
				require.Equal(t, map[string]string{"intake-status": "rejected", "intake-reason": "sniff_mismatch"}, b.tags(t, key))
			case pipeline.ActionQuarantine:
				require.True(t, b.exists(t, "quarantine/"+key))
				// Recorded by the quarantine itself, before the copy's event (which may never come).
				q := b.row(t, "quarantine/"+key)
				require.Equal(t, pipeline.StatusRejected, q.Status)
				require.Equal(t, pipeline.ReasonQuarantined, *q.Reason)
				require.Equal(t, etag, *q.Etag)
			case pipeline.ActionNone:
				require.True(t, b.exists(t, key))
				require.Empty(t, b.tags(t, key))
			}

			// A redelivery (crash after the action) and S3's own events for the action are harmless:
			// nothing is acted on twice, no row changes, nothing more is notified.
			require.NoError(t, b.process(t, b.created(key, "0A", t0)))
			if removes {
				require.NoError(t, b.process(t, b.removed(key, "0B", t0)))
				require.Equal(t, pipeline.StatusDeleted, b.row(t, key).Status)
			} else {
				again := b.row(t, key)
				require.Equal(t, pipeline.StatusRejected, again.Status)
				require.Equal(t, pipeline.ReasonSniffMismatch, *again.Reason)
			}
			if action == pipeline.ActionQuarantine {
				// The quarantined copy's own event: recorded again, never acted on.
				require.NoError(t, b.process(t, b.created("quarantine/"+key, "0B", t0)))
				q := b.row(t, "quarantine/"+key)
				require.Equal(t, pipeline.StatusRejected, q.Status)
				require.Equal(t, pipeline.ReasonQuarantined, *q.Reason)
				require.True(t, b.exists(t, "quarantine/"+key))
				require.Empty(t, b.tags(t, "quarantine/"+key))
			}
			require.Len(t, b.notifications(t, key), len(notes))
			require.Equal(t, 1.0, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"verdict": "rejected", "reason": "sniff_mismatch"}))
			require.Equal(t, 1.0, verdictCount(t, b.reg), "one upload, one verdict: intake's own records are not counted")
		})
	}
}

// notification is an outbox row of the bundle's schema.
type notification struct {
	Type string
	Data map[string]any
}

// notifications returns the outbox rows of key, oldest first.
func (b *procBundle) notifications(t *testing.T, key string) []notification {
	t.Helper()
	rows, err := b.st.Pool.Query(b.ctx, "SELECT event_type, data FROM outbox WHERE bucket = $1 AND key = $2 ORDER BY id", b.bucket, key)
	require.NoError(t, err)
	defer rows.Close()
	var out []notification
	for rows.Next() {
		var n notification
		var data []byte
		require.NoError(t, rows.Scan(&n.Type, &data))
		require.NoError(t, json.Unmarshal(data, &n.Data))
		out = append(out, n)
	}
	require.NoError(t, rows.Err())
	return out
}

// TestProcessActsAfterCrash simulates a crash between record and act: the row is committed as
// rejected but the object was not tagged. The redelivered event re-acts.
func TestProcessActsAfterCrash(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{policy: sniffPolicy(pipeline.ActionTag)})
	img := pngBytes(t, 1, 1)
	etag := b.put(t, "k.pdf", "application/pdf", img)
	size := int64(len(img))
	seq, _ := pipeline.SequencerKey("0A")
	_, err := store.NewRecords(b.st).Record(b.ctx, pipeline.Record{
		Bucket: b.bucket, Key: "k.pdf", Status: pipeline.StatusRejected, Reason: pipeline.ReasonSniffMismatch,
		ETag: etag, Size: &size, Sequencer: seq, EventTime: t0, Observed: true,
	})
	require.NoError(t, err)
	require.Empty(t, b.tags(t, "k.pdf"))

	require.NoError(t, b.process(t, b.created("k.pdf", "0A", t0)))
	require.Equal(t, "rejected", b.tags(t, "k.pdf")["intake-status"])
}

// TestProcessQuarantineWithoutCopyEvent replays what the fault suite saw when a consumer was killed
// during a quarantine: the verdict was committed and the copy made, but MinIO sent no event for the
// copy. Whether the killed attempt left the source (the redelivery finds the copy in place and only
// deletes the source) or had deleted it too (the redelivery finds nothing to act on), the redelivery
// must record the copy from S3: no event will.
func TestProcessQuarantineWithoutCopyEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		sourceLeft bool   // the attempt died before deleting the source
		source     string // the source's row after the redelivery
	}{
		{"killed during the copy", true, pipeline.StatusDeleted},
		// Copied and deleted, neither effect recorded nor announced: moved away, not missing.
		{"killed during or after the source's delete", false, pipeline.StatusDeleted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{policy: sniffPolicy(pipeline.ActionQuarantine)})
			img := pngBytes(t, 1, 1)
			const key = "k.pdf"
			etag := b.put(t, key, "application/pdf", img)
			size := int64(len(img))
			seq, _ := pipeline.SequencerKey("0A")
			_, err := store.NewRecords(b.st).Record(b.ctx, pipeline.Record{
				Bucket: b.bucket, Key: key, Status: pipeline.StatusRejected, Reason: pipeline.ReasonSniffMismatch,
				ETag: etag, Size: &size, Sequencer: seq, EventTime: t0, Observed: true,
			})
			require.NoError(t, err)
			_, err = b.s3.CopyObject(b.ctx, &s3.CopyObjectInput{
				Bucket: aws.String(b.bucket), Key: aws.String("quarantine/" + key), CopySource: aws.String(b.bucket + "/" + key),
			})
			require.NoError(t, err)
			if !tc.sourceLeft {
				_, err = b.s3.DeleteObject(b.ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
				require.NoError(t, err)
			}
			require.Equal(t, 1, b.rowCount(t), "the copy has no row: its event was never sent")

			require.NoError(t, b.process(t, b.created(key, "0A", t0)))
			require.False(t, b.exists(t, key))
			require.Equal(t, tc.source, b.row(t, key).Status)
			q := b.row(t, "quarantine/"+key)
			require.Equal(t, pipeline.StatusRejected, q.Status)
			require.Equal(t, pipeline.ReasonQuarantined, *q.Reason)
			require.Equal(t, etag, *q.Etag)
			require.Equal(t, size, *q.Size)
			// The copy and the move are intake's own records, not verdicts.
			require.Zero(t, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"reason": pipeline.ReasonQuarantined}))
			require.Zero(t, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"verdict": pipeline.StatusDeleted}))

			// An event of another missing object, without a copy, records no row for one.
			require.NoError(t, b.process(t, b.created("gone.pdf", "0A", t0)))
			require.Equal(t, pipeline.StatusMissing, b.row(t, "gone.pdf").Status)
			require.Equal(t, 3, b.rowCount(t), "no row for a copy S3 does not hold")
		})
	}
}

// TestProcessDeleteWithoutRemovalEvent: under a rule whose action is delete, a rejection is
// recorded, then the object deleted; an attempt killed after S3 deleted it and before the delete
// was recorded leaves the row rejected, and MinIO sends no removal event for a request whose
// client died. The redelivered creation finds the object gone: it is recorded deleted, with its
// upload.deleted notification, not missing (which notifies nothing and would leave the row saying
// the object never was there).
func TestProcessDeleteWithoutRemovalEvent(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{policy: sniffPolicy(pipeline.ActionDelete)})
	img := pngBytes(t, 1, 1)
	const key = "k.pdf"
	size := int64(len(img))
	id := b.intent(t, intentSpec{key: key, contentType: "application/pdf", size: size})
	etag := b.put(t, key, "application/pdf", img)
	seq, _ := pipeline.SequencerKey("0A")
	_, err := store.NewRecords(b.st).Record(b.ctx, pipeline.Record{
		Bucket: b.bucket, Key: key, Status: pipeline.StatusRejected, Reason: pipeline.ReasonSniffMismatch,
		ETag: etag, Size: &size, Sequencer: seq, EventTime: t0, Observed: true, ObservedAt: t0,
		Owner: "alice", UploadID: id, CompleteIntent: id,
	})
	require.NoError(t, err)
	_, err = b.s3.DeleteObject(b.ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	require.NoError(t, err)

	require.NoError(t, b.process(t, b.created(key, "0A", t0)))
	require.Equal(t, pipeline.StatusDeleted, b.row(t, key).Status)
	require.Equal(t, []string{"upload.rejected", "upload.deleted"}, b.notificationTypes(t, key))
	require.Zero(t, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"verdict": pipeline.StatusDeleted}),
		"intake's own delete is no verdict")
}

func TestProcessIntentChecks(t *testing.T) {
	t.Parallel()
	content := []byte("%PDF-1.4\n%âãÏÓ\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n")
	good := sha256.Sum256(content)
	bad := sha256.Sum256([]byte("other"))
	tests := []struct {
		name       string
		intent     intentSpec
		storedType string
		status     string
		reason     string
		hashed     bool
	}{
		{"matches", intentSpec{contentType: "application/pdf", size: int64(len(content)), sha256: good[:]}, "application/pdf", "valid", "", true},
		{"size mismatch", intentSpec{contentType: "application/pdf", size: int64(len(content)) + 1, sha256: good[:]}, "application/pdf", "rejected", pipeline.ReasonSizeMismatch, false},
		{"size not declared", intentSpec{contentType: "application/pdf", noSize: true}, "application/pdf", "valid", "", false},
		{"sha256 mismatch", intentSpec{contentType: "application/pdf", size: int64(len(content)), sha256: bad[:]}, "application/pdf", "rejected", pipeline.ReasonHashMismatch, true},
		{"stored type differs", intentSpec{contentType: "application/pdf", size: int64(len(content))}, "text/plain", "rejected", pipeline.ReasonTypeMismatch, false},
		{"type parameters ignored", intentSpec{contentType: "Application/PDF; x=y", size: int64(len(content))}, "application/pdf", "valid", "", false},
	}
	b := setupProc(t, procOpts{policy: sniffPolicy(pipeline.ActionNone)})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("doc-%d.pdf", i)
			tc.intent.key = key
			b.intent(t, tc.intent)
			b.put(t, key, tc.storedType, content)
			require.NoError(t, b.process(t, b.created(key, "0A", t0)))
			row := b.row(t, key)
			require.Equal(t, tc.status, row.Status)
			if tc.reason == "" {
				require.Nil(t, row.Reason)
			} else {
				require.Equal(t, tc.reason, *row.Reason)
			}
			if tc.hashed {
				require.Equal(t, good[:], row.Sha256, "the computed digest is recorded")
			} else {
				require.Nil(t, row.Sha256)
			}
		})
	}
}

func TestProcessPolicyChecks(t *testing.T) {
	t.Parallel()
	policy := &pipeline.Policy{Rules: []pipeline.Rule{
		{Prefix: "", Action: pipeline.ActionNone},
		{Prefix: "avatars/", MaxSize: 100, AllowedTypes: []string{"image/*"}, Action: pipeline.ActionNone},
	}}
	b := setupProc(t, procOpts{policy: policy})
	b.put(t, "avatars/big.png", "image/png", pngBytes(t, 64, 64))
	b.put(t, "avatars/a.txt", "text/plain", []byte("hi"))
	b.put(t, "docs/a.txt", "image/png", []byte("not a png, but no sniff rule here"))
	for key, want := range map[string]string{
		"avatars/big.png": pipeline.ReasonTooLarge,
		"avatars/a.txt":   pipeline.ReasonTypeNotAllow,
		"docs/a.txt":      "",
	} {
		require.NoError(t, b.process(t, b.created(key, "0A", t0)))
		row := b.row(t, key)
		if want == "" {
			require.Equal(t, pipeline.StatusValid, row.Status, key)
			continue
		}
		require.Equal(t, pipeline.StatusRejected, row.Status, key)
		require.Equal(t, want, *row.Reason, key)
	}
}

func TestProcessMissing(t *testing.T) {
	t.Parallel()
	other := testkit.Name("t-absent-")
	b := setupProc(t, procOpts{buckets: []string{other}})
	id := b.intent(t, intentSpec{key: "gone.txt", contentType: "text/plain", size: 3})
	require.NoError(t, b.process(t, b.created("gone.txt", "0A", t0)), "a 404 is recorded and acked")
	row := b.row(t, "gone.txt")
	require.Equal(t, pipeline.StatusMissing, row.Status)
	require.Equal(t, pipeline.ReasonNotFound, *row.Reason)
	require.Nil(t, row.Etag)
	require.Equal(t, "alice", *row.Owner)
	// An event is a hint: only an object S3 shows completes its upload. Deleted before intake
	// looked, the upload keeps its intent pending, for the expiry to settle.
	require.Equal(t, "pending", b.uploadStatus(t, id), "an event naming an object S3 does not have completes nothing")
	require.Equal(t, 1.0, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"verdict": "missing", "reason": "not_found"}))
	require.Empty(t, b.notifications(t, "gone.txt"), "a missing object notifies nothing")

	// A configured bucket that does not exist (MinIO back on an empty volume, the endpoint of
	// another cluster) is not a missing object: S3 cannot say, so the event waits, unrecorded.
	err := b.process(t, body(testEvent{name: "ObjectCreated:Put", bucket: other, key: "k", seq: "0A", at: t0}))
	require.ErrorIs(t, err, pipeline.ErrUnavailable)
	_, err = testkit.GetObject(b.ctx, b.st.Pool, other, "k")
	require.ErrorIs(t, err, pgx.ErrNoRows, "nothing is recorded of an object in a missing bucket")
}

// TestProcessForgedCompleteMultipart: an ObjectCreated:CompleteMultipartUpload for a key whose
// multipart upload is still in progress (forged, or stray) finds no object. It is recorded missing,
// but neither completes the intent nor cancels the upload's abort task: the real upload can still
// have its parts signed and be completed, and its own event completes the intent.
func TestProcessForgedCompleteMultipart(t *testing.T) {
	t.Parallel()
	c := &cancels{}
	b := setupProc(t, procOpts{multipart: c})
	const key = "mp.bin"
	content := []byte("multipart body")
	id := b.intent(t, intentSpec{key: key, contentType: "application/octet-stream", size: int64(len(content)), method: "multipart", multipartID: "mp-upload-1"})
	complete := func(seq string) []byte {
		return body(testEvent{name: "ObjectCreated:CompleteMultipartUpload", bucket: b.bucket, key: key, seq: seq, at: t0})
	}

	require.NoError(t, b.process(t, complete("0A")))
	require.Equal(t, pipeline.StatusMissing, b.row(t, key).Status)
	require.Equal(t, "pending", b.uploadStatus(t, id), "the upload in progress is not completed")
	require.Empty(t, c.ids, "its abort task is not cancelled")
	require.Empty(t, b.notifications(t, key))

	// The real completion.
	etag := b.put(t, key, "application/octet-stream", content)
	require.NoError(t, b.process(t, complete("0B")))
	row := b.row(t, key)
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, etag, *row.Etag)
	require.Equal(t, "completed", b.uploadStatus(t, id))
	require.Equal(t, []string{"mp-upload-1"}, c.ids)
}

// TestProcessRemovalMakesAnotherVersionCurrent: in a versioned bucket, deleting the current version
// (DeleteObject with its versionId) makes the previous one current. The removal event's HEAD finds
// that object, so the row is not marked deleted; it records the version S3 now serves instead of
// keeping the deleted one forever. Processed again, the removal changes nothing.
func TestProcessRemovalMakesAnotherVersionCurrent(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	_, err := b.s3.PutBucketVersioning(b.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(b.bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
	require.NoError(t, err)
	const key = "k.txt"
	b.intent(t, intentSpec{key: key, contentType: "text/plain", noSize: true})
	first := b.put(t, key, "text/plain", []byte("one"))
	firstVersion := b.version(t, key)
	second := b.put(t, key, "text/plain", []byte("two"))
	secondVersion := b.version(t, key)
	require.NotEqual(t, firstVersion, secondVersion)
	require.NoError(t, b.process(t, b.created(key, "0A", t0)))
	row := b.row(t, key)
	require.Equal(t, second, *row.Etag)
	require.Equal(t, secondVersion, *row.VersionID)

	_, err = b.s3.DeleteObject(b.ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), VersionId: aws.String(secondVersion)})
	require.NoError(t, err)
	removal := body(testEvent{name: "ObjectRemoved:Delete", bucket: b.bucket, key: key, seq: "0B", version: secondVersion, at: t0})
	require.NoError(t, b.process(t, removal))
	row = b.row(t, key)
	require.Equal(t, pipeline.StatusValid, row.Status, "S3 still serves an object under the key")
	require.Equal(t, first, *row.Etag, "the version S3 serves now")
	require.Equal(t, firstVersion, *row.VersionID)
	require.Equal(t, 1.0, metricValue(t, b.reg, "intake_events_distrusted_total", map[string]string{"reason": pipeline.DistrustRemovalUnconfirmed}))
	notes := b.notifications(t, key)
	require.Len(t, notes, 2, "the new verdict is notified")
	require.Equal(t, first, notes[1].Data["etag"])
	require.Equal(t, 2.0, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"verdict": "valid"}))

	require.NoError(t, b.process(t, removal))
	requireSameState(t, row, b.row(t, key))
	require.Len(t, b.notifications(t, key), 2)
	require.Equal(t, 2.0, metricValue(t, b.reg, "intake_verdicts_total", map[string]string{"verdict": "valid"}))
}

// version returns the version id S3 serves for key.
func (b *procBundle) version(t *testing.T, key string) string {
	t.Helper()
	head, err := b.s3.HeadObject(b.ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	require.NoError(t, err)
	require.NotEmpty(t, aws.ToString(head.VersionId))
	return aws.ToString(head.VersionId)
}

// TestProcessRemovalBeforeLanding: a delete that removed nothing (MinIO's ObjectRemoved:NoOP)
// records nothing; a removal S3 confirms is recorded deleted without the event's version id
// whatever the intent's status (it may be read while the creation is still being inspected: the
// object did land, and its deletion must be notified after the creation's upload.valid), but an
// object intake never saw present notifies nobody; the key's later lifecycle is recorded and
// notified verdict by verdict.
func TestProcessRemovalBeforeLanding(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{archive: true})
	const key = "up.txt"
	id := b.intent(t, intentSpec{key: key, contentType: "text/plain", size: 2})
	removal := func(name, seq, version string) []byte {
		return body(testEvent{name: name, bucket: b.bucket, key: key, seq: seq, version: version, at: t0})
	}

	require.NoError(t, b.process(t, removal("s3:ObjectRemoved:NoOP", "", "")))
	require.Zero(t, b.rowCount(t), "a delete that removed nothing records nothing")
	require.NoError(t, b.process(t, removal("ObjectRemoved:DeleteMarkerCreated", "0A", "marker-1")))
	row := b.row(t, key)
	require.Equal(t, pipeline.StatusDeleted, row.Status)
	require.Nil(t, row.VersionID, "the event's version id is not S3's word")
	require.Equal(t, "alice", *row.Owner)
	require.Equal(t, "pending", b.uploadStatus(t, id), "a removal completes nothing")
	require.Empty(t, b.notifications(t, key), "an upload that never landed is not notified deleted")

	// The upload lands: its event records it.
	etag := b.put(t, key, "text/plain", []byte("hi"))
	require.NoError(t, b.process(t, b.created(key, "0B", t0)))
	require.Equal(t, etag, *b.row(t, key).Etag)
	require.Equal(t, "completed", b.uploadStatus(t, id))

	// Deleted: its removal is recorded and notified, once.
	require.NoError(t, b.s3Delete(t, key))
	require.NoError(t, b.process(t, removal("ObjectRemoved:Delete", "0C", "v-1")))
	row = b.row(t, key)
	require.Equal(t, pipeline.StatusDeleted, row.Status)
	require.Nil(t, row.VersionID)
	require.NoError(t, b.process(t, removal("ObjectRemoved:Delete", "0D", "v-2")))
	again := b.row(t, key)
	require.Equal(t, pipeline.StatusDeleted, again.Status)
	require.Nil(t, again.VersionID)
	require.Equal(t, row.VerdictSeq, again.VerdictSeq, "no new verdict: a stray removal naming another version notifies nothing more")
	require.Equal(t, row.UpdatedAt, again.UpdatedAt)
	var types []string
	for _, n := range b.notifications(t, key) {
		types = append(types, n.Type)
	}
	require.Equal(t, []string{"upload.valid", "upload.deleted"}, types, "one notification per verdict, in order")
	require.Equal(t, []string{"unknown:ignored", "removed:deleted", "created:valid", "removed:deleted", "removed:deleted:stale"},
		archivedOutcomes(t, b))
}

func TestProcessRemoved(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	b.intent(t, intentSpec{key: "k.txt", contentType: "text/plain", size: 2})
	b.put(t, "k.txt", "text/plain", []byte("hi"))
	require.NoError(t, b.process(t, b.created("k.txt", "0B", t0)))
	require.Equal(t, pipeline.StatusValid, b.row(t, "k.txt").Status)

	// Removal events while S3 still has the object change nothing, newer sequencer or not: the
	// object is looked at again, and the row already says what S3 holds.
	for i, seq := range []string{"0A", "0C", ""} {
		before := b.row(t, "k.txt")
		require.NoError(t, b.process(t, b.removed("k.txt", seq, t0.Add(time.Second))))
		after := b.row(t, "k.txt")
		require.Equal(t, pipeline.StatusValid, after.Status, "removal %q of an object S3 still has", seq)
		if i > 0 { // the first look again may move the event time to the object's LastModified
			requireSameState(t, before, after)
		}
	}
	require.Len(t, b.notifications(t, "k.txt"), 1)
	require.Equal(t, 3.0, metricValue(t, b.reg, "intake_events_distrusted_total", map[string]string{"reason": "removal_unconfirmed"}))

	// Once S3 confirms the removal (404), it is applied.
	require.NoError(t, b.s3Delete(t, "k.txt"))
	require.NoError(t, b.process(t, b.removed("k.txt", "0C", t0)))
	row := b.row(t, "k.txt")
	require.Equal(t, pipeline.StatusDeleted, row.Status)
	require.Nil(t, row.Etag)
	require.Nil(t, row.Size)
	require.Equal(t, "alice", *row.Owner, "the owner comes from the intent")

	require.NoError(t, b.process(t, b.created("k.txt", "0B", t0)), "the late creation finds nothing")
	require.Equal(t, pipeline.StatusDeleted, b.row(t, "k.txt").Status, "missing never replaces deleted")

	// Written again: its event records it, whatever the removal's sequencer said.
	etag := b.put(t, "k.txt", "text/plain", []byte("ho"))
	require.NoError(t, b.process(t, b.created("k.txt", "0A", t0)))
	row = b.row(t, "k.txt")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, etag, *row.Etag)

	// A removal of a key without an intent, which S3 does not have, leaves a tombstone (a creation
	// processed at the same time, which looked before the removal, must not outlive it); with no
	// intent, nobody is notified.
	require.NoError(t, b.process(t, b.removed("never-seen", "0A", t0)))
	require.Equal(t, pipeline.StatusDeleted, b.row(t, "never-seen").Status)
	require.Empty(t, b.notifications(t, "never-seen"))
}

func TestProcessMetadataEventsDoNotReinspect(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{policy: sniffPolicy(pipeline.ActionTag)})
	etag := b.put(t, "a.png", "image/png", pngBytes(t, 2, 2))
	require.NoError(t, b.process(t, b.created("a.png", "0A", t0)))
	before := b.row(t, "a.png")
	require.Equal(t, pipeline.StatusValid, before.Status)

	// Replaced by content that would be rejected; only metadata events arrive.
	b.put(t, "a.png", "image/png", []byte("<html>not an image</html>"))
	for _, name := range []string{"ObjectTagging:Put", "s3:ObjectCreated:PutTagging", "ObjectAcl:Put", "ObjectTagging:Delete"} {
		require.NoError(t, b.process(t, body(testEvent{name: name, bucket: b.bucket, key: "a.png", seq: "0B", at: t0.Add(time.Second)})))
	}
	after := b.row(t, "a.png")
	require.Equal(t, before, after)
	require.Equal(t, etag, *after.Etag)
	require.Empty(t, b.tags(t, "a.png"))
}

func TestProcessTestAndUnknownEvents(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{archive: true})
	require.NoError(t, b.process(t, []byte(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2014-10-13T15:57:02.089Z","Bucket":"x"}`)))
	require.NoError(t, b.process(t, body(testEvent{name: "ObjectRestore:Post", bucket: b.bucket, key: "k", at: t0})))
	// MinIO's answer to a delete of a key it does not have: nothing was removed.
	require.NoError(t, b.process(t, body(testEvent{name: "s3:ObjectRemoved:NoOP", bucket: b.bucket, key: "never-there", at: t0})))
	require.Zero(t, b.rowCount(t))
	require.Equal(t, 1.0, metricValue(t, b.reg, "intake_events_total", map[string]string{"kind": "test"}))
	require.Equal(t, 2.0, metricValue(t, b.reg, "intake_events_total", map[string]string{"kind": "unknown"}))
	require.Equal(t, []string{"test", "unknown:ignored", "unknown:ignored"}, archivedOutcomes(t, b))
}

func archivedOutcomes(t *testing.T, b *procBundle) []string {
	t.Helper()
	rows, err := b.st.Pool.Query(b.ctx, "SELECT outcome FROM events ORDER BY id")
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestProcessMalformed(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{archive: true})
	bodies := []string{"{", `{"Records":[]}`, `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%zz"}}}]}`, "\xff\x00{"}
	for _, raw := range bodies {
		err := b.process(t, []byte(raw))
		require.ErrorIs(t, err, pipeline.ErrPermanent, raw)
		require.False(t, errors.Is(err, pipeline.ErrUnavailable))
	}
	require.Equal(t, []string{"malformed", "malformed", "malformed", "malformed"}, archivedOutcomes(t, b))
	var last string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT body FROM events ORDER BY id DESC LIMIT 1").Scan(&last))
	require.Equal(t, "\uFFFD\uFFFD{", last, "bytes PostgreSQL text refuses are replaced")
}

func TestProcessArchive(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{archive: true, policy: sniffPolicy(pipeline.ActionNone)})
	b.put(t, "a.txt", "text/plain", []byte("a"))
	b.put(t, "b.pdf", "application/pdf", []byte("b"))
	two := body(
		testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: "a.txt", seq: "0A", at: t0},
		testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: "b.pdf", seq: "0A", at: t0})
	require.NoError(t, b.proc.Process(b.ctx, "msg-1", two))
	require.NoError(t, b.process(t, b.removed("a.txt", "09", t0)))
	require.Equal(t, []string{"created:valid,created:rejected:sniff_mismatch", "removed:unconfirmed"}, archivedOutcomes(t, b),
		"a.txt is still there: its removal event changes nothing")
	var msgID, bodyText, name string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT message_id, body, event_name FROM events ORDER BY id LIMIT 1").Scan(&msgID, &bodyText, &name))
	require.Equal(t, "msg-1", msgID)
	require.Equal(t, string(two), bodyText)
	require.Equal(t, "ObjectCreated:Put", name)
}

// cancelledAtArchive is the real record store, except that the context ends (the grace period
// after SIGTERM is over) once the effects are committed and before the body is archived.
type cancelledAtArchive struct {
	pipeline.RecordStore
	cancel context.CancelFunc
}

func (c *cancelledAtArchive) Archive(ctx context.Context, ev pipeline.ArchivedEvent) error {
	c.cancel()
	return c.RecordStore.Archive(ctx, ev)
}

// TestProcessArchiveCancelled: a message whose context ends between the commit of its effects and
// its archive is not reported done (the consumer would delete it without its archive row): it
// fails, and its redelivery records the same and archives it.
func TestProcessArchiveCancelled(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{archive: true})
	b.put(t, "a.txt", "text/plain", []byte("a"))
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	p := b.newProcessor(t, procOpts{archive: true, records: &cancelledAtArchive{RecordStore: store.NewRecords(b.st), cancel: cancel}})
	msg := b.created("a.txt", "0A", t0)

	err := p.Process(ctx, "msg-1", msg)
	require.ErrorIs(t, err, context.Canceled, "the message is not acked without its archive row")
	require.False(t, errors.Is(err, pipeline.ErrPermanent))
	require.Equal(t, pipeline.StatusValid, b.row(t, "a.txt").Status, "the effects were committed")
	require.Empty(t, archivedOutcomes(t, b))

	require.NoError(t, b.proc.Process(b.ctx, "msg-1", msg), "the redelivery")
	require.Equal(t, []string{"created:valid:stale"}, archivedOutcomes(t, b), "archived; its record was already there")
}

// cancels records CancelMultipartAbort calls and fails them when err is set.
type cancels struct {
	mu  sync.Mutex
	ids []string
	err error
}

func (c *cancels) CancelMultipartAbort(_ context.Context, uploadID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = append(c.ids, uploadID)
	return c.err
}

func TestProcessMultipartCancelsAbort(t *testing.T) {
	t.Parallel()
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			t.Parallel()
			c := &cancels{}
			if fail {
				c.err = errors.New("redis down")
			}
			b := setupProc(t, procOpts{multipart: c})
			content := []byte("multipart body")
			id := b.intent(t, intentSpec{key: "mp.bin", contentType: "application/octet-stream", size: int64(len(content)), method: "multipart", multipartID: "mp-upload-1"})
			b.intent(t, intentSpec{key: "put.bin", contentType: "application/octet-stream", size: 1})
			b.put(t, "mp.bin", "application/octet-stream", content)
			b.put(t, "put.bin", "application/octet-stream", []byte("x"))
			complete := body(testEvent{name: "ObjectCreated:CompleteMultipartUpload", bucket: b.bucket, key: "mp.bin", seq: "0A", at: t0})
			require.NoError(t, b.process(t, complete), "a failing cancel does not fail the message")
			require.NoError(t, b.process(t, b.created("put.bin", "0A", t0)))
			require.Equal(t, []string{"mp-upload-1"}, c.ids)
			require.Equal(t, "completed", b.uploadStatus(t, id))
			require.Equal(t, pipeline.StatusValid, b.row(t, "mp.bin").Status)
		})
	}
}

func TestInspectObject(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	b.put(t, "k.txt", "text/plain", []byte("one"))
	require.NoError(t, b.proc.InspectObject(b.ctx, b.bucket, "k.txt"))
	row := b.row(t, "k.txt")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Nil(t, row.Sequencer)
	head, err := b.s3.HeadObject(b.ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String("k.txt")})
	require.NoError(t, err)
	require.True(t, aws.ToTime(head.LastModified).Equal(*row.EventTime), "the object's LastModified stands for the event time")

	// An event processed later wins; re-inspecting then changes nothing.
	etag := b.put(t, "k.txt", "text/plain", []byte("two"))
	require.NoError(t, b.process(t, b.created("k.txt", "0A", time.Now().Add(time.Minute))))
	after := b.row(t, "k.txt")
	require.Equal(t, etag, *after.Etag)
	require.NoError(t, b.proc.InspectObject(b.ctx, b.bucket, "k.txt"))
	requireSameState(t, after, b.row(t, "k.txt"))

	// A stale row (its event older than the object) is refreshed.
	require.NoError(t, b.process(t, b.removed("stale.txt", "0A", t0)))
	etag = b.put(t, "stale.txt", "text/plain", []byte("new"))
	require.NoError(t, b.proc.InspectObject(b.ctx, b.bucket, "stale.txt"))
	stale := b.row(t, "stale.txt")
	require.Equal(t, pipeline.StatusValid, stale.Status)
	require.Equal(t, etag, *stale.Etag)

	// A missing object is recorded missing: the observation is the newest thing known of it.
	require.NoError(t, b.proc.InspectObject(b.ctx, b.bucket, "absent"))
	require.Equal(t, pipeline.StatusMissing, b.row(t, "absent").Status)
	require.NoError(t, b.s3Delete(t, "k.txt"))
	require.NoError(t, b.proc.InspectObject(b.ctx, b.bucket, "k.txt"))
	gone := b.row(t, "k.txt")
	require.Equal(t, pipeline.StatusMissing, gone.Status)
	require.Nil(t, gone.Etag)

	// Another bucket is refused for good, before anything is looked at.
	err = b.proc.InspectObject(b.ctx, "someone-elses", "k.txt")
	require.ErrorIs(t, err, pipeline.ErrPermanent)
	var refusal *pipeline.Refusal
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, pipeline.ReasonForeignBucket, refusal.DeadLetterReason())
}

func (b *procBundle) s3Delete(t *testing.T, key string) error {
	t.Helper()
	_, err := b.s3.DeleteObject(b.ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	return err
}

// replacing is the real object store with one hook: the first read of the content after its
// metadata (the ranged GET after HEAD, or the hash after Peek) replaces the object in MinIO just
// before reading it, as a concurrent upload would.
type replacing struct {
	pipeline.ObjectStore
	once    sync.Once
	replace func()
}

func (r *replacing) ReadPrefix(ctx context.Context, obj pipeline.ObjectRef, n int) ([]byte, error) {
	r.once.Do(r.replace)
	return r.ObjectStore.ReadPrefix(ctx, obj, n)
}

func (r *replacing) Hash(ctx context.Context, obj pipeline.ObjectRef) ([]byte, int64, error) {
	r.once.Do(r.replace)
	return r.ObjectStore.Hash(ctx, obj)
}

// TestProcessObjectReplacedDuringInspection: an object replaced between the look at its metadata
// and a later read of that content (the read conditional on its ETag fails) is inspected again from
// the start, and the new content is recorded; through Peek (the daemon's path: the hash fails) and
// through HEAD and a ranged GET (the ranged GET fails).
func TestProcessObjectReplacedDuringInspection(t *testing.T) {
	t.Parallel()
	for _, path := range []string{pathPeek, pathHeadRead} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{})
			b.put(t, "k.png", "image/png", pngBytes(t, 2, 2))
			img := pngBytes(t, 4, 4)
			var second string
			real := objstore.NewObjects(b.s3)
			r := &replacing{ObjectStore: real, replace: func() { second = b.put(t, "k.png", "image/png", img) }}
			p := b.newProcessor(t, procOpts{objects: withPath(path, r, real), policy: sniffPolicy(pipeline.ActionTag), hashMax: 1 << 20})
			require.NoError(t, p.Process(b.ctx, "m", b.created("k.png", "0A", t0)))
			require.NotEmpty(t, second, "the hook ran")
			row := b.row(t, "k.png")
			require.Equal(t, second, *row.Etag, "inspection restarted on the new content")
			require.Equal(t, pipeline.StatusValid, row.Status)
			require.Equal(t, int32(4), *row.Width)
			sum := sha256.Sum256(img)
			require.Equal(t, sum[:], row.Sha256)
		})
	}
}

func TestProcessLargeObjectHash(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	const size = 64 << 20
	want := testkit.PatternSHA256(size)
	_, err := b.s3.PutObject(b.ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.bucket), Key: aws.String("big.bin"), Body: &testkit.PatternReader{Size: size},
		ContentType: aws.String("application/octet-stream"),
	})
	require.NoError(t, err)
	b.intent(t, intentSpec{key: "big.bin", contentType: "application/octet-stream", size: size, sha256: want})
	require.NoError(t, b.process(t, b.created("big.bin", "0A", t0)))
	row := b.row(t, "big.bin")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, want, row.Sha256)
	require.Equal(t, int64(size), *row.Size)
}

func TestProcessS3Unavailable(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	awsCfg := testkit.AWSConfig()
	awsCfg.RetryMaxAttempts = 1
	down := objstore.NewObjects(objstore.NewClient(awsCfg, testkit.AWSAt("http://127.0.0.1:1", "")))
	p := b.newProcessor(t, procOpts{objects: down})
	err := p.Process(b.ctx, "m", b.created("k", "0A", t0))
	require.ErrorIs(t, err, pipeline.ErrUnavailable)
	require.False(t, errors.Is(err, pipeline.ErrPermanent))
	for _, seq := range []string{"", "0A"} {
		require.ErrorIs(t, p.Process(b.ctx, "m", b.removed("k", seq, t0)), pipeline.ErrUnavailable,
			"a removal is applied only once S3 confirmed it, sequencer %q or not", seq)
	}
	require.ErrorIs(t, p.InspectObject(b.ctx, b.bucket, "k"), pipeline.ErrUnavailable)
}

func TestProcessPostgresUnavailable(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	b.put(t, "k", "text/plain", []byte("x"))
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:1/intake_test?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(b.ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	p := b.newProcessor(t, procOpts{records: store.NewRecords(&store.Store{Pool: pool, Q: dbq.New(pool)})})
	for _, msg := range [][]byte{b.created("k", "0A", t0), b.removed("k", "0A", t0)} {
		err := p.Process(b.ctx, "m", msg)
		require.ErrorIs(t, err, pipeline.ErrUnavailable)
		require.False(t, errors.Is(err, pipeline.ErrPermanent))
	}
	require.ErrorIs(t, p.InspectObject(b.ctx, b.bucket, "k"), pipeline.ErrUnavailable)
}

// TestProcessFixtures runs every recorded body through a Processor. The buckets they name
// (mybucket, minio-events, DOC-EXAMPLE-BUCKET1...) normally do not exist here, and a missing bucket
// is an outage of S3, not a missing object: they are created (empty) first. The invalid name
// DOC-EXAMPLE-BUCKET1, which S3 refuses to create, draws a 400, which is an error to retry (then
// dead-letter through the redrive policy), not a permanent one: S3 refusing a request may be a
// permission to fix.
func TestProcessFixtures(t *testing.T) {
	t.Parallel()
	files := readFixtures(t)
	var buckets []string // the fixtures' buckets are configured: this test is about decoding
	for _, events := range fixtureEvents {
		for _, ev := range events {
			buckets = append(buckets, ev.Bucket)
		}
	}
	b := setupProc(t, procOpts{policy: sniffPolicy(pipeline.ActionNone), buckets: buckets}) // never act on shared buckets
	// The buckets exist (empty): a missing bucket is an outage, not a missing object. Names S3
	// refuses stay absent (the EventBridge sample's).
	s3c := testkit.S3()
	for _, name := range buckets {
		_, err := s3c.CreateBucket(b.ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		var owned *types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			t.Logf("bucket %s not created: %v", name, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		err := b.proc.Process(b.ctx, name, files[name])
		require.False(t, errors.Is(err, pipeline.ErrPermanent), "%s: %v", name, err)
		require.False(t, errors.Is(err, pipeline.ErrUnavailable), "%s: %v", name, err)
		if name == "aws/eventbridge-object-created.json" {
			require.Error(t, err, "S3 refuses the invalid bucket name")
			continue
		}
		require.NoError(t, err, name)
		for _, ev := range fixtureEvents[name] {
			if ev.Kind != pipeline.KindCreated && ev.Kind != pipeline.KindRemoved {
				continue
			}
			row, err := testkit.GetObject(b.ctx, b.st.Pool, ev.Bucket, ev.Key)
			require.NoError(t, err, "%s: row of %s/%s", name, ev.Bucket, ev.Key)
			require.Contains(t, []string{"valid", "rejected", "missing", "deleted"}, row.Status)
		}
	}
}

func TestNewProcessorConfig(t *testing.T) {
	t.Parallel()
	_, err := pipeline.NewProcessor(pipeline.ProcessorConfig{HashMaxSize: -1, Policy: &pipeline.Policy{Rules: []pipeline.Rule{{Action: "explode"}}}})
	require.Error(t, err)
	for _, want := range []string{"(Objects) is required", "(Records) is required", "(Buckets) are required", "HashMaxSize", "explode"} {
		require.ErrorContains(t, err, want)
	}

	// Two processors may share a registry (consumer and jobs in one process).
	reg := prometheus.NewRegistry()
	for range 2 {
		_, err := pipeline.NewProcessor(pipeline.ProcessorConfig{Objects: nopObjects{}, Records: nopRecords{}, Buckets: []string{"b"}, Registerer: reg})
		require.NoError(t, err)
	}
}

// nopObjects and nopRecords only satisfy the interfaces for configuration tests.
type nopObjects struct{ pipeline.ObjectStore }
type nopRecords struct{ pipeline.RecordStore }

// verdictCount is the sum of intake_verdicts_total over every label.
func verdictCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() == "intake_verdicts_total" {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// metricValue returns the value of the counter or gauge, or the sample count of the histogram, name with
// the given labels, or 0 when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

// TestProcessDistrust: what an event is not taken at its word for. The clock is fixed, so that the
// clamping is exact.
func TestProcessDistrust(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	b := setupProc(t, procOpts{archive: true, now: func() time.Time { return now }})
	b.put(t, "k.txt", "text/plain", []byte("x"))
	forged := strings.Repeat("F", 64)
	tests := []struct {
		name     string
		body     []byte
		refused  string // Refusal reason, "" = processed
		distrust string // intake_events_distrusted_total reason counted
		check    func(t *testing.T)
	}{
		{
			name: "another bucket", body: body(testEvent{name: "ObjectCreated:Put", bucket: "someone-elses", key: "k.txt", seq: "0A", at: now}),
			refused: pipeline.ReasonForeignBucket, distrust: pipeline.DistrustForeignBucket,
			check: func(t *testing.T) {
				var n int
				require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM objects WHERE bucket = 'someone-elses'").Scan(&n))
				require.Zero(t, n)
			},
		},
		{
			name: "a time far in the future", body: body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: "k.txt", seq: "0A", at: now.Add(24 * time.Hour)}),
			distrust: pipeline.DistrustEventTime,
			check: func(t *testing.T) {
				require.True(t, now.Equal(*b.row(t, "k.txt").EventTime), "clamped to the time of processing")
			},
		},
		{
			name: "a time within the tolerance", body: body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: "k.txt", seq: "0B", at: now.Add(4 * time.Minute)}),
			check: func(t *testing.T) {
				require.True(t, now.Add(4*time.Minute).Equal(*b.row(t, "k.txt").EventTime), "kept: the store's clock may run ahead")
			},
		},
		{
			name: "a sequencer no S3 sends", body: body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: "other.txt", seq: forged, at: now}),
			distrust: pipeline.DistrustSequencer,
			check: func(t *testing.T) {
				require.Nil(t, b.row(t, "other.txt").Sequencer, "not stored")
			},
		},
		// Longer than any sequencer key, or not hexadecimal: dropped the same way, not a reason to
		// dead-letter the body.
		{
			name: "a sequencer of 65 digits", body: body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: "third.txt", seq: strings.Repeat("F", 65), at: now}),
			distrust: pipeline.DistrustSequencer,
			check: func(t *testing.T) {
				row := b.row(t, "third.txt")
				require.Equal(t, pipeline.StatusMissing, row.Status, "looked at as if it had no sequencer")
				require.Nil(t, row.Sequencer, "not stored")
			},
		},
		{
			name: "a sequencer that is not hexadecimal", body: body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: "k.txt", seq: "0055XYZ", at: now}),
			distrust: pipeline.DistrustSequencer,
			check: func(t *testing.T) {
				require.Equal(t, pipeline.StatusValid, b.row(t, "k.txt").Status)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			labels := map[string]string{"reason": tc.distrust}
			before := metricValue(t, b.reg, "intake_events_distrusted_total", labels)
			err := b.process(t, tc.body)
			if tc.refused == "" {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, pipeline.ErrPermanent)
				var r *pipeline.Refusal
				require.ErrorAs(t, err, &r)
				require.Equal(t, tc.refused, r.DeadLetterReason())
			}
			if tc.distrust != "" {
				require.Equal(t, before+1, metricValue(t, b.reg, "intake_events_distrusted_total", labels))
			}
			tc.check(t)
		})
	}
	require.Contains(t, archivedOutcomes(t, b), "refused:foreign_bucket")
}

// rewriting is the real object store with one hook: right after intake's delete or move of the
// rejected object succeeds, rewrite puts a new object under the same key, as an uploader writing
// again at that instant would.
type rewriting struct {
	pipeline.ObjectStore
	rewrite func()
}

func (r *rewriting) Move(ctx context.Context, obj pipeline.ObjectRef, dstKey string) (bool, error) {
	copied, err := r.ObjectStore.Move(ctx, obj, dstKey)
	if err == nil {
		r.rewrite()
	}
	return copied, err
}

func (r *rewriting) Delete(ctx context.Context, obj pipeline.ObjectRef) error {
	err := r.ObjectStore.Delete(ctx, obj)
	if err == nil {
		r.rewrite()
	}
	return err
}

// TestProcessKeyRewrittenAfterOwnRemoval: when intake deletes or moves a rejected object and the key
// is written again before intake looks (its HEAD after the action), the new object is not a
// distrusted removal event (nothing forged it): nothing is counted as one, the rejected verdict's
// row is left for the new object's own event, and that event records the new object.
func TestProcessKeyRewrittenAfterOwnRemoval(t *testing.T) {
	t.Parallel()
	for _, action := range []string{pipeline.ActionDelete, pipeline.ActionQuarantine} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{})
			const key = "k.png"
			b.put(t, key, "image/png", []byte("<html>not an image</html>"))
			img := pngBytes(t, 2, 2)
			var second string
			r := &rewriting{ObjectStore: objstore.NewObjects(b.s3), rewrite: func() { second = b.put(t, key, "image/png", img) }}
			p := b.newProcessor(t, procOpts{objects: r, policy: sniffPolicy(action)})
			unconfirmed := map[string]string{"reason": pipeline.DistrustRemovalUnconfirmed}

			require.NoError(t, p.Process(b.ctx, "m1", b.created(key, "0A", t0)))
			require.NotEmpty(t, second, "the hook ran: the object was acted on")
			require.True(t, b.exists(t, key), "the new object is in place")
			require.Zero(t, metricValue(t, b.reg, "intake_events_distrusted_total", unconfirmed), "intake's own removal is not a distrusted event")
			row := b.row(t, key)
			require.Equal(t, pipeline.StatusRejected, row.Status, "the old verdict stands until the new object's event")
			if action == pipeline.ActionQuarantine {
				q := b.row(t, "quarantine/"+key)
				require.Equal(t, pipeline.StatusRejected, q.Status, "the copy is recorded")
				require.Equal(t, pipeline.ReasonQuarantined, *q.Reason)
			}

			require.NoError(t, p.Process(b.ctx, "m2", b.created(key, "0B", t0.Add(time.Second))))
			row = b.row(t, key)
			require.Equal(t, pipeline.StatusValid, row.Status)
			require.Equal(t, second, *row.Etag)
			require.Zero(t, metricValue(t, b.reg, "intake_events_distrusted_total", unconfirmed))
		})
	}
}
