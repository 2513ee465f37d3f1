package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/intakehq/intake/internal/jsonscan"
)

// ErrPermanent marks a body that can never be processed: malformed JSON, no
// records or more than [MaxRecords], a missing, badly escaped or overlong key, an
// implausible version id, an unparsable time...
// Every error returned by [Decode] wraps it, so callers test with
// errors.Is(err, ErrPermanent) and dead-letter the message.
var ErrPermanent = errors.New("permanent failure")

// Limits of what Decode accepts. A body beyond them was not sent by S3, and retrying it would
// only repeat the work it asks for, so it is refused as permanent (dead-lettered).
const (
	// MaxRecords is the most records one S3 notification may hold. S3, MinIO and the emulators
	// send one record per message; the cap is generous, and keeps a forged body (SQS takes
	// 256 KiB, the ingress 1 MiB) from fanning out into thousands of S3 looks on every retry.
	MaxRecords = 100
	// MaxKeyLen is the longest object key, in bytes (decoded): S3's own limit.
	MaxKeyLen = 1024
	// MaxVersionIDLen is the longest version id, in bytes: S3 documents up to 1,024 (its version
	// ids are 32 or 64 printable characters in practice, MinIO's are UUIDs).
	MaxVersionIDLen = 1024
)

// Decode parses one SQS message body into one or more events. It accepts:
//
//   - an S3 notification {"Records":[...]}, with eventName in the AWS form
//     ("ObjectCreated:Put") or the MinIO/emulator form ("s3:ObjectCreated:Put");
//   - MinIO's webhook wrapper {"EventName":..., "Key":..., "Records":[...]},
//     of which only Records is used;
//   - the s3:TestEvent, decoded to one event of [KindTest] named "TestEvent";
//   - an SNS envelope {"Type":"Notification","Message":"..."} around any of
//     the above (an SNS envelope inside another one is an error);
//   - an EventBridge event: "Object Created" is [KindCreated], "Object
//     Deleted" is [KindRemoved], other detail types are [KindUnknown].
//
// Records with event names intake does not know decode to [KindUnknown].
// A notification with more than [MaxRecords] records, a key longer than
// [MaxKeyLen] bytes, and a version id longer than [MaxVersionIDLen] bytes or
// holding a control character are refused. A sequencer no S3 sends (longer
// than [MaxPlausibleSequencer] digits, or not hexadecimal) is not a reason
// to refuse a body: it is dropped, and the event decodes as if it had none
// (the [Processor] counts it in intake_events_distrusted_total). On success
// Decode returns at least one event; every error wraps [ErrPermanent].
func Decode(body []byte) ([]Event, error) {
	// The fast path dispatches on names found by a scan instead of a decoded map. On a valid body
	// it takes the same branch; any error is computed again the thorough way, so that a malformed
	// body gets the same error either way.
	if events, err := decode(body, false, true); err == nil {
		return events, nil
	}
	events, err := decode(body, false, false)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return events, nil
}

// maxQuoted bounds what an error quotes of a value the body chose: errors are logged (on every
// receive of a message that is then dead-lettered) and the ingress answers with them.
const maxQuoted = 256

// quoted is s as %q shows it, cut to its first maxQuoted bytes (and their length said) when longer.
func quoted(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	// Cut at the start of a character: back off (at most UTFMax-1 bytes, so that a string that is
	// not UTF-8 is still cut near maxQuoted) while the first byte left out continues a character.
	n := maxQuoted
	for n > maxQuoted-utf8.UTFMax+1 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:n]), len(s))
}

// permanent formats an error that wraps ErrPermanent.
func permanent(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrPermanent)
}

// decode decodes body, an SNS message when inSNS. With fast, it finds the top-level names with
// topNames and reads an S3 notification with scanRecords when it can; the caller must then decode
// again without fast after an error.
func decode(body []byte, inSNS, fast bool) ([]Event, error) {
	// Dispatch on exact top-level names: encoding/json matches struct fields
	// case-insensitively, which would confuse "Time" (test event) with
	// "time" (EventBridge).
	names, ok := topName(0), false
	if fast {
		names, ok = topNames(body)
	}
	if !ok {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			return nil, permanent("malformed JSON: %v", err)
		}
		names = 0
		for i, name := range dispatchNames {
			if _, ok := top[name]; ok {
				names |= 1 << i
			}
		}
	}
	switch {
	case names&nameRecords != 0:
		return decodeRecords(body, fast)
	case names&nameType != 0 && names&nameMessage != 0:
		if inSNS {
			return nil, permanent("SNS envelope inside an SNS envelope")
		}
		return decodeSNS(body, fast)
	case names&nameDetailType != 0:
		return decodeEventBridge(body)
	case names&nameEvent != 0:
		return decodeTestEvent(body)
	}
	return nil, permanent("unrecognized message body")
}

