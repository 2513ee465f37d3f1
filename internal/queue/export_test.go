package queue

// ScanReceive and ScanDeleteBatch expose the answer scanners to the package's external tests
// (TestKumoAnswersAreScanned).
var (
	ScanReceive     = scanReceive
	ScanDeleteBatch = scanDeleteBatch
)
