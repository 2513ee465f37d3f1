package webhook

// NominalDelay is nominalDelay (the retry delay without jitter).
var NominalDelay = nominalDelay

// ParseDeliver is parseDeliver.
var ParseDeliver = parseDeliver

// TaskID is taskID (the ID NewDeliverTask gives the task of items).
var TaskID = taskID
