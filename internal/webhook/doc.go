// Package webhook delivers intake's notifications to the apps' HTTP endpoints, as the Standard
// Webhooks specification describes (https://www.standardwebhooks.com).
//
// # Requests
//
// Each delivery is a POST of the notification's JSON (tasks.UploadVerdict: id, type, timestamp,
// data) with the headers
//
//	webhook-id         the notification's id: the same on every retry and every endpoint
//	webhook-timestamp  the attempt's time, in Unix seconds
//	webhook-signature  "v1," + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))
//
// where key is the endpoint's secret, "whsec_" + base64 of 24 to 64 random bytes. Receivers verify
// the signature and the timestamp (within 5 minutes) and de-duplicate on webhook-id: delivery is
// at least once. While a receiver's secret is rotated, the endpoint holds several secrets,
// separated by spaces ("whsec_new whsec_old"), and webhook-signature carries one signature made
// with each, separated by spaces ("v1,<new> v1,<old>", [SignAll]): a receiver holding either
// secret verifies the request, so it can switch secrets at any time in between.
//
// # Endpoints
//
// The default endpoint is INTAKE_WEBHOOK_URL with INTAKE_WEBHOOK_SECRET; the policy file may add
// endpoints, each with a name, a key prefix, a URL and the variable holding its secret. A
// notification goes to the default endpoint and to every endpoint whose prefix its key starts
// with ([Endpoints]).
//
// # Delivery
//
// The relay (internal/outbox) enqueues the deliveries as [TypeDeliver] tasks on the queue [Queue],
// which the jobs role runs with a server of its own (INTAKE_WEBHOOK_CONCURRENCY workers) so that a
// slow receiver never holds the workers of aborts and inspections. A task carries the bodies to
// post (about 1 KB each: a backlog of deliveries takes that much Redis memory). The notifications
// relayed together go to each endpoint as batches of up to [BatchSize]: one task is the first
// attempt of each of its notifications, so that the usual case costs asynq one task per batch, not
// per notification. The notifications of one upload in a task are posted in order, one at a time,
// each once the one before it was delivered (those of up to [BatchParallel] uploads at once). A
// notification whose first attempt fails goes on, together with the later notifications of its
// upload in the batch (not posted past it), as a task of its own (a sequence of them, in order),
// due after the first retry delay; from there any answer but 2xx (and 410), and any network error,
// is retried with exponential backoff and jitter ([RetryDelay]: 10 s doubling to 2 h, [MaxRetry]
// retries, at least [MinRetryWindow] in all), and then the delivery is given up, with the later
// ones of its upload in the task: the outbox row records the endpoint in gave_up
// (Store.MarkGaveUp), where `intake outbox redeliver` finds it, and asynq archives the task. A
// receiver that answers 429 or 503 with a Retry-After (seconds, or an HTTP-date taken relative to
// the answer's Date) is not posted again sooner than it asked, up to the schedule's longest delay
// (2 h; a malformed value is ignored): the retry's delay, and the first delay of the task a
// batch's failed notification goes on as, are at least that ([RetryAfterError]). An answer 410
// Gone says the endpoint is gone for good: retrying cannot help, so the delivery is given up at
// once, with the later ones of its upload, as one the address guard refuses is ([ErrGone]); the
// outbox keeps it for `intake outbox redeliver` once the endpoint is fixed, or `intake outbox
// discard`. A
// later notification of a sequence that fails once the earlier ones were delivered goes on the
// same way, with those after it. When those tasks of its own cannot be enqueued (Redis refusing
// writes), the batch is retried on the same schedule, posting only its notifications still to
// deliver (Store.ToDeliver), and its last attempt gives up those it still cannot hand on. A task
// for an endpoint the worker does not know is retried on the same schedule without posting (during
// a rolling deploy that adds the endpoint, a worker that knows it runs a retry) and given up on
// its last attempt.
//
// A run cut off by the worker's shutdown (INTAKE_SHUTDOWN_GRACE up: asynq puts the task back in
// its queue, its retries untouched, and cancels the run) is no failure of the endpoint: its request
// is not counted in intake_webhook_attempts_total, nothing is handed on or given up, even on the
// task's last attempt, and it is logged at info ("interrupted by shutdown"); asynq runs the task
// again. An attempt that outlasts INTAKE_WEBHOOK_TIMEOUT is a failure (result timeout), so a
// timeout not below the grace is warned about at start-up: such a request is always cut off.
//
// The order holds within a task: notifications of one upload relayed in different batches (by one
// relay after the other, or by relays on several replicas), run by different workers, or sent again
// by `intake outbox redeliver`, may still arrive in any order, and no field of the body orders them
// (the id is random; timestamp is the start of the committing transaction, which two verdicts of
// one upload may share, or have in the opposite order).
//
// intake_webhook_delivery_attempts counts the requests that posted the notification: an item
// handed on carries those made so far (Item.Attempted). A batch counts only the post of the run at
// hand: asynq runs a retried task's payload unchanged, and a run cannot tell whether an earlier run
// posted (it did not when its worker did not know the endpoint).
// [Deliverer] posts each notification (INTAKE_WEBHOOK_TIMEOUT per attempt, redirects not followed)
// and records the delivery in the outbox row (group commit across concurrent deliveries).
//
// Every endpoint's tasks share the queue and its workers. So that a receiver that does not answer
// (each attempt holding a worker for the whole timeout) does not hold the other endpoints'
// notifications behind its tasks, a Deliverer with DelivererConfig.MaxPerEndpoint set runs at most
// that many tasks of one endpoint at once, and one at a time of an endpoint whose last
// [SuspectAfter] attempts timed out; a task of an endpoint that has its share is deferred, posting
// nothing, and runs again about a second later (an attempt timeout later for a timed-out
// endpoint) without using up one of its retries ([DeferredError], [Deliverer.IsFailure]). The order within
// a task is unchanged (a task is deferred whole, before posting anything), and a task on its last
// attempt is never deferred.
//
// # Addresses
//
// Unless INTAKE_WEBHOOK_ALLOW_PRIVATE is true (which `make run` sets), the client refuses to connect
// to loopback, link-local, private and other non-public addresses (webhookurl.PublicAddress). The check runs
// in the dialer on the resolved address of each connection, so a name that resolves, or is rebound
// later, to an internal address is refused too; no proxy from the environment is used, since it
// would be dialled instead. A refused delivery is given up at once (retrying cannot help), in a
// batch as alone.
//
// # Metrics
//
// intake_webhook_attempts_total{endpoint,result}, intake_webhook_deliveries_total{endpoint,outcome}
// (delivered, gave_up), intake_webhook_delivery_attempts (attempts per delivered notification),
// intake_webhook_attempt_duration_seconds and intake_webhook_deferred_total{endpoint} (task runs
// deferred because their endpoint had its share of the workers).
package webhook
