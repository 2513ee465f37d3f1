-- 0004_jobs: find pending multipart intents by age, for the sweep's fallback on stores whose
-- ListMultipartUploads shows nothing (see worker/jobs).
CREATE INDEX uploads_pending_multipart_created_idx ON uploads (bucket, created_at, id)
    WHERE status = 'pending' AND multipart_upload_id IS NOT NULL;
