package consumer

import (
	"errors"
	"strings"

	"github.com/aws/smithy-go"
)

// sqsCode returns the code of an SQS API error without the legacy "AWS.SimpleQueueService." prefix
// of the query protocol's codes, "" when err is not an API error.
func sqsCode(err error) string {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return ""
	}
	return strings.TrimPrefix(ae.ErrorCode(), "AWS.SimpleQueueService.")
}

// visibilityGone reports whether a ChangeMessageVisibility failed in a way the same call cannot
// get past: the message is not in flight under the handle any more (its visibility ran out and it
// was received again, or it was deleted), the handle is not valid, or a parameter is refused
// (InvalidParameterValue: "Message does not exist or is not available for visibility timeout
// change", or the total visibility past SQS's 12 h).
func visibilityGone(err error) bool {
	switch sqsCode(err) {
	case "MessageNotInflight", "ReceiptHandleIsInvalid", "InvalidParameterValue":
		return true
	}
	return false
}

// refusedForContent reports whether SQS refused to send a message for what it holds: the message
// (body and attributes together) over the queue's size limit, text SQS does not accept, an
// attribute it refuses. Sent again with fewer attributes and a shorter reason, it may pass. Other
// refusals by the sender's fault (throttling, KMS throttling or denial, a queue that does not
// exist, access denied) are not about the message: the send is retried later as it is.
func refusedForContent(err error) bool {
	switch sqsCode(err) {
	case "InvalidParameterValue", "InvalidParameterValueException", "InvalidMessageContents",
		"InvalidAttributeName", "InvalidAttributeValue", "MessageTooLong":
		return true
	}
	return false
}