// topName is a set of the top-level names decode dispatches on.
type topName uint8

const (
	nameRecords topName = 1 << iota
	nameType
	nameMessage
	nameDetailType
	nameEvent
)

// dispatchNames are the names of the topName bits, in order.
var dispatchNames = [...]string{"Records", "Type", "Message", "detail-type", "Event"}

// topNames scans body, a JSON object, for the top-level names decode dispatches on, without
// decoding anything. ok is false when it cannot tell this way: body is not an object, a name holds
// an escape sequence (encoding/json would unescape it), or the structure is broken. It does not
// validate the values: the decoding that follows does (json.Unmarshal checks the whole body).
func topNames(body []byte) (names topName, ok bool) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return 0, false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return 0, true
	}
	for i < len(body) {
		if body[i] != '"' {
			return 0, false
		}
		end := i + 1
		for end < len(body) && body[end] != '"' {
			if body[end] == '\\' {
				return 0, false
			}
			end++
		}
		if end >= len(body) {
			return 0, false
		}
		name := body[i+1 : end]
		for k, n := range dispatchNames {
			if string(name) == n {
				names |= 1 << k
			}
		}
		i = skipSpace(body, end+1)
		if i >= len(body) || body[i] != ':' {
			return 0, false
		}
		if i, ok = skipValue(body, skipSpace(body, i+1)); !ok {
			return 0, false
		}
		i = skipSpace(body, i)
		switch {
		case i >= len(body):
			return 0, false
		case body[i] == '}':
			return names, true
		case body[i] != ',':
			return 0, false
		}
		i = skipSpace(body, i+1)
	}
	return 0, false
}

// skipValue returns the index just past the JSON value starting at i (strings and nesting are
// followed; scalars end at the next ',', '}' or ']' outside any string).
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(b) {
				return 0, false
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i, true
			}
			depth--
		case ',':
			if depth == 0 {
				return i, true
			}
		}
		i++
		if depth == 0 && i < len(b) && (b[i-1] == '"' || b[i-1] == '}' || b[i-1] == ']') {
			return i, true
		}
	}
	return 0, false
}

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

type s3Record struct {
	EventSource string `json:"eventSource"`
	AWSRegion   string `json:"awsRegion"`
	EventTime   string `json:"eventTime"`
	EventName   string `json:"eventName"`
	S3          struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key         string `json:"key"`
			Size        int64  `json:"size"`
			ETag        string `json:"eTag"`
			VersionID   string `json:"versionId"`
			Sequencer   string `json:"sequencer"`
			ContentType string `json:"contentType"`
		} `json:"object"`
	} `json:"s3"`
}

// decodeRecords decodes an S3 notification; with fast, through scanRecords when it can.
func decodeRecords(body []byte, fast bool) ([]Event, error) {
	var n struct {
		Records recordList `json:"Records"`
	}
	var scanned bool
	if fast {
		n.Records, scanned = scanRecords(body)
	}
	if !scanned {
		if err := json.Unmarshal(body, &n); err != nil {
			if errors.Is(err, errTooManyRecords) {
				return nil, permanent("more than %d records", MaxRecords)
			}
			return nil, permanent("malformed S3 notification: %v", err)
		}
	}
	if len(n.Records) == 0 {
		return nil, permanent("no records")
	}
	if len(n.Records) > MaxRecords {
		return nil, permanent("%d records, more than %d", len(n.Records), MaxRecords)
	}
	events := make([]Event, 0, len(n.Records))
	for i, r := range n.Records {
		name := strings.TrimPrefix(r.EventName, "s3:")
		o := r.S3.Object
		ev, err := objectEvent(r.S3.Bucket.Name, o.Key, o.Size, o.Sequencer, r.EventTime)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		ev.Kind = kindOf(name)
		ev.Name = name
		ev.Source = r.EventSource
		ev.Region = r.AWSRegion
		ev.ETag = strings.Trim(o.ETag, `"`)
		if ev.VersionID, err = versionID(o.VersionID); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		ev.ContentType = o.ContentType
		events = append(events, ev)
	}
	return events, nil
}

