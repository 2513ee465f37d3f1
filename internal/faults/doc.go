// Package faults holds intake's fault suite (its tests are the whole package): each scenario runs a
// stream of real uploads through the real path — the API of an `intake` process, a presigned PUT to
// a MinIO of the suite's own, MinIO's webhook to the ingress, kumo, the consumer, PostgreSQL — with
// the daemon's dependencies behind toxiproxy proxies, breaks one thing (a dependency cut, made
// read-only, slowed or half-open; a replica killed with SIGKILL), heals it, and ends by counting:
// uploads, rows recorded, rows lost, duplicate effects (a rejected upload quarantined twice, a
// notification given twice for one object, a period swept twice), messages dead-lettered (S3 events
// in the DLQ; for the job scenarios, asynq tasks archived), and the time the rows took to converge
// after the fault. Every scenario expects 0 lost, 0 duplicates, 0 dead-lettered.
//
// Rows that look right are not the end of a scenario: a message whose consumer was killed between
// its commit and its delete comes back after the visibility timeout. The dead letters and
// duplicates are counted only once the queue holds no message (visible, in flight or delayed) on
// two reads a few seconds apart and MinIO's webhook queue directories are empty; a queue that does
// not drain within the visibility timeout, the consumer's retry chain and a margin fails the
// scenario.
//
// # Real processes, production settings
//
// The suite builds the intake binary once and runs each daemon as a process of its own
// (`intake run --roles …`), killed and restarted as an operator's would be. Every setting keeps its
// production default (consumer visibility 60 s, 4 receivers, 64 workers, backoff cap 15 min) and
// the queue redrives to its DLQ after 5 receives, as deploy/local/bootstrap creates it; only the
// multipart deadline and sweep schedule are shortened where a scenario waits for them.
//
// Each scenario has its own MinIO (bin/minio, own data directory and port, webhook targets with a
// queue directory so that MinIO keeps undelivered events), its own PostgreSQL database (dropped at
// the end), a Redis database and a kumo queue of its own, reached through the local stack's
// toxiproxy.
//
// # Length
//
// `go test ./internal/faults` runs the shortened form of every scenario (short outages, few events,
// scenarios in parallel). The shortened PostgreSQL outages (scenarios 1 and 2) last 75 s, longer
// than the redrive (5 receives, about 62 s of the consumer's backoffs), so that a consumer counting
// its receives during an outage would dead-letter there too; they run alongside scenario 6 (about
// 3 minutes), so the run hardly takes longer for it. INTAKE_FAULTS=full selects the full-length form (`make faults`: the
// outages and event counts of issue 11, one scenario at a time, about 25 minutes), which prints a
// summary table and, with INTAKE_FAULTS_REPORT=FILE, writes it to FILE (keeping what follows the
// file's history marker; a failed run's table is headed "FAILED:" and the failed scenarios). INTAKE_FAULTS_LOGS=DIR keeps every process's log under DIR.
package faults
