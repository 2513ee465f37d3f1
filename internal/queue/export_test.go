package queue

// ScanReceive exposes scanReceive to the package's external tests (TestKumoAnswersAreScanned).
var ScanReceive = scanReceive
