-- name: HealthWritable :one
-- Whether a transaction of this session may write: not on a standby (in recovery, e.g. the old
-- primary after a failover) and not when the database or role makes transactions read-only.
SELECT (NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off')::boolean AS writable;
