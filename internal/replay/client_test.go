package replay

import (
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/intakehq/intake/internal/testkit"
)

// testSQS is testkit's SQS client (its HTTP client is objstore.HTTPClient).
func testSQS() *sqs.Client { return testkit.SQS() }
