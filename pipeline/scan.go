package pipeline

import "github.com/intakehq/intake/internal/jsonscan"

// scanRecords is decodeRecords' fast path: it reads an S3 notification {"Records":[...]} in one pass
// over body, without reflection, when body has the plain form S3, MinIO and the emulators send.
// ok is false whenever it cannot be sure to give exactly what json.Unmarshal gives, and the caller
// then decodes with json.Unmarshal: body is not valid JSON (the scan validates every byte, the
// values it skips too); a name in an object intake reads holds a non-ASCII byte; a name intake
// reads holds an escape, appears twice, or is spelled in another case (encoding/json matches names
// case-insensitively); a value intake reads is not a string (a size not a plain non-negative
// integer), holds an escape or invalid UTF-8, or is null; nesting deeper than jsonscan.MaxDepth.
// FuzzScanRecords holds it to json.Unmarshal.
func scanRecords(body []byte) (recs []s3Record, ok bool) {
	s := scanner{jsonscan.New(body)}
	ok = s.Members(bodyNames, func(int) bool {
		recs, ok = s.records() // at least one record when ok
		return ok
	})
	if !ok || recs == nil || !s.End() {
		return nil, false
	}
	return recs, true
}

// scanner reads the parts of a notification.
type scanner struct{ jsonscan.Scanner }

// records reads the Records array: objects only, at least one.
func (s *scanner) records() ([]s3Record, bool) {
	recs := make([]s3Record, 0, 1)
	ok := s.Next('[') && s.List(']', func() bool {
		var r s3Record
		if len(recs) == MaxRecords || !s.record(&r) {
			return false // past MaxRecords: the slow path refuses the body before decoding a record
		}
		recs = append(recs, r)
		return true
	})
	if !ok || len(recs) == 0 {
		return nil, false
	}
	return recs, true
}

var (
	bodyNames   = []string{"Records"}
	recordNames = []string{"eventSource", "awsRegion", "eventTime", "eventName", "s3"}
	s3Names     = []string{"bucket", "object"}
	bucketNames = []string{"name"}
	objectNames = []string{"key", "size", "eTag", "versionId", "sequencer", "contentType"}
)

func (s *scanner) record(r *s3Record) bool {
	return s.Members(recordNames, func(k int) bool {
		switch k {
		case 0:
			return s.String(&r.EventSource)
		case 1:
			return s.String(&r.AWSRegion)
		case 2:
			return s.String(&r.EventTime)
		case 3:
			return s.String(&r.EventName)
		}
		return s.Members(s3Names, func(k int) bool {
			if k == 0 {
				return s.Members(bucketNames, func(int) bool {
					return s.String(&r.S3.Bucket.Name)
				})
			}
			o := &r.S3.Object
			return s.Members(objectNames, func(k int) bool {
				switch k {
				case 0:
					return s.String(&o.Key)
				case 1:
					var ok bool
					o.Size, ok = s.Uint()
					return ok
				case 2:
					return s.String(&o.ETag)
				case 3:
					return s.String(&o.VersionID)
				case 4:
					return s.String(&o.Sequencer)
				}
				return s.String(&o.ContentType)
			})
		})
	})
}
