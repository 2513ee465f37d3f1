package jobsapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/auth"
	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/jobsapi"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

const (
	opsKey     = "k-0123456789abcdef" // an operator key (INTAKE_API_ADMIN_KEYS)
	aliceKey   = "alice-0123456789abc"
	bobKey     = "bob-0123456789abcde"
	jwtSecret  = "a-test-secret-that-is-32-bytes-long!"
	issuer     = "https://idp.test"
	adminScope = "intake:admin"
	cookieName = "intake_token"
)

type testBundle struct {
	srv   *httptest.Server
	insp  *asynq.Inspector
	redis asynq.RedisClientOpt
	st    *store.Store
	now   time.Time
}

// setup serves the handler with the test's keys and JWT settings; with apiConfig, the API
// configuration that returns instead (development auth, say).
func setup(t *testing.T, apiConfig ...func() config.API) *testBundle {
	t.Helper()
	return setupWith(t, nil, apiConfig...)
}

// setupWith is setup with the handler's configuration changed by configure (when not nil).
func setupWith(t *testing.T, configure func(*jobsapi.Config), apiConfig ...func() config.API) *testBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	redisOpt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	st := testkit.DB(t)
	cfg := config.API{
		Keys: aliceKey + "=alice," + bobKey + "=bob", AdminKeys: opsKey + "=oncall",
		JWTSecret: jwtSecret, JWTIssuer: issuer, JWTAudience: "intake", JWTAdminScope: adminScope, AuthCookie: cookieName,
	}
	for _, f := range apiConfig {
		cfg = f()
	}
	authn, err := auth.New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	hcfg := jobsapi.Config{Client: client, Inspector: insp, Auth: authn.WithoutCookie(), Uploads: st.Q, Buckets: []string{"uploads", "other"},
		Now: func() time.Time { return now }}
	if configure != nil {
		configure(&hcfg)
	}
	h, err := jobsapi.New(hcfg)
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Register(mux)
	// Every exchange is checked against intake's OpenAPI document.
	srv := httptest.NewServer(testkit.NewContract(t, api.OpenAPI()).Handler(t, mux))
	t.Cleanup(srv.Close)
	return &testBundle{srv: srv, insp: insp, redis: redisOpt, st: st, now: now}
}

// post sends body with the operator key, unless header replaces or (with "") removes headers.
func (b *testBundle) post(t *testing.T, body string, header map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/jobs", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+opsKey)
	for k, v := range header {
		if k == "Cookie" {
			req.AddCookie(&http.Cookie{Name: cookieName, Value: v})
			continue
		}
		if k == "Host" {
			req.Host = v
			continue
		}
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	return resp, out
}

// intent is an upload intent recorded for a tenant.
type intent struct {
	id       uuid.UUID
	key      string
	uploadID string
}

// addIntent records an upload intent of owner in bucket "uploads": a multipart one when uploadID is
// set, then moved to status unless that is pending.
func (b *testBundle) addIntent(t *testing.T, owner, uploadID, status string) intent {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	in := intent{id: id, key: "uploads/" + owner + "/" + id.String() + "/f.bin", uploadID: uploadID}
	p := dbq.APICreateUploadParams{ID: id, Owner: owner, Bucket: "uploads", Key: in.key, Method: "put", Filename: "f.bin",
		ContentType: "application/octet-stream", Size: 1, SizeDeclared: true, ExpiresAt: time.Now().Add(time.Hour)}
	if uploadID != "" {
		p.Method, p.MultipartUploadID = "multipart", &uploadID
	}
	require.NoError(t, b.st.Q.APICreateUpload(context.Background(), p))
	if status != "pending" {
		tag, err := b.st.Pool.Exec(context.Background(), "UPDATE uploads SET status = $1 WHERE id = $2", status, id)
		require.NoError(t, err)
		require.EqualValues(t, 1, tag.RowsAffected())
	}
	return in
}

func token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"iss": issuer, "aud": "intake", "exp": time.Now().Add(time.Minute).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	return testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(jwtSecret), "", c)
}

