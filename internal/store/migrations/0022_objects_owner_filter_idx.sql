-- 0022_objects_owner_filter_idx: the filters of GET /v1/objects (APIListObjects) read an index
-- range. Only objects_owner_created_idx existed: ?status= walked the owner's rows newest first
-- until it had a page (all of them for a rare status), ?prefix= read all of the owner's rows, or the
-- whole table (a review measured 0.3 to 1.3 s on a million rows). ?status= now reads the owner's
-- rows of that status from the cursor on, newest first, and ?prefix= the owner's keys in the
-- prefix's range (byte order, as store.PrefixEnd bounds it); ?upload_id= reads
-- objects_upload_id_idx (0001). Built without blocking the pipeline's writes, outside a
-- transaction.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS objects_owner_status_created_idx;
CREATE INDEX CONCURRENTLY objects_owner_status_created_idx ON objects (owner, status, created_at DESC, id DESC)
    WHERE owner IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS objects_owner_key_c_idx;
CREATE INDEX CONCURRENTLY objects_owner_key_c_idx ON objects (owner, (key COLLATE "C"))
    WHERE owner IS NOT NULL;
