package pipeline

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// DecodeWith is decode with (fast) or without the scans: of the top-level names, and of an S3
// notification's records (scanRecords).
func DecodeWith(body []byte, fast bool) ([]Event, error) { return decode(body, false, fast) }

// Quoted is quoted.
var Quoted = quoted

// ScanRecordsAgrees runs scanRecords on body and, when it read it, json.Unmarshal too: scanned
// tells whether the scan read it, err what differs (nil when both agree).
func ScanRecordsAgrees(body []byte) (scanned bool, err error) {
	recs, ok := scanRecords(body)
	if !ok {
		return false, nil
	}
	var n struct {
		Records []s3Record `json:"Records"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return true, fmt.Errorf("the scan read a body encoding/json refuses: %w", err)
	}
	if !reflect.DeepEqual(recs, n.Records) {
		return true, fmt.Errorf("the scan read %+v, encoding/json %+v", recs, n.Records)
	}
	return true, nil
}

// ReinspectAfterRemoval is reinspectAfterRemoval (a removal event of a version that asks for a
// look at the key's current object).
var ReinspectAfterRemoval = reinspectAfterRemoval

// SetHashSlotMin sets the largest object whose hash takes no slot (HashSlotMinSize), before p
// processes anything: tests hash small objects.
func SetHashSlotMin(p *Processor, n int64) { p.hashSlotMin = n }

// SetHashRate sets the rate at which an event's hash is assumed to read (HashRate), before p
// processes anything: tests make small objects too large for a message's time.
func SetHashRate(p *Processor, bytesPerSecond int64) { p.hashRate = bytesPerSecond }