// recordList is the Records array of a notification, refused past MaxRecords before any record is
// decoded: a body of empty records ({},{},... 3 bytes each) would otherwise cost about 56 times its
// size in records before the count could refuse it.
type recordList []s3Record

var errTooManyRecords = errors.New("too many records")

// UnmarshalJSON counts the elements of the (valid JSON) array first.
func (l *recordList) UnmarshalJSON(data []byte) error {
	if jsonscan.ArrayLen(data, MaxRecords+1) > MaxRecords {
		return errTooManyRecords
	}
	var recs []s3Record
	if err := json.Unmarshal(data, &recs); err != nil {
		return err
	}
	*l = recs
	return nil
}

// objectEvent validates and decodes the fields every object event shares.
func objectEvent(bucket, rawKey string, size int64, sequencer, rawTime string) (Event, error) {
	return objectEventKey(bucket, rawKey, decodeKey, size, sequencer, rawTime)
}

// objectEventKey is objectEvent with the key read by key: decodeKey for S3 notifications, whose
// keys are form-encoded, checkKey for EventBridge's, which are not.
func objectEventKey(bucket, rawKey string, key func(string) (string, error), size int64, sequencer, rawTime string) (Event, error) {
	if bucket == "" {
		return Event{}, permanent("missing bucket name")
	}
	if rawKey == "" {
		return Event{}, permanent("missing object key")
	}
	k, err := key(rawKey)
	if err != nil {
		return Event{}, err
	}
	if size < 0 {
		return Event{}, permanent("negative object size %d", size)
	}
	t, err := parseTime(rawTime)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Bucket: bucket, Key: k, Size: size, Sequencer: sequencer, Time: t}
	if !plausibleSequencer(sequencer) {
		// Dropped, not refused: the sequencer decides nothing a look at S3 does not (see "What an
		// event is not taken at its word for" in doc.go); the Processor counts it.
		ev.Sequencer, ev.droppedSequencer = "", len(sequencer)
	}
	return ev, nil
}

// decodeKey undoes the form encoding of an object key in an S3 notification ("red flower.jpg"
// arrives as "red+flower.jpg", "a+b" as "a%2Bb"), then checks it (checkKey).
func decodeKey(raw string) (string, error) {
	key, err := url.QueryUnescape(raw)
	if err != nil {
		return "", permanent("bad object key %s: %v", quoted(raw), err)
	}
	return checkKey(raw, key)
}

// rawKey checks an EventBridge event's key, which S3 sends as it is, not form-encoded (a real
// "Object Created" event carries "raw/health-check/2023-08-08T14:03:40.532432.zip" where a
// notification to SQS has "%3A" for each ":"): decoding it would read "c++.pdf" as "c  .pdf", look
// at a key that does not exist, and leave the real object uninspected.
func rawKey(raw string) (string, error) { return checkKey(raw, raw) }

// checkKey refuses a key (decoded from raw) that cannot be an S3 key: not valid UTF-8, with a NUL
// (nor can PostgreSQL text hold one), or longer than MaxKeyLen.
func checkKey(raw, key string) (string, error) {
	if !utf8.ValidString(key) {
		return "", permanent("object key %s is not valid UTF-8", quoted(raw))
	}
	if strings.IndexByte(key, 0) >= 0 {
		return "", permanent("object key %s contains NUL", quoted(raw))
	}
	if len(key) > MaxKeyLen {
		return "", permanent("object key of %d bytes, longer than %d", len(key), MaxKeyLen)
	}
	return key, nil
}

// versionID checks an event's version id: S3 and MinIO send short printable ones ("" when the
// bucket is not versioned).
func versionID(v string) (string, error) {
	if len(v) > MaxVersionIDLen {
		return "", permanent("version id of %d bytes, longer than %d", len(v), MaxVersionIDLen)
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return "", permanent("version id %s holds a control character or is not UTF-8", quoted(v))
	}
	return v, nil
}

// parseTime parses an RFC 3339 time into UTC; "" is the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, permanent("bad event time %s", quoted(s))
	}
	return t.UTC(), nil
}

