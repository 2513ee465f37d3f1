-- 0010_multipart_aborting: an abort is recorded before it is sent. multipart_aborts.outcome gains
-- "aborting": the row BeginMultipartAbort writes before AbortMultipartUpload is called, settled to
-- "aborted" or "gone" once S3 has answered (RecordMultipartAbort). A process killed between S3's
-- answer and the record used to lose the abort of an upload intake did not create (S3 no longer
-- lists it, so no sweep finds it again); now the row it leaves is resumed by the next sweep
-- (PendingMultipartAborts). The new set contains the old one, so existing rows hold: NOT VALID
-- skips the scan.
ALTER TABLE multipart_aborts DROP CONSTRAINT multipart_aborts_outcome_check;
ALTER TABLE multipart_aborts ADD CONSTRAINT multipart_aborts_outcome_check
    CHECK (outcome IN ('aborting', 'aborted', 'gone')) NOT VALID;
