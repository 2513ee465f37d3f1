-- 0015_outbox_gave_up: deliveries given up are recorded on their notification, and can be sent
-- again from it. Before, a delivery that failed for a day of retries, or was refused (an endpoint
-- that resolves to a private address, an endpoint no longer configured), only left an archived
-- asynq task behind: its endpoint stayed pending for ever (IntakeWebhooksBehind fired until the row
-- was fixed by hand), and once asynq trimmed its archive (10,000 tasks, 90 days) nothing but SQL
-- could send the notification again.
--
-- gave_up holds the endpoints whose delivery was given up. A give-up moves its endpoint from
-- pending to gave_up; delivered_at, "no delivery left to try", is then set once pending is empty,
-- so the backlog gauge reads deliveries still in progress only, and intake_outbox_gave_up counts
-- the given-up ones by endpoint. The purge keeps rows with a given-up delivery until `intake outbox
-- redeliver` sends them again (the endpoint goes back to pending) or `intake outbox discard` drops
-- them. A later delivery of a given-up endpoint (an archived task run again) removes it from
-- gave_up. redeliveries counts the redeliveries of the row: it names their tasks, so that a
-- redeliver that dies before committing and is run again enqueues the same tasks, not more.
ALTER TABLE outbox ADD COLUMN gave_up      text[]  NOT NULL DEFAULT '{}',
                   ADD COLUMN redeliveries integer NOT NULL DEFAULT 0;
