-- 0005_ops: `intake reconcile` walks a bucket's rows in byte order (the order of S3's
-- ListObjectsV2) with keyset pagination; this index makes each page a range scan whatever the
-- database's default collation.
CREATE INDEX objects_bucket_key_c_idx ON objects (bucket, (key COLLATE "C"));
