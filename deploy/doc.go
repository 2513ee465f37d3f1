// Package deploy holds what it takes to run intake somewhere other than a laptop; it has no Go API.
//
// # Contents
//
//   - Dockerfile: the static, non-root image (make image).
//   - healthcheck/: intake-healthcheck, the probe the image's HEALTHCHECK and Compose use (the
//     distroless image has no shell or curl).
//   - k8s/: kustomize base (one Deployment per role, probes, PDBs, HPA), components/keda (the
//     consumer scaled on SQS depth) and an example overlay.
//   - aws/: bucket notification, IAM policies, SQS queue and redrive policies, S3 CORS and
//     lifecycle, as JSON with ${PLACEHOLDERS}.
//   - observability/: Prometheus alert rules with promtool unit tests, and a Grafana dashboard.
//   - compose/: LocalStack's init hook for the repository's docker-compose.yml.
//   - local/: the development stack (MinIO, kumo) used by `make up` and the tests.
//
// README.md beside this file is the operations guide: deploying to AWS, scaling, upgrading and the
// runbook of every alert.
//
// # Tests
//
// The tests in this directory validate those files with the real tools where the machine has them
// (make build, kubectl kustomize, docker compose config, promtool, the AWS CLI against the local
// S3 and SQS) and by parsing them otherwise. Environment variable names are checked against the
// configuration structs, so renaming a setting breaks the test that still uses the old name.
package deploy
