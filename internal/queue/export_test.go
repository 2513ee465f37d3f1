package queue

// ScanReceive and ScanDeleteBatch expose the answer scanners to the package's external tests
// (TestKumoAnswersAreScanned).
var (
	ScanReceive     = scanReceive
	ScanDeleteBatch = scanDeleteBatch
)

// SetAnswerLimits lowers l's bounds of an answer's body (maxResponseBody, maxDeleteBatchAnswer),
// so that tests can pass them without sending hundreds of MiB.
func SetAnswerLimits(l *Lean, receive, deleteBatch int) {
	l.receiveLimit, l.deleteLimit = receive, deleteBatch
}
