-- 0020_objects_tiebreak: the event that orders a row against records observed at the same instant.
-- PipelineRecord (queries/objects.sql) lets the later observation decide a row and, between
-- records observed at the same instant (one batched lookup), the newer event: by sequencer, else by
-- event time. It compared them with objects.sequencer and objects.event_time, which keep the
-- greatest values ever recorded (for diagnostics), also those of records that lost on their
-- observation time: a tie was then decided against an event that was not the row's, and the same
-- records recorded in another order could end in another row. tiebreak_sequencer and
-- tiebreak_event_time are those of the newest record by the statement's order (observation time,
-- then event), which a tie is decided against. tiebreak_set is true once a record has set them:
-- rows no record has written since this migration (NULL) are ordered by sequencer and event_time,
-- as before. (A row an older release writes during a rolling upgrade keeps the values of the record
-- before; they are only read for a record observed at the same instant as the row's latest
-- observation, that is looked up by the same statement of the same process, so of the same
-- release.)
--
-- Every statement changes the catalog only: the columns are nullable without a default (nothing is
-- rewritten), and the check holds for their NULLs, so NOT VALID skips the scan.
ALTER TABLE objects
    ADD COLUMN tiebreak_set        boolean,
    ADD COLUMN tiebreak_sequencer  text COLLATE "C",
    ADD COLUMN tiebreak_event_time timestamptz;
ALTER TABLE objects ADD CONSTRAINT objects_tiebreak_sequencer_normalized
    CHECK (tiebreak_sequencer IS NULL OR tiebreak_sequencer ~ '^[0-9A-F]{64}$') NOT VALID;
