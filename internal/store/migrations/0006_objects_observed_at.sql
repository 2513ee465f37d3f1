-- 0006_objects_observed_at: when intake last looked at the object in S3 (PostgreSQL's clock, read
-- before the HEAD or ranged GET, so every replica stamps its observations on one clock). A row
-- states what the latest observation of the object saw: a record whose observation is later
-- replaces it whatever the events' sequencers say (events are hints, S3 is the truth; see
-- pipeline/doc.go, "Order and idempotency"). NULL for rows written before this migration: any
-- observation is newer. Adding a nullable column without a default rewrites nothing.
ALTER TABLE objects ADD COLUMN observed_at timestamptz;
