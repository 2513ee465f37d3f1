-- 0013_outbox_delivered: the endpoints a notification was delivered to, kept apart from those still
-- pending. A relay that rolls back after enqueueing leaves its delivery tasks behind; they deliver
-- rows not relayed yet. The next relay claims those rows again, and when its enqueue finds the old
-- task still there (asynq refuses the same task id), it used to write the row's endpoints back as
-- pending, with no task left to deliver them: the row stayed undelivered for ever. The relay now
-- subtracts the delivered endpoints (OutboxMarkRelayed). Adding a column with a constant default
-- rewrites nothing.
ALTER TABLE outbox ADD COLUMN delivered text[] NOT NULL DEFAULT '{}';