// TestJobsAPIEnqueues: what operators may do (any key, sweeps), with the payload as enqueued.
func TestJobsAPIEnqueues(t *testing.T) {
	t.Parallel()
	b := setup(t)

	resp, body := b.post(t, `{"type":"object:inspect","payload":{"key":"uploads/a/b.png"}}`, map[string]string{"Authorization": "", "X-API-Key": opsKey})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, tasks.QueueDefault, body["queue"])
	require.Equal(t, "pending", body["state"])
	info, err := b.insp.GetTaskInfo(tasks.QueueDefault, body["id"].(string))
	require.NoError(t, err)
	p, err := tasks.ParseInspectObject(info.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.InspectObject{Bucket: "uploads", Key: "uploads/a/b.png"}, p, "bucket defaults to the first one")

	resp, body = b.post(t, `{"type":"multipart:sweep","payload":{"bucket":"other","prefix":"in/","older_than":7200}}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	info, err = b.insp.GetTaskInfo(tasks.QueueLow, body["id"].(string))
	require.NoError(t, err)
	sw, err := tasks.ParseSweep(info.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.Sweep{Bucket: "other", Prefix: "in/", OlderThan: tasks.Duration(2 * time.Hour)}, sw)

	const abort = `{"type":"multipart:abort","payload":{"key":"k","upload_id":"u-42"}}`
	resp, body = b.post(t, abort, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, "api:u-42", body["id"])
	require.Equal(t, tasks.QueueCritical, body["queue"])
	require.Nil(t, body["duplicate"])
	info, err = b.insp.GetTaskInfo(tasks.QueueCritical, "api:u-42")
	require.NoError(t, err)
	ab, err := tasks.ParseAbortMultipart(info.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.ReasonAPI, ab.Reason)
	require.True(t, b.now.Equal(ab.Deadline), "no deadline means now")

	resp, body = b.post(t, abort, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, true, body["duplicate"])
	require.Equal(t, "api:u-42", body["id"])

	// The first abort failed for good (a 403 since fixed, say) and asynq keeps it archived under
	// its ID: posting it again runs it again, instead of answering a duplicate that never runs.
	require.NoError(t, b.insp.ArchiveTask(tasks.QueueCritical, "api:u-42"))
	resp, body = b.post(t, abort, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Nil(t, body["duplicate"], "the archived abort is replaced")
	require.Equal(t, "api:u-42", body["id"])
	require.Equal(t, "scheduled", body["state"])
	info, err = b.insp.GetTaskInfo(tasks.QueueCritical, "api:u-42")
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State, "no longer archived")

	// A JWT with the admin scope is an operator too.
	resp, body = b.post(t, `{"type":"multipart:sweep","payload":{"older_than":"48h"}}`,
		map[string]string{"Authorization": "Bearer " + token(t, jwt.MapClaims{"sub": "oncall-bot", "scope": "openid " + adminScope})})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
}

// TestJobsAPITenantActsOnItsOwnUploads (issue 12.1, the allowed direction): a tenant aborts its
// own pending multipart upload and re-inspects its own object, with a key or a JWT.
func TestJobsAPITenantActsOnItsOwnUploads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mp := b.addIntent(t, "alice", "s3-upload-alice", "pending")
	put := b.addIntent(t, "alice", "", "completed")
	carol := b.addIntent(t, "carol", "s3-upload-carol", "pending")

	resp, body := b.post(t, `{"type":"multipart:abort","payload":{"key":"`+mp.key+`","upload_id":"`+mp.uploadID+`"}}`, map[string]string{"Authorization": "Bearer " + aliceKey})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	info, err := b.insp.GetTaskInfo(tasks.QueueCritical, "api:"+mp.uploadID)
	require.NoError(t, err)
	ab, err := tasks.ParseAbortMultipart(info.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.AbortMultipart{Bucket: "uploads", Key: mp.key, UploadID: mp.uploadID, Deadline: b.now, Reason: tasks.ReasonAPI}, ab)

	resp, body = b.post(t, `{"type":"object:inspect","payload":{"bucket":"uploads","key":"`+put.key+`"}}`, map[string]string{"Authorization": "", "X-API-Key": aliceKey})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	info, err = b.insp.GetTaskInfo(tasks.QueueDefault, body["id"].(string))
	require.NoError(t, err)
	in, err := tasks.ParseInspectObject(info.Payload)
	require.NoError(t, err)
	require.Equal(t, put.key, in.Key)

	// A tenant's JWT: the subject is the owner.
	resp, body = b.post(t, `{"type":"multipart:abort","payload":{"key":"`+carol.key+`","upload_id":"`+carol.uploadID+`"}}`,
		map[string]string{"Authorization": "Bearer " + token(t, jwt.MapClaims{"sub": "carol"})})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := jobsapi.New(jobsapi.Config{})
	require.ErrorContains(t, err, "client required")
	require.ErrorContains(t, err, "authenticator required")
	require.ErrorContains(t, err, "uploads query required")
	require.ErrorContains(t, err, "buckets required")
}
