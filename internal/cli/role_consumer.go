package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/ingress"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// startConsumer builds the consumer role: the pipeline Processor (policy from INTAKE_POLICY_FILE),
// the SQS consumer that drives it (receiving and deleting through queue.Lean; stopped within
// ShutdownGrace; while an outage pauses it, it checks PostgreSQL, writable, and the bucket), its
// readiness checks (the consumer is not ready while paused; the DLQ, when set, is reported but not
// required), and the event ingress
// (POST /v1/events/s3) when INTAKE_CONSUMER_INGRESS_TOKEN is set.
func startConsumer(_ context.Context, a *App) ([]Component, error) {
	cfg := a.Cfg
	log := a.Log.With("role", config.RoleConsumer)
	if cfg.QueueURL == "" {
		return nil, errors.New("consumer: INTAKE_QUEUE_URL is required")
	}
	proc, err := a.Processor()
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	for _, w := range a.Policy.HashWarnings(cfg.Consumer.MessageTimeout, cfg.Consumer.HashMaxSize) {
		log.Warn("some uploads may not be hashed within INTAKE_CONSUMER_MESSAGE_TIMEOUT", "detail", w)
	}
	// ReceiveMessage and DeleteMessageBatch skip the SDK's middleware (queue.Lean); the ingress and
	// the readiness checks keep the SDK client.
	client, err := queue.NewLean(a.SQS)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	c, err := consumer.New(consumer.Config{
		Client:         client,
		QueueURL:       cfg.QueueURL,
		DLQURL:         cfg.DLQURL,
		Receivers:      cfg.Consumer.Receivers,
		Workers:        cfg.Consumer.Workers,
		Visibility:     cfg.Consumer.Visibility,
		WaitTime:       cfg.Consumer.WaitTime,
		MaxBackoff:     cfg.Consumer.MaxBackoff,
		Grace:          cfg.ShutdownGrace,
		MessageTimeout: cfg.Consumer.MessageTimeout,
		// While an outage pauses it, the consumer checks these instead of receiving messages.
		Dependencies: []consumer.Dependency{
			{Name: pipeline.DependencyPostgres, Check: a.Store.CheckWritable},
			{Name: pipeline.DependencyS3, Check: func(ctx context.Context) error { return objstore.CheckBucket(ctx, a.S3, cfg.Bucket) }},
		},
		Processor:  proc,
		Log:        log,
		Registerer: a.Registry,
	})
	if err != nil {
		return nil, err
	}
	a.Health.Add("consumer", c.Ready)
	if cfg.DLQURL != "" {
		// Reported, not required: only permanent failures are sent there (a send that fails is
		// retried later, like any failing message), so its outage must not stop the consumption.
		a.Health.AddOptional("sqs-dlq", func(ctx context.Context) error { return queue.CheckQueue(ctx, a.SQS, cfg.DLQURL) })
	}
	if err := mountIngress(a); err != nil {
		return nil, err
	}
	return []Component{{Name: "consumer", Run: c.Run}}, nil
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
