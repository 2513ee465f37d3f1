// Command bootstrap prepares the local stack for `make run`: the bucket, the event queue with its
// dead-letter queue (redrive after 5 receives), and the bucket notification that sends events to
// MinIO's webhook target (which posts them to intake's ingress). It prints the INTAKE_* settings that
// point at them. It is idempotent.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
)

func main() {
	bucket := flag.String("bucket", "intake-local", "bucket to create")
	queueName := flag.String("queue", "intake-events", "queue to create (and NAME-dlq)")
	notifyARN := flag.String("notify-arn", "", "bucket notification target ARN (empty: none)")
	flag.Parse()
	if err := run(*bucket, *queueName, *notifyARN); err != nil {
		fmt.Fprintln(os.Stderr, "bootstrap:", err)
		os.Exit(1)
	}
}

func run(bucket, queueName, notifyARN string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	awsCfgSection := config.AWS{
		AWSRegion:    config.AWSRegion{Region: os.Getenv("AWS_REGION")},
		S3Endpoints:  config.S3Endpoints{S3Endpoint: os.Getenv("AWS_ENDPOINT_URL_S3")},
		SQSEndpoints: config.SQSEndpoints{SQSEndpoint: os.Getenv("AWS_ENDPOINT_URL_SQS")},
	}
	awsCfg, err := objstore.LoadAWS(ctx, awsCfgSection, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	s3c := objstore.NewClient(awsCfg, awsCfgSection)
	if err := objstore.EnsureBucket(ctx, s3c, bucket); err != nil {
		return err
	}
	if notifyARN != "" {
		if err := objstore.NotifyQueue(ctx, s3c, bucket, notifyARN); err != nil {
			return err
		}
	}
	sqsc := queue.NewClient(awsCfg, awsCfgSection)
	dlqURL, dlqARN, err := queue.Ensure(ctx, sqsc, queue.Spec{Name: queueName + "-dlq"})
	if err != nil {
		return err
	}
	url, _, err := queue.Ensure(ctx, sqsc, queue.Spec{Name: queueName, Visibility: 60 * time.Second, DLQARN: dlqARN, MaxReceiveCount: 5})
	if err != nil {
		return err
	}
	fmt.Printf("INTAKE_BUCKET=%s\nINTAKE_QUEUE_URL=%s\nINTAKE_DLQ_URL=%s\n", bucket, url, dlqURL)
	return nil
}
