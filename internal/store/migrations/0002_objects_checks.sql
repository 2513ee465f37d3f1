-- 0002_objects_checks: invariants the pipeline's ordering relies on.
-- objects.sequencer is compared byte by byte (COLLATE "C"); that equals S3's rule only for the
-- normalized form (pipeline.SequencerKey: upper-case hex right-padded with '0' to 64 characters).
ALTER TABLE objects ADD CONSTRAINT objects_sequencer_normalized
    CHECK (sequencer IS NULL OR sequencer ~ '^[0-9A-F]{64}$');
-- A rejected or missing object always says why.
ALTER TABLE objects ADD CONSTRAINT objects_reason_present
    CHECK (status NOT IN ('rejected', 'missing') OR reason IS NOT NULL);