func decodeSNS(body []byte, fast bool) ([]Event, error) {
	var env struct {
		Type    string `json:"Type"`
		Message string `json:"Message"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, permanent("malformed SNS envelope: %v", err)
	}
	if env.Type != "Notification" {
		return nil, permanent("unsupported SNS message type %s", quoted(env.Type))
	}
	events, err := decode([]byte(env.Message), true, fast)
	if err != nil {
		return nil, fmt.Errorf("SNS message: %w", err)
	}
	return events, nil
}

// eventBridgeDetail is the detail of an EventBridge S3 event.
type eventBridgeDetail struct {
	Bucket struct {
		Name string `json:"name"`
	} `json:"bucket"`
	Object struct {
		Key       string `json:"key"`
		Size      int64  `json:"size"`
		ETag      string `json:"etag"`
		VersionID string `json:"version-id"`
		Sequencer string `json:"sequencer"`
	} `json:"object"`
	Reason string `json:"reason"`
	// DeletionType is "Permanently Deleted" or "Delete Marker Created" (Object Deleted).
	DeletionType string `json:"deletion-type"`
}

func decodeEventBridge(body []byte) ([]Event, error) {
	var eb struct {
		DetailType string             `json:"detail-type"`
		Source     string             `json:"source"`
		Region     string             `json:"region"`
		Time       string             `json:"time"`
		Detail     *eventBridgeDetail `json:"detail"`
	}
	if err := json.Unmarshal(body, &eb); err != nil {
		return nil, permanent("malformed EventBridge event: %v", err)
	}
	if eb.Source != "aws.s3" {
		return nil, permanent("EventBridge event from %s, not aws.s3", quoted(eb.Source))
	}
	if eb.Detail == nil {
		return nil, permanent("EventBridge event without detail")
	}
	d := eb.Detail
	acted := eb.DetailType == "Object Created" || eb.DetailType == "Object Deleted"
	ev, err := objectEventKey(d.Bucket.Name, d.Object.Key, rawKey, d.Object.Size, d.Object.Sequencer, eb.Time)
	if err != nil {
		if acted {
			return nil, fmt.Errorf("EventBridge %s: %w", quoted(eb.DetailType), err)
		}
		// A detail type intake does not act on need not name an object (the CloudTrail "AWS API
		// Call via CloudTrail" events a rule on source aws.s3 forwards too): acknowledged, with
		// its bucket when it names one (a foreign bucket is still refused). Before, it was
		// dead-lettered as malformed.
		ev = Event{Bucket: d.Bucket.Name}
		if t, terr := parseTime(eb.Time); terr == nil {
			ev.Time = t
		}
	}
	switch {
	case !acted:
		ev.Kind, ev.Name = KindUnknown, eb.DetailType
	case eb.DetailType == "Object Created":
		ev.Kind, ev.Name = KindCreated, eventName("ObjectCreated", d.Reason)
	case d.Reason == "Lifecycle Expiration":
		// Named as S3's own notifications name it, so that an expiration of a noncurrent
		// version is not taken for a removal to look at again (reinspectAfterRemoval).
		ev.Kind, ev.Name = KindRemoved, "LifecycleExpiration:Delete"
		if d.DeletionType == "Delete Marker Created" {
			ev.Name = "LifecycleExpiration:DeleteMarkerCreated"
		}
	default:
		ev.Kind, ev.Name = KindRemoved, eventName("ObjectRemoved", d.Reason)
	}
	ev.Source = eb.Source
	ev.Region = eb.Region
	ev.ETag = strings.Trim(d.Object.ETag, `"`)
	if ev.VersionID, err = versionID(d.Object.VersionID); err != nil {
		if acted {
			return nil, fmt.Errorf("EventBridge %s: %w", quoted(eb.DetailType), err)
		}
		ev.VersionID = ""
	}
	return []Event{ev}, nil
}

// eventName joins an S3 event category and an EventBridge reason.
func eventName(category, reason string) string {
	if reason == "" {
		return category
	}
	return category + ":" + reason
}

func decodeTestEvent(body []byte) ([]Event, error) {
	var te struct {
		Event  string `json:"Event"`
		Bucket string `json:"Bucket"`
		Time   string `json:"Time"`
	}
	if err := json.Unmarshal(body, &te); err != nil {
		return nil, permanent("malformed test event: %v", err)
	}
	if strings.TrimPrefix(te.Event, "s3:") != "TestEvent" {
		return nil, permanent("unsupported event %s", quoted(te.Event))
	}
	t, err := parseTime(te.Time)
	if err != nil {
		return nil, err
	}
	return []Event{{Kind: KindTest, Name: "TestEvent", Bucket: te.Bucket, Time: t}}, nil
}
