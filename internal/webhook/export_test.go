package webhook

// NominalDelay is nominalDelay (the retry delay without jitter).
var NominalDelay = nominalDelay

// ParseDeliver is parseDeliver.
var ParseDeliver = parseDeliver

// TaskID is taskID (the ID NewDeliverTask gives the task of items).
var TaskID = taskID

// ByUpload is byUpload (a task's items grouped by upload, in order).
var ByUpload = byUpload

// Rounds is rounds (how many attempts one after the other a run of a task makes at most).
var Rounds = rounds
