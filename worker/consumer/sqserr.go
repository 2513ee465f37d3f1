package consumer

import (
	"errors"
	"strings"

	"github.com/aws/smithy-go"
)

// redactedHandle replaces a receipt handle in the text of an error that is logged.
const redactedHandle = "[receipt handle]"

// handleError is an SQS error about known messages whose text hides their receipt handles. SQS
// quotes the handle in some errors ("The input receipt handle "AQEB…" is not a valid receipt
// handle"); a handle lets whoever reads the logs delete or hide the message until it is received
// again. The error chain is kept: errors.As still finds the API error and its code.
type handleError struct {
	err     error
	handles []string
}

// redactHandles returns err with every one of handles replaced in its text by "[receipt handle]"
// (nil for nil).
func redactHandles(err error, handles ...string) error {
	if err == nil {
		return nil
	}
	return &handleError{err: err, handles: handles}
}

// Error implements error.
func (e *handleError) Error() string { return redactText(e.err.Error(), e.handles...) }

// Unwrap returns the SQS error.
func (e *handleError) Unwrap() error { return e.err }

// redactText replaces every one of handles in s by "[receipt handle]".
func redactText(s string, handles ...string) string {
	for _, h := range handles {
		if h != "" {
			s = strings.ReplaceAll(s, h, redactedHandle)
		}
	}
	return s
}

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
