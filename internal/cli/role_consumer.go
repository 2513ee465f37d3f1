package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/ingress"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
	"github.com/intakehq/intake/worker/tasks"
)

// startConsumer builds the consumer role: the pipeline Processor (policy from INTAKE_POLICY_FILE),
// the SQS consumer that drives it (stopped within ShutdownGrace), its readiness checks, and the
// event ingress (POST /v1/events/s3) when INTAKE_CONSUMER_INGRESS_TOKEN is set.
func startConsumer(_ context.Context, a *App) ([]Component, error) {
	cfg := a.Cfg
	log := a.Log.With("role", config.RoleConsumer)
	if cfg.QueueURL == "" {
		return nil, errors.New("consumer: INTAKE_QUEUE_URL is required")
	}
	policy, err := pipeline.LoadPolicy(cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	// The workers make up to two S3 requests each at once; the SDK's default HTTP client keeps only
	// 10 idle connections per host and redials the others, which costs both sides CPU. Give the
	// consumer's clients a pool sized for its workers (same endpoints, credentials and retries).
	httpClient := pooledHTTPClient(cfg.Consumer.Workers)
	s3Client := s3.New(a.S3.Options(), func(o *s3.Options) { o.HTTPClient = httpClient })
	sqsClient := sqs.New(a.SQS.Options(), func(o *sqs.Options) { o.HTTPClient = httpClient })

	// Completed multipart uploads cancel their delayed abort task in Redis.
	insp := asynq.NewInspector(a.Redis)
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects:     objstore.NewObjects(s3Client),
		Records:     store.NewRecords(a.Store),
		Policy:      policy,
		Log:         log,
		Registerer:  a.Registry,
		HashMaxSize: cfg.Consumer.HashMaxSize,
		Archive:     cfg.Consumer.Archive,
		Multipart:   tasks.NewCanceller(insp),
	})
	if err != nil {
		_ = insp.Close()
		return nil, fmt.Errorf("consumer: %w", err)
	}
	c, err := consumer.New(consumer.Config{
		Client:     sqsClient,
		QueueURL:   cfg.QueueURL,
		DLQURL:     cfg.DLQURL,
		Receivers:  cfg.Consumer.Receivers,
		Workers:    cfg.Consumer.Workers,
		Visibility: cfg.Consumer.Visibility,
		WaitTime:   cfg.Consumer.WaitTime,
		MaxBackoff: cfg.Consumer.MaxBackoff,
		Grace:      cfg.ShutdownGrace,
		Processor:  proc,
		Log:        log,
		Registerer: a.Registry,
	})
	if err != nil {
		_ = insp.Close()
		return nil, err
	}
	a.Health.Add("consumer", c.Ready)
	if cfg.DLQURL != "" {
		a.Health.Add("sqs-dlq", func(ctx context.Context) error { return queue.CheckQueue(ctx, a.SQS, cfg.DLQURL) })
	}
	if err := mountIngress(a); err != nil {
		_ = insp.Close()
		return nil, err
	}
	return []Component{{
		Name: "consumer",
		Run: func(ctx context.Context) error {
			defer insp.Close()
			return c.Run(ctx)
		},
	}}, nil
}

// pooledHTTPClient is the SDK's default HTTP client with room for workers idle connections per
// host (plus the receivers' and deleters' own).
func pooledHTTPClient(workers int) *awshttp.BuildableClient {
	idle := max(2*workers+16, 100)
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = idle, idle
	})
}

// mountIngress serves POST /v1/events/s3 on the shared mux when an ingress token is configured.
func mountIngress(a *App) error {
	cfg := a.Cfg
	if cfg.Consumer.IngressToken == "" {
		return nil
	}
	h, err := ingress.New(ingress.Config{
		Token:      cfg.Consumer.IngressToken,
		QueueURL:   cfg.QueueURL,
		Client:     a.SQS,
		Log:        a.Log.With("component", "ingress"),
		Registerer: a.Registry,
	})
	if err != nil {
		return err
	}
	h.Mount(a.Mux)
	a.Log.Info("event ingress enabled", "path", ingress.Path, "queue_url", cfg.QueueURL)
	return nil
}
